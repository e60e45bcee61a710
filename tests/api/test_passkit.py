"""The PassKit web service, as Apple's Wallet calls it, and the passes that change under it."""

from __future__ import annotations

import asyncio
import email.utils
import io
import json
import zipfile
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.clock import FakeClock
from kartka.db import Connection, Pool
from kartka.keys import Scope
from tests.helpers import NOTIFIER, Keys, problem, refresh, sign_in
from wallet.jobs import downgrade_daily, expire, passes_due
from wallet.passes.service import touch
from wallet.program import DEFAULT_PROGRAM

Client = AsyncTestClient[Litestar]
DEVICE = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
OTHER_DEVICE = "ffeeddccbbaa99887766554433221100"
PUSH = "ab" * 32
OTHER_PUSH = "cd" * 32
LINES = [{"sku": "milk", "qty": 2, "unit_price": 25_000}]


def unpack(body: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(body)) as pkpass:
        document: dict[str, Any] = json.loads(pkpass.read("pass.json"))
    return document


class Phone:
    """A shopper with the app, and the Wallet on their phone holding their card's pass."""

    def __init__(self, client: Client, signed: dict[str, Any], document: dict[str, Any]) -> None:
        self.client = client
        self.signed = signed
        self.serial: str = document["serialNumber"]
        self.pass_type: str = document["passTypeIdentifier"]
        self.auth = {"Authorization": f"ApplePass {document['authenticationToken']}"}

    def url(self, device: str = DEVICE) -> str:
        return f"/passkit/v1/devices/{device}/registrations/{self.pass_type}/{self.serial}"

    async def register(self, device: str = DEVICE, push: str = PUSH, **headers: str) -> Any:
        return await self.client.post(self.url(device), json={"pushToken": push}, headers=headers or self.auth)

    async def changed(self, since: str | None = None, device: str = DEVICE) -> Any:
        params = {"passesUpdatedSince": since} if since is not None else {}
        return await self.client.get(f"/passkit/v1/devices/{device}/registrations/{self.pass_type}", params=params)

    async def latest(self, since: str | None = None, method: str = "GET") -> Any:
        headers = self.auth | ({"If-Modified-Since": since} if since else {})
        return await self.client.request(method, f"/passkit/v1/passes/{self.pass_type}/{self.serial}", headers=headers)


@pytest.fixture
async def phone(client: Client, pool: Pool) -> Phone:
    signed = await sign_in(client, pool, "+375291234567")
    response = await client.get("/v1/me/card/apple-pass", headers=signed["headers"])
    assert response.status_code == 200, response.text
    return Phone(client, signed, unpack(response.content))


async def buy(client: Client, pos: dict[str, str], card: str, order: str) -> None:
    response = await client.post(
        "/v1/pos/orders",
        json={"order_id": order, "card": card, "lines": LINES},
        headers=pos | {"Idempotency-Key": order},
    )
    assert response.status_code == 201, response.text


async def test_the_pass_carries_the_web_service_and_a_token_fixed_for_its_life(
    client: Client, phone: Phone, settings: Any
) -> None:
    response = await client.get("/v1/me/card/apple-pass", headers=phone.signed["headers"])
    assert response.headers["content-type"] == "application/vnd.apple.pkpass"
    document = unpack(response.content)
    assert document["webServiceURL"] == f"{settings.public_base}/passkit"
    assert len(document["authenticationToken"]) >= 16
    assert f"ApplePass {document['authenticationToken']}" == phone.auth["Authorization"]  # the same every time
    assert document["serialNumber"] == document["barcodes"][0]["message"]
    assert document["passTypeIdentifier"] == settings.pass_type_id
    assert "voided" not in document


async def test_register_is_201_then_200_and_needs_the_pass_token(client: Client, phone: Phone) -> None:
    assert (await phone.register()).status_code == 201
    assert (await phone.register()).status_code == 200
    assert (await phone.register(device=OTHER_DEVICE)).status_code == 201
    for headers in (
        {"Authorization": "ApplePass wrong-token-wrong-token"},
        {"Authorization": "Bearer " + phone.auth["Authorization"].split()[1]},
        {"X-Nothing": "1"},
    ):
        refused = await client.post(phone.url(), json={"pushToken": PUSH}, headers=headers)
        assert refused.status_code == 401, headers
        problem(refused)
    elsewhere = phone.url().replace(phone.serial, "2000000000015")
    assert (await client.post(elsewhere, json={"pushToken": PUSH}, headers=phone.auth)).status_code == 401
    other_type = phone.url().replace(phone.pass_type, "pass.com.example.other")
    assert (await client.post(other_type, json={"pushToken": PUSH}, headers=phone.auth)).status_code == 401
    bad = await client.post(phone.url(), json={"pushToken": "not hex"}, headers=phone.auth)
    assert bad.status_code == 422


