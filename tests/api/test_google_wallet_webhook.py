"""``POST /v1/webhooks/google-wallet`` with callbacks signed the way Google signs them, by a fake Google
whose root key the app fetches from a real socket (``KARTKA_GOOGLE_ROOT_KEYS_URL``): saves and deletes
are kept once per nonce; anything Google did not sign for this issuer is a 401 that records nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.clock import FakeClock
from kartka.db import Connection
from kartka.settings import Settings
from main.web import create_app
from tests.fakes.google_callbacks import FakeGoogleCallbacks
from wallet.passes.installs import install_figures
from wallet.passes.service import ensure_pass
from wallet.passes.setup import DEV_GOOGLE_ISSUER

Client = AsyncTestClient[Litestar]
URL = "/v1/webhooks/google-wallet"


@pytest.fixture(scope="module")
def google() -> Iterator[FakeGoogleCallbacks]:
    server = FakeGoogleCallbacks()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def webhook_client(settings: Settings, clock: FakeClock, google: FakeGoogleCallbacks) -> AsyncIterator[Client]:
    configured = msgspec.structs.replace(settings, google_root_keys_url=google.keys_url)
    async with AsyncTestClient(create_app(configured, clock=clock)) as client:
        yield client


async def _card(client: Client, pos: dict[str, str], phone: str) -> str:
    response = await client.post("/v1/pos/customers", json={"phone": phone}, headers=pos)
    assert response.status_code in (200, 201), response.text
    number: str = response.json()["card"]["number"]
    return number


async def test_saves_and_deletes_are_kept_once_each_and_count_as_installs(
    webhook_client: Client, pos: dict[str, str], conn: Connection, clock: FakeClock, google: FakeGoogleCallbacks
) -> None:
    card = await _card(webhook_client, pos, "+375291234567")
    serial = (await ensure_pass(conn, card, clock.now())).serial_number
    now_ms = int(clock.now().timestamp() * 1000)
    start = clock.now()
    saved = google.callback(issuer=DEV_GOOGLE_ISSUER, object_id=f"{DEV_GOOGLE_ISSUER}.{serial}", now_ms=now_ms)

    first = await webhook_client.post(URL, content=saved, headers={"content-type": "application/json"})
    assert first.status_code == 200, first.text
    assert first.json() == {"event": "save", "object_id": f"{DEV_GOOGLE_ISSUER}.{serial}", "recorded": True}
    again = await webhook_client.post(URL, content=saved, headers={"content-type": "application/json"})
    assert again.status_code == 200
    assert again.json()["recorded"] is False  # Google's redelivery: same nonce, counted once
    clock.advance(timedelta(seconds=60))
    end = clock.now()
    figures = await install_figures(conn, start, end)
    assert (figures.google_saves, figures.google_deletes, figures.cards_with_pass) == (1, 0, 1)

    deleted = google.callback(
        issuer=DEV_GOOGLE_ISSUER, object_id=f"{DEV_GOOGLE_ISSUER}.{serial}", event="del", now_ms=now_ms + 60_000
    )
    assert (await webhook_client.post(URL, content=deleted)).json()["recorded"] is True
    clock.advance(timedelta(seconds=60))
    figures = await install_figures(conn, start, clock.now())
    assert (figures.google_saves, figures.google_deletes, figures.cards_with_pass) == (1, 1, 0)
    # The history says when: the pass was installed at the first period's end.
    assert (await install_figures(conn, start, end)).cards_with_pass == 1
    rows = await conn.fetch("SELECT event_type, serial_number FROM google_wallet_events ORDER BY id")
    assert [(r["event_type"], r["serial_number"]) for r in rows] == [("save", serial), ("del", serial)]
    assert google.fetches == 1  # the root keys are fetched once and kept


@pytest.mark.parametrize(
    "wrong",
    [
        {"recipient": "1111111111111111111"},  # signed for another issuer
        {"object_id": "1111111111111111111.2000000000015"},
        {"key_expires_ms": 0},  # an expired intermediate key
    ],
)
async def test_a_callback_google_did_not_sign_for_this_issuer_is_refused_and_records_nothing(
    webhook_client: Client, conn: Connection, clock: FakeClock, google: FakeGoogleCallbacks, wrong: dict[str, Any]
) -> None:
    now_ms = int(clock.now().timestamp() * 1000)
    fields: dict[str, Any] = {"issuer": DEV_GOOGLE_ISSUER, "object_id": f"{DEV_GOOGLE_ISSUER}.x", "now_ms": now_ms}
    response = await webhook_client.post(URL, content=google.callback(**(fields | wrong)))
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await conn.fetchval("SELECT count(*) FROM google_wallet_events") == 0


async def test_an_object_kartka_does_not_know_is_kept_without_a_pass(
    webhook_client: Client, conn: Connection, clock: FakeClock, google: FakeGoogleCallbacks
) -> None:
    now_ms = int(clock.now().timestamp() * 1000)
    body = google.callback(issuer=DEV_GOOGLE_ISSUER, object_id=f"{DEV_GOOGLE_ISSUER}.unknown", now_ms=now_ms)
    assert (await webhook_client.post(URL, content=body)).status_code == 200
    assert await conn.fetchval("SELECT serial_number FROM google_wallet_events") is None
