"""The till: registration, no-name cards, attaching, identification."""

from __future__ import annotations

import asyncio

from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.db import Connection
from tests.helpers import problem
from wallet.cards import ean13_check_digit, is_valid_card_number

Client = AsyncTestClient[Litestar]
PHONE = "+375291234567"


async def test_register_creates_customer_and_card(client: Client, pos: dict[str, str], conn: Connection) -> None:
    response = await client.post("/v1/pos/customers", json={"phone": PHONE, "name": "Анна"}, headers=pos)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created"] is True
    assert body["customer"]["phone"] == PHONE
    assert body["customer"]["name"] == "Анна"
    assert set(body["customer"]) == {"id", "phone", "name"}
    assert body["card"]["status"] == "active"
    assert is_valid_card_number(body["card"]["number"])
    row = await conn.fetchrow("SELECT source, store, terminal, outcome, api_key_id FROM registrations")
    assert row is not None
    assert dict(row) | {"api_key_id": None} == {
        "source": "pos",
        "store": "store-1",
        "terminal": "till-1",
        "outcome": "created",
        "api_key_id": None,
    }
    assert row["api_key_id"] is not None


async def test_register_is_idempotent_across_formats_and_paths(
    client: Client, pos: dict[str, str], integration: dict[str, str], conn: Connection
) -> None:
    first = await client.post("/v1/pos/customers", json={"phone": "8 029 123-45-67"}, headers=pos)
    again = await client.post("/v1/pos/customers", json={"phone": "+375 (29) 123 45 67", "name": "Ann"}, headers=pos)
    online = await client.post(
        "/v1/integrations/customers",
        json={"phone": "375291234567", "source": "website", "email": "ann@example.com"},
        headers=integration,
    )
    assert first.status_code == 201
    assert again.status_code == 200
    assert online.status_code == 200
    assert again.json()["created"] is False
    assert online.json()["created"] is False
    assert first.json()["card"] == again.json()["card"] == online.json()["card"]
    assert first.json()["customer"]["id"] == online.json()["customer"]["id"]
    assert online.json()["customer"]["name"] == "Ann"  # a blank was filled in
    assert await conn.fetchval("SELECT count(*) FROM customers") == 1
    assert await conn.fetchval("SELECT count(*) FROM cards") == 1
    sources = await conn.fetch("SELECT source, outcome FROM registrations ORDER BY id")
    assert [(r["source"], r["outcome"]) for r in sources] == [
        ("pos", "created"),
        ("pos", "existing"),
        ("website", "existing"),
    ]
    assert await conn.fetchval("SELECT email FROM customers") == "ann@example.com"


async def test_known_name_is_never_overwritten(client: Client, pos: dict[str, str]) -> None:
    await client.post("/v1/pos/customers", json={"phone": PHONE, "name": "Анна"}, headers=pos)
    again = await client.post("/v1/pos/customers", json={"phone": PHONE, "name": "Someone else"}, headers=pos)
    assert again.json()["customer"]["name"] == "Анна"


async def test_twenty_concurrent_registrations_make_one_customer_and_one_card(
    client: Client, pos: dict[str, str], conn: Connection
) -> None:
    responses = await asyncio.gather(
        *(client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos) for _ in range(20))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201]
    assert len({r.json()["card"]["number"] for r in responses}) == 1
    assert len({r.json()["customer"]["id"] for r in responses}) == 1
    assert sum(r.json()["created"] for r in responses) == 1
    assert await conn.fetchval("SELECT count(*) FROM customers") == 1
    assert await conn.fetchval("SELECT count(*) FROM cards") == 1
    assert await conn.fetchval("SELECT count(*) FROM registrations") == 20


async def test_invalid_phone_is_422_naming_the_field(client: Client, pos: dict[str, str], conn: Connection) -> None:
    for phone in ("123", "not a phone", "+999123456", "+3752912345678"):
        response = await client.post("/v1/pos/customers", json={"phone": phone}, headers=pos)
        assert response.status_code == 422, phone
        body = problem(response)
        assert body["errors"][0]["field"] == "phone"
        assert phone in body["detail"]
    assert await conn.fetchval("SELECT count(*) FROM customers") == 0


