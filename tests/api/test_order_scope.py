"""Order ids belong to their store: two stores' orders with one id are two orders, and a refund reaches
only the order its till (or the request, by name) means."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.db import Connection, Pool
from kartka.keys import Scope, create_key
from tests.api.test_orders import Till, item
from tests.helpers import Keys

Client = AsyncTestClient[Litestar]


async def _tills(client: Client, keys: Keys) -> tuple[Till, Till]:
    return (
        Till(client, await keys.headers(Scope.POS, store="s1", terminal="t1")),
        Till(client, await keys.headers(Scope.POS, store="s2", terminal="t1")),
    )


async def test_two_stores_may_use_one_order_id_and_one_idempotency_key(
    client: Client, keys: Keys, conn: Connection
) -> None:
    s1, s2 = await _tills(client, keys)
    anna = (await s1.register("+375291111111"))["card"]["number"]
    boris = (await s2.register("+375292222222"))["card"]["number"]
    first = await s1.order(anna, [item("x", 1, 10_000)], order_id="1001", key="k-1")
    second = await s2.order(boris, [item("y", 1, 20_000)], order_id="1001", key="k-1")
    assert (first["accrued_points"], second["accrued_points"]) == (500, 1_000)
    again = await s2.order(boris, [item("y", 1, 20_000)], order_id="1001", key="k-1")
    assert again == second  # s2's retry replays s2's answer, not s1's
    assert await conn.fetchval("SELECT count(*) FROM orders WHERE order_id = '1001'") == 2


async def test_a_refund_reaches_its_own_stores_order_and_another_only_by_name(
    client: Client, keys: Keys, conn: Connection
) -> None:
    s1, s2 = await _tills(client, keys)
    anna = (await s1.register("+375291111111"))["card"]["number"]
    boris = (await s2.register("+375292222222"))["card"]["number"]
    await s1.order(anna, [item("x", 2, 10_000)], order_id="1001")
    await s2.order(boris, [item("x", 2, 10_000)], order_id="1001")
    refund = await s2.refund("1001", [{"sku": "x", "qty": 1}], refund_id="r-1")
    assert refund["points_taken_back"] == 500
    assert (await s1.identify(anna))["balance"]["pending"] == 1_000  # s1's shopper keeps every point
    assert (await s2.identify(boris))["balance"]["pending"] == 500
    await s2.refund("404", [{"sku": "x", "qty": 1}], expect=404)
    # A return of s1's order in s2 names the store; s1's refund ids are its own too.
    across = await s2.refund("1001", [{"sku": "x", "qty": 1}], refund_id="r-2", order={"order_store": "s1"})
    assert across["points_taken_back"] == 500
    assert (await s1.identify(anna))["balance"]["pending"] == 500
    own = await s1.refund("1001", [{"sku": "x", "qty": 1}], refund_id="r-1")
    assert own["points_taken_back"] == 500
    rows = await conn.fetch(
        "SELECT r.refund_id, r.store, o.store AS sold_in FROM refunds r JOIN orders o ON o.id = r.order_pk "
        "ORDER BY r.id"
    )
    assert [tuple(r) for r in rows] == [("r-1", "s2", "s2"), ("r-2", "s2", "s1"), ("r-1", "s1", "s1")]
    # An online order of s1's shop key is named with its store; there is none with this id.
    missing = await s2.refund(
        "1001", [{"sku": "x", "qty": 1}], order={"order_channel": "online", "order_store": "s1"}, expect=404
    )
    assert missing["code"] == "order-not-found"


async def test_a_store_bound_shop_key_refunds_its_own_online_orders_and_a_till_by_name(
    client: Client, keys: Keys, pool: Pool
) -> None:
    async with pool.acquire() as conn:
        bound, _ = await create_key(conn, scope=Scope.INTEGRATION, store="s1")
        other, _ = await create_key(conn, scope=Scope.INTEGRATION, store="s2")
    shop = {"Authorization": f"Bearer {bound}"}
    s1, _ = await _tills(client, keys)
    card = (await s1.register("+375291111111"))["card"]["number"]
    body = {"order_id": "w1", "card": card, "lines": [item("x", 2, 10_000)]}
    sold = await client.post("/v1/integrations/orders", json=body, headers=shop | {"Idempotency-Key": "w1"})
    assert sold.status_code == 201, sold.text
    returned = await client.post(
        "/v1/integrations/orders/w1/refunds",
        json={"refund_id": "wr1", "lines": [{"sku": "x", "qty": 1}]},
        headers=shop | {"Idempotency-Key": "wr1"},
    )
    assert returned.status_code == 201, returned.text
    elsewhere = await client.post(
        "/v1/integrations/orders/w1/refunds",
        json={"refund_id": "wr2", "lines": [{"sku": "x", "qty": 1}], "order_store": "s1"},
        headers={"Authorization": f"Bearer {other}", "Idempotency-Key": "wr2"},
    )
    assert elsewhere.status_code == 403, elsewhere.text
    at_till = await s1.refund(
        "w1", [{"sku": "x", "qty": 1}], refund_id="r-w1", order={"order_channel": "online", "order_store": "s1"}
    )
    assert at_till["points_taken_back"] == 500