async def test_the_applepass_scheme_is_matched_in_any_case(client: Client, phone: Phone) -> None:
    token = phone.auth["Authorization"].split()[1]
    for scheme in ("applepass", "APPLEPASS", "applePass"):
        auth = {"Authorization": f"{scheme} {token}"}
        assert (await phone.register(**auth)).status_code in (200, 201), scheme
        assert (await phone.latest(method="GET")).status_code == 200
        fetched = await client.get(f"/passkit/v1/passes/{phone.pass_type}/{phone.serial}", headers=auth)
        assert fetched.status_code == 200, scheme
    assert (await client.delete(phone.url(), headers={"Authorization": f"APPLEPASS {token}"})).status_code == 200
    assert (await phone.register(Authorization=f"ApplePassword {token}")).status_code == 401


async def test_a_long_push_token_registers_and_gets_its_pushes(
    client: Client, phone: Phone, pos: dict[str, str], conn: Connection
) -> None:
    """Apple promises no length for push tokens; one of 1,024 (and 2,048) hex digits is kept and pushed to."""
    long, longest = "ab" * 512, "cd" * 1024
    assert (await phone.register(push=long)).status_code == 201
    assert (await phone.register(device=OTHER_DEVICE, push=longest)).status_code == 201
    await buy(client, pos, phone.serial, "o-1")
    queued = {r["recipient"] for r in await conn.fetch("SELECT recipient FROM outbox WHERE channel = 'passkit'")}
    assert queued == {long, longest}
    too_long = await phone.register(device="c" * 32, push="ef" * 1024 + "0")
    assert too_long.status_code == 422
    ios = await client.post(
        "/v1/me/devices", json={"platform": "ios", "token": long}, headers=phone.signed["headers"]
    )  # the app's own APNs token, the same rule
    assert ios.status_code == 201, ios.text


async def test_serials_updated_since_a_tag(client: Client, phone: Phone, pos: dict[str, str], clock: FakeClock) -> None:
    assert (await phone.changed()).status_code == 204  # nothing registered on this device yet
    await phone.register()
    first = await phone.changed()
    assert first.status_code == 200
    assert first.json()["serialNumbers"] == [phone.serial]
    tag = first.json()["lastUpdated"]
    assert tag.isdigit()
    # Within the look-back a recent change is listed again (a change still committing may hide there).
    assert (await phone.changed(tag)).json()["serialNumbers"] == [phone.serial]
    clock.advance(timedelta(minutes=11))
    quiet = (await phone.changed(tag)).json()["lastUpdated"]
    assert (await phone.changed(quiet)).status_code == 204  # nothing changed since
    await buy(client, pos, phone.serial, "o-1")
    after = await phone.changed(quiet)
    assert after.status_code == 200
    assert after.json()["serialNumbers"] == [phone.serial]
    assert (await phone.changed(device=OTHER_DEVICE)).status_code == 204
    for odd in ("not-a-tag", "²", "9" * 40):  # a tag we never gave out: everything
        assert (await phone.changed(odd)).json()["serialNumbers"] == [phone.serial], odd


async def test_a_change_still_committing_during_a_listing_is_listed_next_time(
    client: Client, pool: Pool, phone: Phone, clock: FakeClock
) -> None:
    """One phone holds two passes; the change to A is made first but commits after the change to B, and
    after the phone listed what changed: the next listing must still name A."""
    other_signed = await sign_in(client, pool, "+375297654321")
    other = Phone(
        client,
        other_signed,
        unpack((await client.get("/v1/me/card/apple-pass", headers=other_signed["headers"])).content),
    )
    await phone.register()
    await other.register()
    me = (await client.get("/v1/me", headers=phone.signed["headers"])).json()["profile"]["id"]
    them = (await client.get("/v1/me", headers=other_signed["headers"])).json()["profile"]["id"]
    clock.advance(timedelta(minutes=11))
    tag = (await phone.changed()).json()["lastUpdated"]
    async with pool.acquire() as first, pool.acquire() as second:
        slow = first.transaction()
        await slow.start()
        await touch(first, [UUID(me)], clock.now())  # A: made first, still committing
        async with second.transaction():
            await touch(second, [UUID(them)], clock.now())  # B: made and committed
        during = await phone.changed(tag)
        await slow.commit()
    assert during.json()["serialNumbers"] == [other.serial]
    after = await phone.changed(during.json()["lastUpdated"])
    assert phone.serial in after.json()["serialNumbers"]


