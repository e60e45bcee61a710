"""The admin API's support tools that the console shares: finding a shopper, their file and history,
sending the card link again, attaching a no-name card."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.db import Pool
from kartka.keys import Scope
from kartka.staff import Role
from tests.api.test_staff import bearer, staff
from tests.helpers import Keys

Client = AsyncTestClient[Litestar]
PHONE = "+375291234567"


async def test_support_finds_a_shopper_and_reads_their_file(
    client: Client, pool: Pool, pos: dict[str, str], keys: Keys
) -> None:
    created = await client.post("/v1/pos/customers", json={"phone": PHONE, "name": "Alena Ivanova"}, headers=pos)
    customer_id, number = created.json()["customer"]["id"], created.json()["card"]["number"]
    await staff(pool, "olga", Role.SUPPORT)
    olga = await bearer(client, "olga")
    for query in ("+375 29 123-45-67", number, f"{number[:4]} {number[4:]}", "alena", "ALENA IV"):
        found = await client.get("/v1/admin/customers", params={"q": query}, headers=olga)
        assert found.status_code == 200, found.text
        assert [m["customer_id"] for m in found.json()] == [customer_id], query
    assert (await client.get("/v1/admin/customers", params={"q": "al%"}, headers=olga)).json() == []

    granted = await client.post(
        f"/v1/admin/customers/{customer_id}/grants",
        json={"points": 500, "expires_in_days": 3, "reason": "welcome"},
        headers=olga,
    )
    assert granted.status_code == 201, granted.text
    view = await client.get(f"/v1/admin/customers/{customer_id}", headers=olga)
    assert view.status_code == 200, view.text
    file = view.json()["file"]
    assert file["now"]["balance"]["available"] == 500
    assert [c["number"] for c in file["cards"]] == [number]
    assert view.json()["messages"][0]["template"] == "card_link"
    history = await client.get(f"/v1/admin/customers/{customer_id}/transactions", headers=olga)
    assert [(t["kind"], t["points"]) for t in history.json()["items"]] == [("grant", 500)]

    sent = await client.post(f"/v1/admin/customers/{customer_id}/card-link", headers=olga)
    assert sent.status_code == 202, sent.text
    again = await client.post(f"/v1/admin/customers/{customer_id}/card-link", headers=olga)  # a double click
    assert again.status_code == 202
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE template = 'card_link'") == 2

    await staff(pool, "masha", Role.MARKETER)
    masha = await bearer(client, "masha")
    assert (await client.get(f"/v1/admin/customers/{customer_id}", headers=masha)).status_code == 403


async def test_a_no_name_card_is_attached_and_merged_by_hand(
    client: Client, pool: Pool, pos: dict[str, str], keys: Keys
) -> None:
    known = await client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos)
    anonymous = await client.post("/v1/pos/cards/anonymous", headers=pos)
    assert anonymous.status_code == 201, anonymous.text
    number = anonymous.json()["card"]["number"]
    admin = await keys.headers(Scope.ADMIN)
    attached = await client.post(f"/v1/admin/cards/{number}/attach", json={"phone": PHONE}, headers=admin)
    assert attached.status_code == 200, attached.text
    assert attached.json()["outcome"] == "merged"
    assert attached.json()["customer"]["id"] == known.json()["customer"]["id"]
    actor = await pool.fetchval("SELECT actor FROM registrations WHERE outcome = 'merged'")
    assert actor.startswith("api_key:")
