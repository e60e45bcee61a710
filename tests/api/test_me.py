"""The shopper's app API: profile, card and balance, history, the in-app QR, settings, devices,
closing the account."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
import zxingcpp
from litestar import Litestar
from litestar.testing import AsyncTestClient
from PIL import Image

from kartka.clock import FakeClock
from kartka.db import Connection, Pool
from tests.helpers import problem, refresh, sign_in

Client = AsyncTestClient[Litestar]
PHONE = "+375291234567"
LINES = [{"sku": "milk", "qty": 2, "unit_price": 25_000}]


@pytest.fixture
async def shopper(client: Client, pool: Pool) -> dict[str, Any]:
    return await sign_in(client, pool, PHONE)


async def buy(
    client: Client, pos: dict[str, str], card: str, order: str, redeem: int = 0, lines: list[Any] = LINES
) -> Any:
    response = await client.post(
        "/v1/pos/orders",
        json={"order_id": order, "card": card, "lines": lines, "redeem_points": redeem},
        headers=pos | {"Idempotency-Key": order},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_me_shows_what_the_till_sees(
    client: Client, shopper: dict[str, Any], pos: dict[str, str], clock: FakeClock
) -> None:
    me = (await client.get("/v1/me", headers=shopper["headers"])).json()
    assert set(me) == {"profile", "card", "tier", "balance"}
    assert me["profile"] == {
        "id": me["profile"]["id"],
        "phone": PHONE,
        "name": None,
        "email": None,
        "birthday": None,
        "language": None,
    }
    await buy(client, pos, me["card"]["number"], "o-1")
    clock.advance(timedelta(hours=1))
    me = (await client.get("/v1/me", headers=(await refresh(client, shopper))["headers"])).json()
    till = (await client.post("/v1/pos/identify", json={"code": me["card"]["number"]}, headers=pos)).json()
    assert me["card"] == till["card"]
    assert me["tier"] == till["tier"]
    assert me["balance"] == till["balance"]
    assert me["balance"]["pending"] == 2_500  # 5% of 500.00


async def test_profile_edits(client: Client, shopper: dict[str, Any], conn: Connection) -> None:
    headers = shopper["headers"]
    changed = await client.patch(
        "/v1/me",
        json={"name": "  Анна  ", "email": "Anna@Example.COM", "birthday": "1990-05-17", "language": "en"},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    profile = changed.json()["profile"]
    assert (profile["name"], profile["email"], profile["birthday"], profile["language"]) == (
        "Анна",
        "Anna@example.com",
        "1990-05-17",
        "en",
    )
    # Left out stays; null clears.
    cleared = await client.patch("/v1/me", json={"email": None}, headers=headers)
    assert cleared.json()["profile"]["name"] == "Анна"
    assert cleared.json()["profile"]["email"] is None
    assert await conn.fetchval("SELECT language FROM customers") == "en"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"birthday": "2999-01-01"}, "birthday"),
        ({"birthday": "1850-01-01"}, "birthday"),
        ({"birthday": "17.05.1990"}, "birthday"),
        ({"language": "de"}, "language"),
        ({"name": "x" * 201}, "name"),
        ({"phone": "+375297654321"}, "phone"),
    ],
)
async def test_bad_profile_edits_are_422_and_change_nothing(
    client: Client, shopper: dict[str, Any], conn: Connection, body: dict[str, Any], field: str
) -> None:
    response = await client.patch("/v1/me", json={"name": "Ян", **body}, headers=shopper["headers"])
    assert response.status_code == 422, response.text
    assert field in {e["field"] for e in problem(response)["errors"]}
    assert await conn.fetchval("SELECT name FROM customers") is None


async def test_history_shows_each_entry_with_its_dates(
    client: Client, shopper: dict[str, Any], pos: dict[str, str], clock: FakeClock
) -> None:
    card = (await client.get("/v1/me", headers=shopper["headers"])).json()["card"]["number"]
    await buy(client, pos, card, "o-1")
    clock.advance(timedelta(days=2))
    await buy(client, pos, card, "o-2", redeem=1_000)
    await refresh(client, shopper)
    page = (await client.get("/v1/me/transactions", params={"limit": 2}, headers=shopper["headers"])).json()
    assert [(i["kind"], i["order_id"]) for i in page["items"]] == [("accrual", "o-2"), ("redemption", "o-2")]
    accrual = page["items"][0]
    assert accrual["available_at"] == "2026-03-05T09:00:00Z"
    assert accrual["expires_at"] == "2026-09-04T09:00:00Z"
    rest = await client.get(
        "/v1/me/transactions", params={"limit": 2, "cursor": page["next_cursor"]}, headers=shopper["headers"]
    )
    assert [(i["kind"], i["order_id"]) for i in rest.json()["items"]] == [("accrual", "o-1")]
    assert rest.json()["next_cursor"] is None
    bad = await client.get("/v1/me/transactions", params={"cursor": "zzz"}, headers=shopper["headers"])
    assert bad.status_code == 422


async def test_history_is_only_ever_ones_own(client: Client, pool: Pool, pos: dict[str, str]) -> None:
    anna = await sign_in(client, pool, PHONE)
    card = (await client.get("/v1/me", headers=anna["headers"])).json()["card"]["number"]
    await buy(client, pos, card, "o-1")
    other = await sign_in(client, pool, "+375297654321")
    assert (await client.get("/v1/me/transactions", headers=other["headers"])).json()["items"] == []


async def test_the_in_app_qr_works_at_the_till_for_a_minute(
    client: Client, shopper: dict[str, Any], pos: dict[str, str], clock: FakeClock
) -> None:
    card = (await client.get("/v1/me", headers=shopper["headers"])).json()["card"]["number"]
    issued = await client.get("/v1/me/card/qr-token", headers=shopper["headers"])
    assert issued.status_code == 200
    assert issued.headers["cache-control"] == "no-store"
    body = issued.json()
    assert body["expires_in"] == 60
    token = body["token"]
    assert token.startswith("KQ1.")
    assert set(token) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.")  # QR alphanumeric mode
    found = await client.post("/v1/pos/identify", json={"code": token}, headers=pos)
    assert found.status_code == 200
    assert found.json()["card"]["number"] == card
    quote = await client.post("/v1/pos/orders/calculate", json={"card": token, "lines": LINES}, headers=pos)
    assert quote.status_code == 200
    clock.advance(timedelta(seconds=59))
    committed = await buy(client, pos, token, "o-qr")
    assert committed["card"] == card
    clock.advance(timedelta(seconds=1))
    expired = await client.post("/v1/pos/identify", json={"code": token}, headers=pos)
    assert expired.status_code == 422
    assert problem(expired)["code"] == "qr-token-expired"
    assert problem(expired)["errors"][0]["field"] == "code"


async def test_forged_app_qr_codes_are_refused(client: Client, shopper: dict[str, Any], pos: dict[str, str]) -> None:
    token = (await client.get("/v1/me/card/qr-token", headers=shopper["headers"])).json()["token"]
    prefix, card, expires, mac = token.split(".")
    other_card = card[:11] + str((int(card[11]) + 1) % 10) + card[12]
    forgeries = [
        f"{prefix}.{other_card}.{expires}.{mac}",  # another card
        f"{prefix}.{card}.{int(expires) + 3600}.{mac}",  # a longer life
        f"{prefix}.{card}.{expires}.{'A' * 26}",  # a made-up signature
        f"{prefix}.{card}.{expires}",  # no signature
    ]
    for forged in forgeries:
        response = await client.post("/v1/pos/identify", json={"code": forged}, headers=pos)
        assert response.status_code == 422, forged
        assert problem(response)["code"] == "qr-token-invalid"
        order = await client.post(
            "/v1/pos/orders",
            json={"order_id": "x", "card": forged, "lines": LINES},
            headers=pos | {"Idempotency-Key": "k"},
        )
        assert order.status_code == 422


async def test_the_card_barcode_in_every_format(client: Client, shopper: dict[str, Any]) -> None:
    card = (await client.get("/v1/me", headers=shopper["headers"])).json()["card"]["number"]
    expected = {"qr": "QRCode", "code128": "Code128", "ean13": "EAN13", "pdf417": "PDF417"}
    for symbology, name in expected.items():
        png = await client.get("/v1/me/card/barcode", params={"format": symbology}, headers=shopper["headers"])
        assert png.status_code == 200, png.text
        assert png.headers["content-type"] == "image/png"
        assert png.headers["cache-control"].startswith("private")
        decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
        assert [(d.text, d.format.name) for d in decoded] == [(card, name)]
        svg = await client.get(
            "/v1/me/card/barcode", params={"format": symbology, "type": "svg"}, headers=shopper["headers"]
        )
        assert svg.headers["content-type"].startswith("image/svg+xml")
        assert svg.content.lstrip().startswith(b"<")
        again = await client.get(
            "/v1/me/card/barcode",
            params={"format": symbology},
            headers=shopper["headers"] | {"If-None-Match": png.headers["etag"]},
        )
        assert again.status_code == 304
        assert again.content == b""
    bad = await client.get("/v1/me/card/barcode", params={"format": "aztec"}, headers=shopper["headers"])
    assert bad.status_code == 422
    assert (await client.get("/v1/me/card/barcode")).status_code == 401


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [
        ("{tag}", 304),
        ("W/{tag}", 304),  # weak comparison: a proxy that recompressed marks the tag weak
        ("*", 304),
        ('"other", W/{tag}', 304),  # a cache holding several variants lists their tags
        ('"a",,  {tag} ,', 304),  # empty list members are allowed
        ('"other", W/"another"', 200),
        ("{bare}", 200),  # not an entity tag (no quotes): malformed, ignored
        ("{tag} junk", 200),
    ],
)
async def test_the_barcode_revalidates_as_rfc_9110_says(
    client: Client, shopper: dict[str, Any], if_none_match: str, status: int
) -> None:
    first = await client.get("/v1/me/card/barcode", headers=shopper["headers"])
    tag = first.headers["etag"]
    value = if_none_match.format(tag=tag, bare=tag.strip('"'))
    again = await client.get("/v1/me/card/barcode", headers=shopper["headers"] | {"If-None-Match": value})
    assert again.status_code == status, value
    assert again.headers["etag"] == tag
    assert (again.content == b"") is (status == 304)


async def test_if_none_match_split_over_field_lines(client: Client, shopper: dict[str, Any]) -> None:
    tag = (await client.get("/v1/me/card/barcode", headers=shopper["headers"])).headers["etag"]
    headers = [*shopper["headers"].items(), ("If-None-Match", '"other"'), ("If-None-Match", f"W/{tag}")]
    assert (await client.get("/v1/me/card/barcode", headers=headers)).status_code == 304


async def test_preferences(client: Client, shopper: dict[str, Any]) -> None:
    headers = shopper["headers"]
    defaults = (await client.get("/v1/me/preferences", headers=headers)).json()
    assert defaults == {
        "channels": ["app", "viber", "sms"],
        "marketing": False,
        "quiet_hours": {"start": "21:00", "end": "09:00"},
    }
    chosen = {"channels": ["sms"], "marketing": True, "quiet_hours": {"start": "22:30", "end": "08:00"}}
    assert (await client.put("/v1/me/preferences", json=chosen, headers=headers)).json() == chosen
    assert (await client.get("/v1/me/preferences", headers=headers)).json() == chosen
    for bad in (
        chosen | {"channels": []},
        chosen | {"channels": ["sms", "sms"]},
        chosen | {"channels": ["email"]},
        chosen | {"quiet_hours": {"start": "25:00", "end": "08:00"}},
        {"channels": ["sms"]},
    ):
        assert (await client.put("/v1/me/preferences", json=bad, headers=headers)).status_code == 422, bad
    assert (await client.get("/v1/me/preferences", headers=headers)).json() == chosen


async def test_devices(client: Client, pool: Pool, shopper: dict[str, Any], conn: Connection) -> None:
    headers = shopper["headers"]
    ios = {"platform": "ios", "token": "ab" * 32}
    first = await client.post("/v1/me/devices", json=ios, headers=headers)
    assert first.status_code == 201, first.text
    assert first.json()["token"] == ios["token"]
    assert (await client.post("/v1/me/devices", json=ios, headers=headers)).status_code == 200
    android = {"platform": "android", "token": "fcm:" + "x" * 140}
    assert (await client.post("/v1/me/devices", json=android, headers=headers)).status_code == 201
    assert await conn.fetchval("SELECT count(*) FROM devices") == 2
    for bad in ({"platform": "ios", "token": "not hex"}, {"platform": "web", "token": "ab" * 32}, {"platform": "ios"}):
        assert (await client.post("/v1/me/devices", json=bad, headers=headers)).status_code == 422, bad
    # The phone changes hands: the token moves to whoever registers it now.
    other = await sign_in(client, pool, "+375297654321")
    assert (await client.post("/v1/me/devices", json=ios, headers=other["headers"])).status_code == 201
    assert (await client.delete(f"/v1/me/devices/{ios['token']}", headers=headers)).status_code == 404
    assert (await client.delete(f"/v1/me/devices/{ios['token']}", headers=other["headers"])).status_code == 204
    assert await conn.fetchval("SELECT count(*) FROM devices") == 1


async def test_a_shopper_keeps_at_most_ten_devices(
    client: Client, shopper: dict[str, Any], conn: Connection, clock: FakeClock
) -> None:
    for n in range(12):
        clock.advance(timedelta(minutes=1))
        token = f"{n:02x}" * 32
        assert (
            await client.post("/v1/me/devices", json={"platform": "ios", "token": token}, headers=shopper["headers"])
        ).status_code == 201
    kept = {r["token"] for r in await conn.fetch("SELECT token FROM devices")}
    assert len(kept) == 10
    assert "00" * 32 not in kept
    assert "0b" * 32 in kept


async def test_closing_the_account_erases_the_person_and_keeps_the_books(
    client: Client, pool: Pool, shopper: dict[str, Any], pos: dict[str, str], conn: Connection, clock: FakeClock
) -> None:
    headers = shopper["headers"]
    await client.patch(
        "/v1/me", json={"name": "Анна", "email": "anna@example.com", "birthday": "1990-05-17"}, headers=headers
    )
    await client.post("/v1/me/devices", json={"platform": "ios", "token": "ab" * 32}, headers=headers)
    card = (await client.get("/v1/me", headers=headers)).json()["card"]["number"]
    await buy(client, pos, card, "o-1")
    clock.advance(timedelta(days=2))
    await buy(client, pos, card, "o-2", redeem=1_000)
    headers = (await refresh(client, shopper))["headers"]
    customer_id = (await client.get("/v1/me", headers=headers)).json()["profile"]["id"]

    closed = await client.delete("/v1/me", headers=headers)
    assert closed.status_code == 204
    assert (await client.get("/v1/me", headers=headers)).status_code == 401  # every session ended
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": shopper["refresh_token"]})).status_code == 401

    person = await conn.fetchrow("SELECT phone, name, email, birthday, language, closed_at FROM customers")
    assert person is not None
    assert dict(person) | {"closed_at": None} == dict.fromkeys(
        ("phone", "name", "email", "birthday", "language", "closed_at")
    )
    assert person["closed_at"] is not None
    assert await conn.fetchval("SELECT count(*) FROM devices") == 0
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE recipient = $1", PHONE) == 0
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE status IN ('queued', 'sending')") == 0
    # The books: both orders stay; the points are written off; the ledger still balances.
    assert await conn.fetchval("SELECT count(*) FROM orders") == 2
    assert await conn.fetchval("SELECT sum(remaining) FROM lots") == 0
    entries = await conn.fetchval("SELECT sum(points) FROM ledger_entries WHERE customer_id = $1", customer_id)
    debt = await conn.fetchval("SELECT debt FROM accounts WHERE customer_id = $1", customer_id)
    assert entries == 0 - debt == 0
    assert await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE kind = 'adjustment'") == 1
    # The till is told the card is closed.
    scanned = await client.post("/v1/pos/identify", json={"code": card}, headers=pos)
    assert scanned.status_code == 409
    assert problem(scanned)["code"] == "card-closed"
    # The phone is free: it joins again as a new customer with a new card.
    again = await sign_in(client, pool, PHONE)
    assert again["card_created"] is True
    new_card = (await client.get("/v1/me", headers=again["headers"])).json()["card"]["number"]
    assert new_card != card
    assert await conn.fetchval("SELECT count(*) FROM customers") == 2


async def test_closing_an_account_with_debt_forgives_it(
    client: Client, shopper: dict[str, Any], pos: dict[str, str], conn: Connection, clock: FakeClock
) -> None:
    card = (await client.get("/v1/me", headers=shopper["headers"])).json()["card"]["number"]
    await buy(client, pos, card, "o-1")
    clock.advance(timedelta(days=2))
    small = [{"sku": "bread", "qty": 1, "unit_price": 3_000}]
    await buy(client, pos, card, "o-2", redeem=2_100, lines=small)  # spends most of what o-1 earned
    refund = await client.post(
        "/v1/pos/orders/o-1/refunds",
        json={"refund_id": "r-1", "lines": [{"sku": "milk", "qty": 2}]},
        headers=pos | {"Idempotency-Key": "r-1"},
    )
    assert refund.status_code == 201
    assert await conn.fetchval("SELECT debt FROM accounts") > 0
    assert (await client.delete("/v1/me", headers=(await refresh(client, shopper))["headers"])).status_code == 204
    assert await conn.fetchval("SELECT debt FROM accounts") == 0
    assert await conn.fetchval("SELECT sum(points) FROM ledger_entries") == await conn.fetchval(
        "SELECT sum(remaining) FROM lots"
    )


async def test_app_endpoints_need_a_shopper_token(client: Client, pos: dict[str, str]) -> None:
    for method, path in (
        ("GET", "/v1/me"),
        ("PATCH", "/v1/me"),
        ("DELETE", "/v1/me"),
        ("GET", "/v1/me/transactions"),
        ("GET", "/v1/me/card/qr-token"),
        ("GET", "/v1/me/preferences"),
        ("POST", "/v1/me/devices"),
    ):
        for headers in ({}, {"Authorization": "Bearer nope"}):
            response = await client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)
            problem(response)
        # A till's key is a valid credential, just not one that covers the app's endpoints.
        response = await client.request(method, path, headers=pos, json={})
        assert response.status_code == 403, (method, path)
        problem(response)