async def test_latest_pass_with_last_modified_and_304(
    client: Client, phone: Phone, pos: dict[str, str], clock: FakeClock
) -> None:
    first = await phone.latest()
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/vnd.apple.pkpass"
    modified = first.headers["last-modified"]
    assert email.utils.parsedate_to_datetime(modified)
    unchanged = await phone.latest(since=modified)
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert (await phone.latest(since=modified, method="HEAD")).status_code == 304
    head = await phone.latest(method="HEAD")
    assert head.status_code == 200
    assert head.headers["last-modified"] == modified
    assert head.headers["content-type"] == "application/vnd.apple.pkpass"
    assert head.content == b""

    await buy(client, pos, phone.serial, "o-1")  # within the same second as the pass was made
    changed = await phone.latest(since=modified)
    assert changed.status_code == 200
    assert http_date(changed.headers["last-modified"]) <= http_date(changed.headers["date"])
    assert unpack(changed.content)["storeCard"]["secondaryFields"]  # a whole pass, freshly built
    assert (await client.get(f"/passkit/v1/passes/{phone.pass_type}/{phone.serial}")).status_code == 401
    wrong = await client.get(
        f"/passkit/v1/passes/{phone.pass_type}/{phone.serial}", headers={"Authorization": "ApplePass x" * 3}
    )
    assert wrong.status_code == 401


def http_date(value: str) -> datetime:
    return email.utils.parsedate_to_datetime(value)


async def test_ten_changes_in_one_second_never_put_last_modified_after_date(
    client: Client, phone: Phone, pos: dict[str, str], clock: FakeClock
) -> None:
    """If-Modified-Since compares whole seconds, so a pass's version moves a second per change and runs
    ahead of the clock in a burst; Last-Modified still never passes Date, and no change is missed."""
    await phone.register()
    first = await phone.latest()
    seen, tag = first.headers["last-modified"], (await phone.changed()).json()["lastUpdated"]
    for n in range(10):  # ten changes within the same second
        await buy(client, pos, phone.serial, f"o-{n}")
        listed = await phone.changed(tag)
        assert listed.json()["serialNumbers"] == [phone.serial], n  # the listing names it
        tag = listed.json()["lastUpdated"]
        fetched = await phone.latest(since=seen)
        assert fetched.status_code == 200, n  # the phone's copy is older: never a 304 here
        assert fetched.headers["date"] == email.utils.format_datetime(clock.now(), usegmt=True)
        assert http_date(fetched.headers["last-modified"]) <= http_date(fetched.headers["date"]), n
        head = await phone.latest(since=seen, method="HEAD")
        assert http_date(head.headers["last-modified"]) <= http_date(head.headers["date"]), n
        seen = fetched.headers["last-modified"]
    clock.advance(timedelta(seconds=11))  # the clock catches up with the version
    caught_up = await phone.latest(since=seen)
    assert caught_up.status_code == 200
    assert http_date(caught_up.headers["last-modified"]) <= http_date(caught_up.headers["date"])
    assert (await phone.latest(since=caught_up.headers["last-modified"])).status_code == 304
    await buy(client, pos, phone.serial, "o-last")  # and the next change is not missed
    assert (await phone.latest(since=caught_up.headers["last-modified"])).status_code == 200


async def test_unregister_and_log(client: Client, phone: Phone) -> None:
    await phone.register()
    await phone.register(device=OTHER_DEVICE, push=OTHER_PUSH)
    assert (
        await client.delete(phone.url(), headers={"Authorization": "ApplePass nope-nope-nope-nope"})
    ).status_code == 401
    assert (await client.delete(phone.url(), headers=phone.auth)).status_code == 200
    assert (await phone.changed()).status_code == 204
    assert (await phone.changed(device=OTHER_DEVICE)).status_code == 200  # the other phone still has it
    logged = await client.post("/passkit/v1/log", json={"logs": ["[2026-03-02] Web service error: 500"]})
    assert logged.status_code == 200