async def test_anonymous_card_then_attach_to_new_phone(client: Client, pos: dict[str, str], conn: Connection) -> None:
    issued = await client.post("/v1/pos/cards/anonymous", headers=pos)
    assert issued.status_code == 201
    card = issued.json()["card"]["number"]
    assert issued.json()["customer"]["phone"] is None
    scanned = await client.post("/v1/pos/identify", json={"code": card}, headers=pos)
    assert scanned.status_code == 200
    assert scanned.json()["customer"]["phone"] is None

    attached = await client.post(f"/v1/pos/cards/{card}/attach", json={"phone": PHONE, "name": "Ян"}, headers=pos)
    assert attached.status_code == 200, attached.text
    body = attached.json()
    assert body["outcome"] == "attached"
    assert body["card"] == {"number": card, "status": "active"}
    assert body["customer"]["phone"] == PHONE
    assert body["customer"]["id"] == issued.json()["customer"]["id"]
    # The phone now finds that card on every path.
    registered = await client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos)
    assert registered.status_code == 200
    assert registered.json()["card"]["number"] == card
    # Attaching again with the same phone is harmless; with another phone it is refused.
    again = await client.post(f"/v1/pos/cards/{card}/attach", json={"phone": PHONE}, headers=pos)
    assert again.status_code == 200
    other = await client.post(f"/v1/pos/cards/{card}/attach", json={"phone": "+375291111111"}, headers=pos)
    assert other.status_code == 409
    assert problem(other)["code"] == "card-owned-by-another-customer"
    assert await conn.fetchval("SELECT count(*) FROM customers") == 1


async def test_attach_to_phone_that_has_a_card_merges_without_losing_anything(
    client: Client, pos: dict[str, str], conn: Connection
) -> None:
    existing = (await client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos)).json()
    anonymous = (await client.post("/v1/pos/cards/anonymous", headers=pos)).json()
    number = anonymous["card"]["number"]

    merged = await client.post(f"/v1/pos/cards/{number}/attach", json={"phone": "80291234567"}, headers=pos)
    assert merged.status_code == 200, merged.text
    body = merged.json()
    assert body["outcome"] == "merged"
    assert body["customer"]["id"] == existing["customer"]["id"]
    assert body["card"] == existing["card"]
    assert body["replaced_card"] == {"number": number, "status": "replaced"}
    # Scanning the no-name card now finds the kept account and card.
    scanned = await client.post("/v1/pos/identify", json={"code": number}, headers=pos)
    assert scanned.status_code == 200
    assert scanned.json()["card"]["number"] == existing["card"]["number"]
    assert scanned.json()["customer"]["id"] == existing["customer"]["id"]
    merged_into = await conn.fetchval("SELECT merged_into FROM customers WHERE id = $1", anonymous["customer"]["id"])
    assert str(merged_into) == existing["customer"]["id"]


async def test_attach_unknown_or_malformed_card(client: Client, pos: dict[str, str]) -> None:
    body12 = "290000000000"
    unknown = body12 + str(ean13_check_digit(body12))
    missing = await client.post(f"/v1/pos/cards/{unknown}/attach", json={"phone": PHONE}, headers=pos)
    assert missing.status_code == 404
    assert problem(missing)["code"] == "card-not-found"
    bad_check = body12 + str((ean13_check_digit(body12) + 1) % 10)
    wrong = await client.post(f"/v1/pos/cards/{bad_check}/attach", json={"phone": PHONE}, headers=pos)
    assert wrong.status_code == 404
    assert "check digit" in problem(wrong)["detail"]


async def test_identify_by_card_number_phone_and_scan(client: Client, pos: dict[str, str]) -> None:
    registered = (await client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos)).json()
    number = registered["card"]["number"]
    spaced = f"{number[:1]} {number[1:7]} {number[7:]}"
    for code in (number, f"  {number}\n", spaced, PHONE, "8 029 123 45 67", "+375 29 123-45-67"):
        response = await client.post("/v1/pos/identify", json={"code": code}, headers=pos)
        assert response.status_code == 200, (code, response.text)
        body = response.json()
        assert body["customer"] == registered["customer"]
        assert body["card"] == registered["card"]
        assert body["tier"] == {
            "code": "standart",
            "name": "Standart",
            "rate": 500,
            "spend_365d": 0,
            "next": {"code": "gold", "name": "Gold", "threshold": 50000},
            "to_next": 50000,
        }
        assert body["balance"] == {
            "available": 0,
            "pending": 0,
            "next_available_at": None,
            "expiring_soon": {"points": 0, "at": None},
        }


