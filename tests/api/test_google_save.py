"""The "Add to Google Wallet" link against a fake Google: the class and the card's object are inserted
through the REST API first (with the service account's OAuth token), and the link only names them, so
it stays under 2,000 characters; Google down is a 503 the app can retry."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jwt
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from boot.web import create_app
from kartka.clock import FakeClock
from kartka.db import Connection, Pool
from kartka.settings import Settings
from tests.fakes.google_oauth import Reply
from tests.fakes.google_wallet import FakeGoogleWallet
from tests.fakes.tls import ServiceAccount, make_service_account
from tests.helpers import problem, sign_in
from wallet.passes.google import MAX_SAVE_URL, SAVE_URL

Client = AsyncTestClient[Litestar]
ISSUER = "3388000000012345678"
TIMEOUT = 1.5  # KARTKA_GOOGLE_SAVE_TIMEOUT_SECONDS here: short, so the slow-Google test is quick


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGoogleWallet]:
    server = FakeGoogleWallet(issuer_id=ISSUER)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def account(fake: FakeGoogleWallet, tmp_path_factory: pytest.TempPathFactory) -> ServiceAccount:
    made = make_service_account(tmp_path_factory.mktemp("issuer"), token_uri=fake.token_uri)
    fake.trust(made.info["client_email"], made.public_pem, made.info["private_key_id"])
    return made


@pytest.fixture(scope="module")
async def google_client(
    settings: Settings, clock: FakeClock, fake: FakeGoogleWallet, account: ServiceAccount
) -> AsyncIterator[Client]:
    """The app of an issuer with a real (here: fake) Google Wallet behind it."""
    configured = msgspec.structs.replace(
        settings,
        google_issuer_id=ISSUER,
        google_service_account_file=account.path,
        google_wallet_url=fake.url,
        google_save_timeout_seconds=TIMEOUT,
    )
    async with AsyncTestClient(create_app(configured, clock=clock)) as client:
        yield client


@pytest.fixture
def google(fake: FakeGoogleWallet, account: ServiceAccount) -> FakeGoogleWallet:
    fake.reset()
    return fake


@pytest.fixture
async def shopper(google_client: Client, pool: Pool) -> dict[str, Any]:
    signed = await sign_in(google_client, pool, "+375291234567")
    me = (await google_client.get("/v1/me", headers=signed["headers"])).json()
    signed["card"] = me["card"]["number"]
    return signed


def claims(url: str, account: ServiceAccount) -> dict[str, Any]:
    token = url.removeprefix(SAVE_URL)
    decoded: dict[str, Any] = jwt.decode(token, account.public_pem, algorithms=["RS256"], audience="google")
    return decoded


async def test_the_link_is_short_and_names_what_was_inserted(
    google_client: Client, google: FakeGoogleWallet, account: ServiceAccount, shopper: dict[str, Any], conn: Connection
) -> None:
    response = await google_client.get("/v1/me/card/google-pass", headers=shopper["headers"])

    assert response.status_code == 200, response.text
    url = response.json()["save_url"]
    assert len(url) <= MAX_SAVE_URL, len(url)
    object_id, class_id = f"{ISSUER}.{shopper['card']}", f"{ISSUER}.loyalty"
    assert claims(url, account)["payload"] == {"loyaltyObjects": [{"id": object_id, "classId": class_id}]}
    [class_insert] = google.calls("POST", "loyaltyClass")
    [object_insert] = google.calls("POST", "loyaltyObject")
    assert (class_insert.status, object_insert.status) == (200, 200)
    assert object_insert.headers["authorization"].startswith("Bearer ya29.fake-")  # the fake token endpoint's
    assert len(google.oauth.grants) == 1
    assert google.objects[object_id]["accountId"] == shopper["card"]
    assert google.objects[object_id]["loyaltyPoints"]["balance"] == {"string": "0"}
    # The shopper taps "Add": Google finds the object the link names.
    assert google.save(url.removeprefix(SAVE_URL), "http://127.0.0.1:8000") == [object_id]
    assert google.objects[object_id]["hasUsers"] is True
    row = await conn.fetchrow("SELECT google_linked_at, google_object_at FROM passes")
    assert row is not None
    assert None not in (row["google_linked_at"], row["google_object_at"])
    assert await conn.fetchval("SELECT count(*) FROM google_classes") == 1


async def test_asking_again_inserts_nothing_and_the_class_goes_once(
    google_client: Client, google: FakeGoogleWallet, pool: Pool, shopper: dict[str, Any]
) -> None:
    assert (await google_client.get("/v1/me/card/google-pass", headers=shopper["headers"])).status_code == 200
    again = await google_client.get("/v1/me/card/google-pass", headers=shopper["headers"])
    assert again.status_code == 200
    page = (await google_client.get("/v1/me/card/page-link", headers=shopper["headers"])).json()["url"]
    redirect = await google_client.get(page.split("8000", 1)[1] + "/google", follow_redirects=False)
    assert redirect.status_code == 303
    assert redirect.headers["location"].startswith(SAVE_URL)
    assert len(redirect.headers["location"]) <= MAX_SAVE_URL
    assert len(google.calls("POST", "loyaltyObject")) == 1  # the object is kept current by PATCHes from now on
    assert google.calls("PATCH") == []

    other = await sign_in(google_client, pool, "+375297654321")
    assert (await google_client.get("/v1/me/card/google-pass", headers=other["headers"])).status_code == 200
    assert len(google.calls("POST", "loyaltyObject")) == 2
    assert len(google.calls("POST", "loyaltyClass")) == 1  # once per program, not per card


async def test_what_google_has_already_is_brought_up_to_date(
    google_client: Client, google: FakeGoogleWallet, shopper: dict[str, Any], conn: Connection
) -> None:
    """An object saved from an older link, a class of an older program: 409 on insert, then a PATCH."""
    object_id, class_id = f"{ISSUER}.{shopper['card']}", f"{ISSUER}.loyalty"
    stale_class = {"id": class_id, "issuerName": "Old", "programName": "Old", "programLogo": {}, "reviewStatus": "x"}
    stale_object = {"id": object_id, "classId": class_id, "state": "ACTIVE", "accountName": "Someone Else"}
    google.preload(stale_class, stale_object)
    await conn.execute("INSERT INTO google_classes VALUES ($1, $2, now())", class_id, "0" * 64)

    response = await google_client.get("/v1/me/card/google-pass", headers=shopper["headers"])

    assert response.status_code == 200, response.text
    assert [r.status for r in google.calls("POST", "loyaltyClass")] == [409]
    assert [r.status for r in google.calls("PATCH", "loyaltyClass")] == [200]
    assert google.classes[class_id]["programName"] == "Kartka"
    assert [r.status for r in google.calls("POST", "loyaltyObject")] == [409]
    assert [r.status for r in google.calls("PATCH", "loyaltyObject")] == [200]
    assert "accountName" not in google.objects[object_id]  # no name on this account: cleared
    assert google.objects[object_id]["loyaltyPoints"]["balance"] == {"string": "0"}
    assert await conn.fetchval("SELECT digest FROM google_classes") != "0" * 64


async def test_google_down_is_a_503_with_retry_after_and_nothing_recorded(
    google_client: Client, google: FakeGoogleWallet, shopper: dict[str, Any], conn: Connection
) -> None:
    google.default = Reply(status=503, retry_after="7")
    down = await google_client.get("/v1/me/card/google-pass", headers=shopper["headers"])
    assert down.status_code == 503
    assert problem(down)["code"] == "google-wallet-unavailable"
    assert down.headers["retry-after"] == "7"
    assert "503" not in problem(down)["detail"]  # Google's answer goes to the log, not to the shopper

    google.default = Reply(delay=TIMEOUT * 3)  # answers, but too late
    started = time.monotonic()
    slow = await google_client.get("/v1/me/card/google-pass", headers=shopper["headers"])
    assert time.monotonic() - started < TIMEOUT * 2.5
    assert slow.status_code == 503
    assert problem(slow)["code"] == "google-wallet-unavailable"
    assert slow.headers["retry-after"] == "30"
    page = (await google_client.get("/v1/me/card/page-link", headers=shopper["headers"])).json()["url"]
    google.default = Reply(status=500)
    from_page = await google_client.get(page.split("8000", 1)[1] + "/google", follow_redirects=False)
    assert from_page.status_code == 503
    assert problem(from_page)["code"] == "google-wallet-unavailable"

    linked = "SELECT count(*) FROM passes WHERE google_linked_at IS NOT NULL OR google_object_at IS NOT NULL"
    assert await conn.fetchval(linked) == 0  # the transaction rolled back
    assert await conn.fetchval("SELECT count(*) FROM google_classes") == 0

    google.default = Reply()  # back: the next request goes through
    assert (await google_client.get("/v1/me/card/google-pass", headers=shopper["headers"])).status_code == 200