async def test_every_change_a_pass_shows_moves_its_tag_and_queues_a_push(
    client: Client, pool: Pool, phone: Phone, pos: dict[str, str], keys: Keys, clock: FakeClock, conn: Connection
) -> None:
    await phone.register()
    await phone.register(device=OTHER_DEVICE, push=OTHER_PUSH)
    customer = (await client.get("/v1/me", headers=phone.signed["headers"])).json()["profile"]["id"]
    admin = await keys.headers(Scope.ADMIN)

    async def tag() -> int:
        value: int = await conn.fetchval("SELECT update_tag FROM passes WHERE serial_number = $1", phone.serial)
        return value

    async def pushes() -> set[str]:
        rows = await conn.fetch("SELECT recipient FROM outbox WHERE channel = 'passkit' AND status = 'queued'")
        await conn.execute("DELETE FROM outbox WHERE channel = 'passkit'")
        return {r["recipient"] for r in rows}

    changes: dict[str, Callable[[], Awaitable[Any]]] = {
        "a purchase": lambda: buy(client, pos, phone.serial, "o-1"),
        "a refund": lambda: client.post(
            "/v1/pos/orders/o-1/refunds",
            json={"refund_id": "r-1", "lines": [{"sku": "milk", "qty": 1}]},
            headers=pos | {"Idempotency-Key": "r-1"},
        ),
        "a grant": lambda: client.post(
            f"/v1/admin/customers/{customer}/grants",
            json={"points": 500, "expires_in_days": 1, "reason": "sorry"},
            headers=admin,
        ),
        "a new name": lambda: client.patch("/v1/me", json={"name": "Анна"}, headers=phone.signed["headers"]),
    }
    for what, change in changes.items():
        before = await tag()
        response = await change()
        assert response is None or response.status_code < 300, (what, response.text)
        assert await tag() > before, what
        assert await pushes() == {PUSH, OTHER_PUSH}, what

    # Time alone: the purchase's points become available a day later; the grant expires after a day.
    await passes_due(pool, DEFAULT_PROGRAM, NOTIFIER, clock.now())  # the first run sets its mark
    clock.advance(timedelta(hours=25))
    before = await tag()
    assert await passes_due(pool, DEFAULT_PROGRAM, NOTIFIER, clock.now()) == 1
    assert await tag() > before
    assert await pushes() == {PUSH, OTHER_PUSH}
    assert await passes_due(pool, DEFAULT_PROGRAM, NOTIFIER, clock.now()) == 0  # covered already
    before = await tag()
    assert await expire(pool, NOTIFIER, clock.now()) == 1
    assert await tag() > before
    assert await pushes() == {PUSH, OTHER_PUSH}


async def test_a_tier_downgrade_updates_the_pass(
    client: Client, pool: Pool, phone: Phone, pos: dict[str, str], clock: FakeClock, conn: Connection
) -> None:
    await phone.register()
    big = [{"sku": "sofa", "qty": 1, "unit_price": 160_000}]
    response = await client.post(
        "/v1/pos/orders",
        json={"order_id": "o-1", "card": phone.serial, "lines": big},
        headers=pos | {"Idempotency-Key": "o"},
    )
    assert response.json()["tier"]["code"] == "platinum"
    clock.advance(timedelta(days=400))
    before = await conn.fetchval("SELECT update_tag FROM passes")
    assert await downgrade_daily(pool, DEFAULT_PROGRAM, NOTIFIER, clock.now()) == 1
    assert await conn.fetchval("SELECT update_tag FROM passes") > before
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE channel = 'passkit' AND recipient = $1", PUSH) >= 1


