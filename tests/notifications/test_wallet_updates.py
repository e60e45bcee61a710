"""A purchase changes the card on the phones, end to end: the commit queues the pass updates, the worker
pushes them to a fake APNs (HTTP/2 over TLS, authenticated by the app's Pass Type ID certificate) and
PATCHes a fake Google Wallet, and what Apple and Google answer is recorded."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.state import Services, services_of
from kartka.db import Connection, Pool
from notifications.model import Channel
from notifications.providers.apns import load_passkit_pusher
from notifications.providers.google_wallet import GoogleWalletProvider
from notifications.worker import Lane
from tests.fakes.apns import FakeApns, Reply
from tests.fakes.google_wallet import FakeGoogleWallet
from tests.fakes.tls import TlsFiles, make_tls
from tests.helpers import sign_in
from tests.notifications.conftest import Make
from wallet.passes.google import loyalty_class

Client = AsyncTestClient[Litestar]
LINES = [{"sku": "milk", "qty": 2, "unit_price": 25_000}]
DEVICES = {"a" * 32: "ab" * 32, "b" * 32: "cd" * 32}


@pytest.fixture
def services(app: Litestar, client: Client) -> Services:
    return services_of(app.state)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("apns-tls"))


@pytest.fixture
def apple(services: Services, tls: TlsFiles) -> Iterator[FakeApns]:
    development = services.passes.setup.development
    assert development is not None
    fake = FakeApns(tls, client_ca=development.ca_file)  # trusts the development root, as Apple trusts its own
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def google_server() -> Iterator[FakeGoogleWallet]:
    from wallet.passes.setup import DEV_GOOGLE_ISSUER  # noqa: PLC0415

    fake = FakeGoogleWallet(issuer_id=DEV_GOOGLE_ISSUER)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def google(google_server: FakeGoogleWallet, services: Services) -> FakeGoogleWallet:
    google_server.reset()
    setup = services.passes.setup.google
    assert setup is not None
    account = setup.service_account
    key = serialization.load_pem_private_key(account["private_key"].encode(), password=None)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    google_server.trust(account["client_email"], public.decode(), account["private_key_id"])
    return google_server


async def phone_with_pass(client: Client, pool: Pool) -> tuple[dict[str, Any], dict[str, Any]]:
    signed = await sign_in(client, pool, "+375291234567")
    body = (await client.get("/v1/me/card/apple-pass", headers=signed["headers"])).content
    with zipfile.ZipFile(io.BytesIO(body)) as pkpass:
        document: dict[str, Any] = json.loads(pkpass.read("pass.json"))
    auth = {"Authorization": f"ApplePass {document['authenticationToken']}"}
    for device, push in DEVICES.items():
        path = f"/passkit/v1/devices/{device}/registrations/{document['passTypeIdentifier']}/{document['serialNumber']}"
        assert (await client.post(path, json={"pushToken": push}, headers=auth)).status_code == 201
    return signed, document


async def buy(client: Client, pos: dict[str, str], card: str, order: str = "o-1") -> None:
    response = await client.post(
        "/v1/pos/orders",
        json={"order_id": order, "card": card, "lines": LINES},
        headers=pos | {"Idempotency-Key": order},
    )
    assert response.status_code == 201, response.text


@pytest.fixture
async def passkit_lane(apple: FakeApns, services: Services, tls: TlsFiles) -> AsyncIterator[Lane]:
    setup = services.passes.setup.apple
    assert setup is not None
    pusher = load_passkit_pusher(setup.identity, url=apple.url, ca_file=tls.ca_file, timeout=5.0)
    yield Lane(pusher, rate_per_second=1_000, concurrency=4)
    await pusher.aclose()


async def test_a_purchase_pushes_the_pass_to_every_registered_phone(
    client: Client,
    pool: Pool,
    pos: dict[str, str],
    apple: FakeApns,
    passkit_lane: Lane,
    make_dispatcher: Make,
    conn: Connection,
) -> None:
    _, document = await phone_with_pass(client, pool)
    dead, alive = DEVICES["a" * 32], DEVICES["b" * 32]
    apple.replies[dead] = Reply(status=410, reason="Unregistered")
    await buy(client, pos, document["serialNumber"])

    dispatcher = make_dispatcher()
    dispatcher.lanes[Channel.PASSKIT] = passkit_lane
    assert await dispatcher.run_once() >= 2
    pushes = [r for r in apple.requests if r.topic == document["passTypeIdentifier"]]
    assert {r.token for r in pushes} == {dead, alive}
    for request in pushes:
        assert request.payload == {}
        assert request.certificate_uid == document["passTypeIdentifier"]  # the pass certificate, over TLS
        assert request.headers["apns-push-type"] == "background"
    statuses = {
        r["recipient"]: r["status"]
        for r in await conn.fetch("SELECT recipient, status FROM outbox WHERE channel = 'passkit'")
    }
    assert statuses == {dead: "failed", alive: "sent"}
    # 410 removed that phone's registration only; it stays in the install history, marked removed.
    live = await conn.fetch(
        "SELECT d.push_token FROM pass_registrations r JOIN pass_devices d USING (device_library_id)"
        " WHERE r.removed_at IS NULL"
    )
    assert {r["push_token"] for r in live} == {alive}
    removed = await conn.fetch(
        "SELECT d.push_token, r.removed_by FROM pass_registrations r JOIN pass_devices d USING (device_library_id)"
        " WHERE r.removed_at IS NOT NULL"
    )
    assert [(r["push_token"], r["removed_by"]) for r in removed] == [(dead, "apns")]


async def test_the_saved_google_pass_follows_the_balance(
    client: Client, pool: Pool, pos: dict[str, str], google: FakeGoogleWallet, services: Services, make_dispatcher: Make
) -> None:
    signed = await sign_in(client, pool, "+375291234567")
    card = (await client.get("/v1/me", headers=signed["headers"])).json()["card"]["number"]
    link = (await client.get("/v1/me/card/google-pass", headers=signed["headers"])).json()["save_url"]
    setup = services.passes.setup.google
    assert setup is not None
    # Development material has no Google to insert into; here the fake stands in for what the request
    # for the link inserts where Google is real (tests/api/test_google_save.py).
    async with pool.acquire() as conn:
        objects = await services.passes.google_objects(conn, [card], services.clock.now())
    google.preload(loyalty_class(setup.config), objects[card])
    saved = google.save(link.rsplit("/", 1)[1], setup.config.origins[0])  # the shopper taps "Add"
    assert saved
    object_id = f"{setup.config.issuer_id}.{card}"
    assert google.objects[object_id]["loyaltyPoints"]["balance"] == {"string": "0"}

    await buy(client, pos, card)
    account = setup.service_account | {"token_uri": google.token_uri}

    async def load_objects(numbers: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        async with pool.acquire() as conn:
            return await services.passes.google_objects(conn, numbers, services.clock.now())

    provider = GoogleWalletProvider(
        base_url=google.url, service_account=account, config=setup.config, load_objects=load_objects, timeout=5.0
    )
    try:
        dispatcher = make_dispatcher({Channel.GWALLET: provider})
        await dispatcher.run_once()
    finally:
        await provider.aclose()
    [patch] = google.calls("PATCH")
    assert patch.resource_id == object_id
    stored = google.objects[object_id]
    pending = [m for m in stored["textModulesData"] if "25" in json.dumps(m, ensure_ascii=False)]
    assert pending, stored["textModulesData"]  # the purchase's 25.00 points, pending for a day