async def test_identify_misses_are_404_with_a_hint(client: Client, pos: dict[str, str]) -> None:
    registered = (await client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos)).json()
    number = registered["card"]["number"]
    typo = number[:12] + str((int(number[12]) + 1) % 10)
    for code, hint in ((typo, "check digit"), ("+375291111111", "no card"), ("hello", "no card")):
        response = await client.post("/v1/pos/identify", json={"code": code}, headers=pos)
        assert response.status_code == 404, code
        assert hint in problem(response)["detail"]
    empty = await client.post("/v1/pos/identify", json={"code": ""}, headers=pos)
    assert empty.status_code == 422
    assert problem(empty)["errors"][0]["field"] == "code"


async def test_identify_blocked_card_is_409(client: Client, pos: dict[str, str], conn: Connection) -> None:
    registered = (await client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos)).json()
    number = registered["card"]["number"]
    await conn.execute("UPDATE cards SET status = 'blocked' WHERE number = $1", number)
    response = await client.post("/v1/pos/identify", json={"code": number}, headers=pos)
    assert response.status_code == 409
    assert problem(response)["code"] == "card-blocked"


async def test_attach_to_a_phone_whose_card_is_blocked_gives_it_the_no_name_card(
    client: Client, pos: dict[str, str], conn: Connection
) -> None:
    existing = (await client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos)).json()
    await conn.execute("UPDATE cards SET status = 'blocked' WHERE number = $1", existing["card"]["number"])
    number = (await client.post("/v1/pos/cards/anonymous", headers=pos)).json()["card"]["number"]
    merged = await client.post(f"/v1/pos/cards/{number}/attach", json={"phone": PHONE, "name": "Ян"}, headers=pos)
    assert merged.status_code == 200, merged.text
    body = merged.json()
    assert body["outcome"] == "merged"
    assert body["card"] == {"number": number, "status": "active"}
    assert body["customer"]["id"] == existing["customer"]["id"]
    assert body["customer"]["name"] == "Ян"  # a blank filled in on the kept customer
    found = await client.post("/v1/pos/identify", json={"code": PHONE}, headers=pos)
    assert found.status_code == 200
    assert found.json()["card"]["number"] == number


async def test_repeating_a_merging_attach_answers_the_same(client: Client, pos: dict[str, str]) -> None:
    await client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos)
    number = (await client.post("/v1/pos/cards/anonymous", headers=pos)).json()["card"]["number"]
    first = await client.post(f"/v1/pos/cards/{number}/attach", json={"phone": PHONE}, headers=pos)
    again = await client.post(f"/v1/pos/cards/{number}/attach", json={"phone": PHONE}, headers=pos)
    assert again.status_code == 200
    assert again.json() == first.json()
    other = await client.post(f"/v1/pos/cards/{number}/attach", json={"phone": "+375291111111"}, headers=pos)
    assert other.status_code == 409


async def test_merging_moves_the_points_of_the_no_name_card(
    client: Client, pos: dict[str, str], conn: Connection
) -> None:
    existing = (await client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos)).json()
    number = (await client.post("/v1/pos/cards/anonymous", headers=pos)).json()["card"]["number"]
    order = {"order_id": "anon-1", "card": number, "lines": [{"sku": "x", "qty": 1, "unit_price": 10_000}]}
    committed = await client.post("/v1/pos/orders", json=order, headers=pos | {"Idempotency-Key": "anon-1"})
    assert committed.status_code == 201
    await client.post(f"/v1/pos/cards/{number}/attach", json={"phone": PHONE}, headers=pos)
    balance = (await client.post("/v1/pos/identify", json={"code": PHONE}, headers=pos)).json()["balance"]
    assert balance["pending"] == 500
    owner = await conn.fetchval("SELECT customer_id FROM orders WHERE order_id = 'anon-1'")
    assert str(owner) == existing["customer"]["id"]