async def test_a_blocked_or_replaced_card_voids_its_pass(
    client: Client, pool: Pool, phone: Phone, keys: Keys, pos: dict[str, str], conn: Connection
) -> None:
    await phone.register()
    support = await keys.headers(Scope.ADMIN)
    replaced = await client.post(f"/v1/admin/cards/{phone.serial}/replace", headers=support)
    assert replaced.status_code == 201, replaced.text
    new_card = replaced.json()["card"]["number"]
    assert new_card != phone.serial
    assert replaced.json()["replaced_card"] == {"number": phone.serial, "status": "blocked"}
    again = await client.post(f"/v1/admin/cards/{phone.serial}/replace", headers=support)
    assert again.json()["card"]["number"] == new_card  # a retry answers the same
    voided = unpack((await phone.latest()).content)
    assert voided["voided"] is True
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE channel = 'passkit' AND recipient = $1", PUSH) >= 1
    # The till refuses the old number and finds the account by the new one; the shopper gets its link.
    assert (await client.post("/v1/pos/identify", json={"code": phone.serial}, headers=pos)).status_code == 409
    assert (await client.post("/v1/pos/identify", json={"code": new_card}, headers=pos)).status_code == 200
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE template = 'card_link' AND params->>'card' = $1", new_card
        )
        == 1
    )
    blocked = await client.post(f"/v1/admin/cards/{new_card}/block", headers=support)
    assert blocked.json() == {"number": new_card, "status": "blocked"}
    assert (await client.post(f"/v1/admin/cards/{new_card}/block", headers=support)).status_code == 200
    assert (await client.post("/v1/admin/cards/2000000000015/block", headers=support)).status_code == 404


async def test_rotating_the_card_page_link_retires_the_pass_it_handed_out(
    client: Client, phone: Phone, pos: dict[str, str], conn: Connection
) -> None:
    """Whoever downloaded the pass through the old link loses it: the phones holding it are pushed and
    fetch it void and empty of the account; the old token fetches nothing live; the new link's pass
    (a new serial and token) works and is the one that updates from now on."""
    await phone.register()
    assert (await client.get("/v1/me/card/google-pass", headers=phone.signed["headers"])).status_code == 200
    await conn.execute("DELETE FROM outbox")
    rotated = await client.post("/v1/me/card/page-link", headers=phone.signed["headers"])
    assert rotated.status_code == 201
    page = rotated.json()["url"].rsplit("/c/", 1)[1]
    # The void push, through the outbox, as when a card is replaced; the Google object is expired too.
    queued = {tuple(r) for r in await conn.fetch("SELECT channel, recipient FROM outbox")}
    assert queued == {("passkit", PUSH), ("gwallet", phone.serial)}
    assert (await phone.changed()).json()["serialNumbers"] == [phone.serial]
    void = unpack((await phone.latest()).content)
    assert void["voided"] is True
    shown = [void["barcodes"][0]["message"]] + [f["value"] for f in void["storeCard"]["backFields"]]
    assert phone.serial not in shown  # nor the card number in full: the void pass does not scan at a till
    assert void["storeCard"]["primaryFields"][0]["value"] in (0, "0")
    assert all(f["key"] not in {"holder", "card_page"} for f in void["storeCard"]["backFields"])

    fresh = await client.get(f"/c/{page}/pass.pkpass")
    assert fresh.status_code == 200
    document = unpack(fresh.content)
    new = Phone(client, phone.signed, document)
    assert new.serial != phone.serial
    assert new.serial.startswith(phone.serial)
    assert new.auth != phone.auth
    assert document["barcodes"][0]["message"] == phone.serial  # the same card
    assert "voided" not in document
    # The old token does not open the new pass; the new one does.
    stolen = await client.get(f"/passkit/v1/passes/{new.pass_type}/{new.serial}", headers=phone.auth)
    assert stolen.status_code == 401
    problem(stolen)
    assert (await new.latest()).status_code == 200
    again = await client.get("/v1/me/card/apple-pass", headers=phone.signed["headers"])
    assert unpack(again.content)["serialNumber"] == new.serial  # the app hands out the same new pass
    # From now on changes push the new pass's devices only: the retired one is never updated again.
    assert (await new.register(device=OTHER_DEVICE, push=OTHER_PUSH)).status_code == 201
    await conn.execute("DELETE FROM outbox")
    await buy(client, pos, phone.serial, "o-1")
    pushed = await conn.fetch("SELECT recipient FROM outbox WHERE channel = 'passkit'")
    assert [r["recipient"] for r in pushed] == [OTHER_PUSH]
    assert unpack((await phone.latest()).content)["voided"] is True


async def test_closing_the_account_voids_the_pass(client: Client, phone: Phone, conn: Connection) -> None:
    await phone.register()
    assert (await client.delete("/v1/me", headers=phone.signed["headers"])).status_code == 204
    assert unpack((await phone.latest()).content)["voided"] is True
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE channel = 'passkit' AND status = 'queued'") == 1


async def test_a_card_without_a_pass_costs_no_push(
    client: Client, pool: Pool, pos: dict[str, str], conn: Connection
) -> None:
    card = (await client.post("/v1/pos/customers", json={"phone": "+375297654321"}, headers=pos)).json()["card"]
    await buy(client, pos, card["number"], "o-1")
    assert await conn.fetchval("SELECT count(*) FROM passes") == 0
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE channel IN ('passkit', 'gwallet')") == 0


async def test_store_locations_become_relevant_places(client: Client, phone: Phone, keys: Keys) -> None:
    admin = await keys.headers(Scope.ADMIN)
    for n in range(12):
        store = {
            "name": f"Store {n:02d}",
            "timezone": "Europe/Minsk",
            "location": {"latitude": round(53.9 + n / 100, 2), "longitude": 27.5667},
        }
        assert (await client.put(f"/v1/admin/stores/s{n}", json=store, headers=admin)).status_code == 200
    bad = {"name": "x", "timezone": "Europe/Minsk", "location": {"latitude": 91, "longitude": 0}}
    assert (await client.put("/v1/admin/stores/bad", json=bad, headers=admin)).status_code == 422
    locations = unpack((await phone.latest()).content)["locations"]
    assert len(locations) == 10
    assert locations[0] == {"latitude": 53.9, "longitude": 27.5667, "relevantText": "Store 00"}


async def test_google_save_link(client: Client, phone: Phone, conn: Connection, pos: dict[str, str]) -> None:
    link = await client.get("/v1/me/card/google-pass", headers=phone.signed["headers"])
    assert link.status_code == 200
    assert link.json()["save_url"].startswith("https://pay.google.com/gp/v/save/")
    assert await conn.fetchval("SELECT google_linked_at FROM passes") is not None
    await buy(client, pos, phone.serial, "o-1")
    row = await conn.fetchrow("SELECT recipient, template FROM outbox WHERE channel = 'gwallet'")
    assert row is not None
    assert (row["recipient"], row["template"]) == (phone.serial, "pass_update")


async def test_pass_endpoints_need_the_app_token(client: Client, pool: Pool, clock: FakeClock) -> None:
    signed = await sign_in(client, pool, "+375291234567")
    for path in ("/v1/me/card/apple-pass", "/v1/me/card/google-pass", "/v1/me/card/page-link"):
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers=signed["headers"])).status_code == 200
    clock.advance(timedelta(minutes=20))
    assert (await client.get("/v1/me/card/apple-pass", headers=signed["headers"])).status_code == 401
    await refresh(client, signed)
    assert (await client.get("/v1/me/card/apple-pass", headers=signed["headers"])).status_code == 200


async def test_concurrent_first_downloads_make_one_pass(client: Client, pool: Pool, conn: Connection) -> None:
    signed = await sign_in(client, pool, "+375291234567")
    answers = await asyncio.gather(*(client.get("/v1/me/card/apple-pass", headers=signed["headers"]) for _ in range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    tokens = {unpack(a.content)["authenticationToken"] for a in answers}
    assert len(tokens) == 1
    assert await conn.fetchval("SELECT count(*) FROM passes") == 1


async def test_a_purchase_leaving_the_tier_window_moves_the_progress_shown(
    client: Client, pool: Pool, phone: Phone, pos: dict[str, str], clock: FakeClock, conn: Connection
) -> None:
    await buy(client, pos, phone.serial, "o-1")
    await passes_due(pool, DEFAULT_PROGRAM, NOTIFIER, clock.now())  # sets the mark
    clock.advance(timedelta(days=2))
    await passes_due(pool, DEFAULT_PROGRAM, NOTIFIER, clock.now())  # the points became available
    clock.advance(timedelta(days=200))
    await expire(pool, NOTIFIER, clock.now())  # the points expired
    clock.advance(timedelta(days=150))
    assert await passes_due(pool, DEFAULT_PROGRAM, NOTIFIER, clock.now()) == 0  # nothing in this stretch
    before = await conn.fetchval("SELECT update_tag FROM passes")
    clock.advance(timedelta(days=20))  # 372 days after the purchase: it left the 365-day window
    assert await passes_due(pool, DEFAULT_PROGRAM, NOTIFIER, clock.now()) == 1
    assert await conn.fetchval("SELECT update_tag FROM passes") > before
