"""The till flow over HTTP: calculate, commit, refund; balances, tiers, idempotency, concurrency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.clock import FakeClock
from kartka.db import Connection, Pool
from kartka.keys import Scope
from tests.helpers import NOTIFIER, Keys, problem

Client = AsyncTestClient[Litestar]
PHONE = "+375291234567"
DAY = timedelta(days=1)


class Till:
    """A till: registers shoppers and sends orders the way a POS integration would."""

    def __init__(self, client: Client, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    async def register(self, phone: str = PHONE) -> dict[str, Any]:
        response = await self.client.post("/v1/pos/customers", json={"phone": phone}, headers=self.headers)
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        return body

    async def order(
        self,
        card: str,
        lines: list[dict[str, Any]],
        *,
        redeem: int = 0,
        order_id: str | None = None,
        key: str | None = None,
        purchased_at: str | None = None,
        expect: int = 201,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"order_id": order_id or f"o-{uuid.uuid4().hex[:12]}", "card": card, "lines": lines}
        if redeem:
            body["redeem_points"] = redeem
        if purchased_at:
            body["purchased_at"] = purchased_at
        response = await self.client.post(
            "/v1/pos/orders", json=body, headers=self.headers | {"Idempotency-Key": key or uuid.uuid4().hex}
        )
        assert response.status_code == expect, response.text
        result: dict[str, Any] = response.json()
        return result

    async def identify(self, code: str) -> dict[str, Any]:
        response = await self.client.post("/v1/pos/identify", json={"code": code}, headers=self.headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def refund(
        self,
        order_id: str,
        lines: list[dict[str, Any]],
        *,
        expect: int = 201,
        refund_id: str | None = None,
        order: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        response = await self.client.post(
            f"/v1/pos/orders/{order_id}/refunds",
            json={"refund_id": refund_id or f"r-{uuid.uuid4().hex[:12]}", "lines": lines} | (order or {}),
            headers=self.headers | {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert response.status_code == expect, response.text
        result: dict[str, Any] = response.json()
        return result


def item(sku: str, qty: int, unit_price: int, **extra: Any) -> dict[str, Any]:
    return {"sku": sku, "qty": qty, "unit_price": unit_price} | extra


@pytest.fixture
async def till(client: Client, pos: dict[str, str]) -> Till:
    return Till(client, pos)


async def grant(client: Client, keys: Keys, customer_id: str, points: int, days: int = 30) -> dict[str, Any]:
    admin = await keys.headers(Scope.ADMIN)
    response = await client.post(
        f"/v1/admin/customers/{customer_id}/grants",
        json={"points": points, "expires_in_days": days, "reason": "welcome bonus"},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def counts(conn: Connection) -> dict[str, int]:
    return {
        table: await conn.fetchval(f"SELECT count(*) FROM {table}")
        for table in ("orders", "order_lines", "ledger_entries", "lots", "refunds")
    }


async def test_calculate_prices_the_cart_and_writes_nothing(
    till: Till, client: Client, keys: Keys, conn: Connection
) -> None:
    shopper = await till.register()
    await grant(client, keys, shopper["customer"]["id"], 5_000)
    before = await counts(conn)
    response = await client.post(
        "/v1/pos/orders/calculate",
        json={
            "card": shopper["card"]["number"],
            "lines": [
                item("latte", 1, 500, category="coffee", name="Латте"),
                item("croissant", 1, 300, category="pastry"),
                item("tv", 1, 10_000, on_sale=True),
            ],
            "redeem_points": 99_999,
        },
        headers=till.headers,
    )
    assert response.status_code == 200, response.text
    quote = response.json()
    assert quote["subtotal"] == 10_800
    assert quote["discount"] == 90
    assert quote["max_redeem_points"] == 497  # 70% of the eligible 7.10, below the 50.00 available
    assert quote["redeem_points"] == 497  # the request was cut to the maximum
    assert quote["accrue_points"] == (710 - 497) * 500 // 10_000
    assert quote["to_pay"] == 10_800 - 90 - 497
    assert quote["engine"] == {"name": "embedded", "degraded": False}
    assert [line["promotion"] for line in quote["lines"]] == ["pastry-with-coffee", "pastry-with-coffee", None]
    assert [line["discount"] for line in quote["lines"]] == [56, 34, 0]
    assert sum(line["redeem_points"] for line in quote["lines"]) == 497
    assert quote["lines"][2]["redeem_points"] == 0  # nothing on the item on sale
    assert any("Будет начислено" in text for text in quote["receipt_lines"])
    assert await counts(conn) == before


async def test_commit_accrues_pending_points_that_become_available_after_24_hours(till: Till, clock: FakeClock) -> None:
    shopper = await till.register()
    card = shopper["card"]["number"]
    result = await till.order(card, [item("cheese", 2, 1_000), item("bread", 1, 250)])
    assert result["accrued_points"] == 112  # 5% of 22.50, rounded down
    assert result["redeemed_points"] == 0
    assert result["available_at"].startswith("2026-03-03T09:00")
    assert result["balance"]["available"] == 0
    assert result["balance"]["pending"] == 112
    assert result["tier"]["spend_365d"] == 2_250
    assert any("Начислено баллов: 1,12" in line for line in result["receipt_lines"])

    clock.advance(DAY - timedelta(seconds=1))
    assert (await till.identify(card))["balance"]["available"] == 0
    clock.advance(timedelta(seconds=1))
    balance = (await till.identify(card))["balance"]
    assert balance == {
        "available": 112,
        "pending": 0,
        "next_available_at": None,
        "expiring_soon": {"points": 0, "at": None},
    }


async def test_retries_are_idempotent_and_conflicts_are_409(till: Till, client: Client, conn: Connection) -> None:
    shopper = await till.register()
    body = {"order_id": "till7-0001", "card": shopper["card"]["number"], "lines": [item("milk", 1, 500)]}
    headers = till.headers | {"Idempotency-Key": "k-1"}
    first = await client.post("/v1/pos/orders", json=body, headers=headers)
    before = await counts(conn)
    again = await client.post("/v1/pos/orders", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await counts(conn) == before

    other_body = await client.post("/v1/pos/orders", json=body | {"lines": [item("milk", 2, 500)]}, headers=headers)
    assert other_body.status_code == 409
    assert problem(other_body)["code"] == "idempotency-key-reused"
    other_key = await client.post("/v1/pos/orders", json=body, headers=till.headers | {"Idempotency-Key": "k-2"})
    assert other_key.status_code == 409
    assert problem(other_key)["code"] == "order-conflict"
    no_key = await client.post("/v1/pos/orders", json=body | {"order_id": "till7-0002"}, headers=till.headers)
    assert no_key.status_code == 422
    assert "Idempotency-Key" in problem(no_key)["detail"]
    assert await counts(conn) == before
    # Both reused, each by another order: the key speaks first, whichever row the table holds first.
    second = body | {"order_id": "till7-0003"}
    assert (
        await client.post("/v1/pos/orders", json=second, headers=till.headers | {"Idempotency-Key": "k-3"})
    ).status_code == 201
    both = await client.post("/v1/pos/orders", json=second, headers=headers)
    assert both.status_code == 409
    assert problem(both)["code"] == "idempotency-key-reused"


async def test_redeeming_more_than_available_is_409_and_writes_nothing(
    till: Till, client: Client, keys: Keys, conn: Connection
) -> None:
    shopper = await till.register()
    await grant(client, keys, shopper["customer"]["id"], 1_000)
    before = await counts(conn)
    too_much = await till.order(shopper["card"]["number"], [item("wine", 1, 10_000)], redeem=1_001, expect=409)
    assert too_much["code"] == "insufficient-points"
    over_cap = await till.order(shopper["card"]["number"], [item("gum", 1, 1_000)], redeem=800, expect=409)
    assert "at most 7 points" in over_cap["detail"]  # the one number format (was "7.00", a float's)
    assert await counts(conn) == before
    ok = await till.order(shopper["card"]["number"], [item("wine", 1, 10_000)], redeem=1_000)
    assert ok["redeemed_points"] == 1_000
    assert ok["balance"]["available"] == 0


async def test_spending_takes_the_soonest_expiring_points_first(
    till: Till, client: Client, keys: Keys, clock: FakeClock, conn: Connection
) -> None:
    shopper = await till.register()
    card, customer = shopper["card"]["number"], shopper["customer"]["id"]
    await till.order(card, [item("cheese", 1, 20_000)])  # 10.00 points, expire in six months
    clock.advance(2 * DAY)
    await grant(client, keys, customer, 300, days=10)  # 3.00 points expiring in ten days
    result = await till.order(card, [item("bread", 1, 1_000)], redeem=500)
    assert result["redeemed_points"] == 500
    lots = await conn.fetch("SELECT kind, points, remaining FROM lots ORDER BY expires_at")
    assert [(r["kind"], r["remaining"]) for r in lots] == [("grant", 0), ("accrual", 800), ("accrual", 25)]


async def test_offline_purchase_time_drives_pending_and_expiry(till: Till, clock: FakeClock) -> None:
    shopper = await till.register()
    card = shopper["card"]["number"]
    old = await till.order(card, [item("cheese", 1, 10_000)], purchased_at="2026-03-01T08:00:00+03:00")
    assert old["available_at"].startswith("2026-03-02T05:00")  # already available now
    assert old["expires_at"].startswith("2026-09-01T05:00")
    assert old["balance"]["available"] == 500
    future = await till.order(card, [item("x", 1, 100)], purchased_at="2026-03-02T10:00:00+00:00", expect=422)
    assert future["errors"][0]["field"] == "purchased_at"
    naive = await till.order(card, [item("x", 1, 100)], purchased_at="2026-03-01T08:00:00", expect=422)
    assert naive["errors"][0]["field"] == "purchased_at"


async def test_refund_is_proportional_and_never_exceeds_the_sale(
    till: Till, client: Client, keys: Keys, clock: FakeClock
) -> None:
    shopper = await till.register()
    card = shopper["card"]["number"]
    await grant(client, keys, shopper["customer"]["id"], 3_000)
    order = await till.order(card, [item("shirt", 3, 3_000), item("socks", 1, 1_000)], redeem=3_000)
    # Paid 100.00 - 30.00 points = 70.00 money; earned 5% of it = 3.50 points.
    assert (order["redeemed_points"], order["accrued_points"]) == (3_000, 350)
    first = await till.refund(order["order_id"], [{"sku": "shirt", "qty": 1}])
    second = await till.refund(order["order_id"], [{"sku": "shirt", "qty": 2}, {"sku": "socks", "qty": 1}])
    assert first["points_returned"] + second["points_returned"] == 3_000
    assert first["points_taken_back"] + second["points_taken_back"] == 350
    assert first["amount"] + second["amount"] == 7_000
    assert first["points_returned"] == 900  # a third of the shirts' 27.00 share of the points
    beyond = await till.refund(order["order_id"], [{"sku": "shirt", "qty": 1}], expect=409)
    assert beyond["code"] == "return-exceeds-sale"
    unknown = await till.refund(order["order_id"], [{"sku": "hat", "qty": 1}], expect=409)
    assert "hat" in unknown["detail"]
    missing = await till.refund("no-such-order", [{"sku": "shirt", "qty": 1}], expect=404)
    assert missing["code"] == "order-not-found"
    clock.advance(DAY)
    assert (await till.identify(card))["balance"]["available"] == 3_000  # back where it started


async def test_taking_back_spent_points_leaves_a_debt_that_accruals_repay(
    till: Till, clock: FakeClock, conn: Connection
) -> None:
    shopper = await till.register()
    card = shopper["card"]["number"]
    order = await till.order(card, [item("tv", 1, 40_000)])  # 20.00 points
    clock.advance(DAY)
    await till.order(card, [item("food", 1, 10_000)], redeem=2_000)  # spends them; earns 4.00, pending
    refund = await till.refund(order["order_id"], [{"sku": "tv", "qty": 1}])
    # 20.00 to take back: the tv's own points are spent, so the pending 4.00 goes first and 16.00 is owed.
    assert refund["points_taken_back"] == 2_000
    assert refund["balance"]["available"] == -1_600
    assert refund["balance"]["pending"] == 0
    assert await conn.fetchval("SELECT debt FROM accounts") == 1_600
    later = await till.order(card, [item("tv2", 1, 40_000)])  # earns 20.00: 16.00 repays the debt
    assert later["balance"] == {
        "available": 0,
        "pending": 400,
        "next_available_at": later["available_at"],
        "expiring_soon": {"points": 0, "at": None},
    }
    assert await conn.fetchval("SELECT debt FROM accounts") == 0
    clock.advance(DAY)
    assert (await till.identify(card))["balance"]["available"] == 400
    assert await conn.fetchval("SELECT sum(points) FROM ledger_entries") == 400


async def test_a_purchase_over_the_threshold_upgrades_from_the_next_purchase(till: Till, conn: Connection) -> None:
    shopper = await till.register()
    card = shopper["card"]["number"]
    first = await till.order(card, [item("sofa", 1, 60_000)])
    assert first["accrued_points"] == 3_000  # still Standart's 5% on the purchase that earned Gold
    assert first["tier_upgraded"] is True
    assert first["tier"]["code"] == "gold"
    assert first["tier"]["next"]["code"] == "platinum"
    assert first["tier"]["to_next"] == 90_000
    assert any("Gold" in line for line in first["receipt_lines"])
    second = await till.order(card, [item("lamp", 1, 10_000)])
    assert second["accrued_points"] == 1_000  # Gold's 10%
    assert second["tier_upgraded"] is False
    changes = await conn.fetch("SELECT from_code, to_code, direction FROM tier_changes")
    assert [tuple(r) for r in changes] == [("standart", "gold", "upgrade")]


async def test_twenty_parallel_redemptions_from_different_tills_never_overdraw(
    client: Client, keys: Keys, conn: Connection
) -> None:
    tills = [Till(client, await keys.headers(Scope.POS, terminal=f"till-{n}")) for n in range(20)]
    shopper = await tills[0].register()
    await grant(client, keys, shopper["customer"]["id"], 10_000)  # 100.00 points
    card = shopper["card"]["number"]
    results = await asyncio.gather(
        *(
            client.post(
                "/v1/pos/orders",
                json={"order_id": f"p-{n}", "card": card, "lines": [item("x", 1, 5_000)], "redeem_points": 1_500},
                headers=t.headers | {"Idempotency-Key": f"p-{n}"},
            )
            for n, t in enumerate(tills)
        )
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] * 6 + [409] * 14  # six of 15.00 fit in 100.00
    balance = (await tills[0].identify(card))["balance"]
    assert balance["available"] == 10_000 - 6 * 1_500
    assert await conn.fetchval("SELECT sum(points) FROM ledger_entries") == await conn.fetchval(
        "SELECT sum(remaining) FROM lots"
    )
    assert await conn.fetchval("SELECT count(*) FROM lots WHERE remaining < 0") == 0


async def test_expiry_is_right_at_read_time_and_the_job_writes_it_down(
    till: Till, clock: FakeClock, pool: Pool, conn: Connection
) -> None:
    from wallet.jobs import expire  # noqa: PLC0415

    shopper = await till.register()
    card = shopper["card"]["number"]
    order = await till.order(card, [item("cheese", 1, 10_000)])  # 5.00 points, expiring 2026-09-02
    clock.set(clock.now() + timedelta(days=180))
    soon = (await till.identify(card))["balance"]["expiring_soon"]
    assert soon["points"] == 500
    assert soon["at"] == order["expires_at"]
    clock.set(clock.now() + timedelta(days=5))
    assert (await till.identify(card))["balance"]["available"] == 0  # expired, though no job has run
    assert await expire(pool, NOTIFIER, clock.now()) == 1
    assert await expire(pool, NOTIFIER, clock.now()) == 0  # a second run finds nothing
    entries = await conn.fetch("SELECT kind, points FROM ledger_entries ORDER BY id")
    assert [tuple(e) for e in entries] == [("accrual", 500), ("expiry", -500)]


async def test_daily_job_lowers_tiers_whose_spend_fell(
    till: Till, clock: FakeClock, pool: Pool, conn: Connection
) -> None:
    from wallet.jobs import downgrade_daily  # noqa: PLC0415
    from wallet.program import DEFAULT_PROGRAM  # noqa: PLC0415

    shopper = await till.register()
    card = shopper["card"]["number"]
    await till.order(card, [item("sofa", 1, 160_000)])  # straight to Platinum
    assert (await till.identify(card))["tier"]["code"] == "platinum"
    clock.advance(timedelta(days=200))
    await till.order(card, [item("lamp", 1, 60_000)])
    assert await downgrade_daily(pool, DEFAULT_PROGRAM, NOTIFIER, clock.now()) == 0  # still 2200.00 in the window
    clock.advance(timedelta(days=200))  # the sofa left the window; 600.00 remains: Gold
    results = await asyncio.gather(
        *(downgrade_daily(pool, DEFAULT_PROGRAM, NOTIFIER, clock.now(), force=True) for _ in range(3))
    )
    assert sum(r or 0 for r in results) == 1  # three concurrent runs lower it once
    assert await downgrade_daily(pool, DEFAULT_PROGRAM, NOTIFIER, clock.now()) is None  # today's run is done
    view = (await till.identify(card))["tier"]
    assert (view["code"], view["spend_365d"]) == ("gold", 60_000)
    changes = await conn.fetch("SELECT from_code, to_code, direction FROM tier_changes ORDER BY id")
    assert [tuple(r) for r in changes] == [("standart", "platinum", "upgrade"), ("platinum", "gold", "downgrade")]


async def test_grants_need_an_admin_key_and_expire_on_their_own(
    till: Till, client: Client, keys: Keys, clock: FakeClock
) -> None:
    shopper = await till.register()
    customer = shopper["customer"]["id"]
    body = {"points": 1_000, "expires_in_days": 3, "reason": "birthday"}
    refused = await client.post(f"/v1/admin/customers/{customer}/grants", json=body, headers=till.headers)
    assert refused.status_code == 403
    granted = await grant(client, keys, customer, 1_000, days=3)
    assert granted["balance"]["available"] == 1_000
    assert granted["balance"]["expiring_soon"]["points"] == 1_000
    admin = await keys.headers(Scope.ADMIN)
    unknown = await client.post(f"/v1/admin/customers/{uuid.uuid4()}/grants", json=body, headers=admin)
    assert unknown.status_code == 404
    negative = await client.post(f"/v1/admin/customers/{customer}/grants", json=body | {"points": -5}, headers=admin)
    assert negative.status_code == 422
    clock.advance(timedelta(days=3))
    assert (await till.identify(shopper["card"]["number"]))["balance"]["available"] == 0


async def test_transactions_are_paginated_newest_first(
    till: Till, client: Client, keys: Keys, integration: dict[str, str]
) -> None:
    shopper = await till.register()
    card, customer = shopper["card"]["number"], shopper["customer"]["id"]
    await grant(client, keys, customer, 1_000)
    for n in range(4):
        await till.order(card, [item("x", 1, 10_000)], redeem=100 if n == 3 else 0, order_id=f"h-{n}")
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        url = f"/v1/integrations/customers/{customer}/transactions?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url, headers=integration)).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["kind"] for e in seen] == ["accrual", "redemption", "accrual", "accrual", "accrual", "grant"]
    assert [e["order_id"] for e in seen[:2]] == ["h-3", "h-3"]
    assert seen[0]["available_at"] is not None
    assert [e["id"] for e in seen] == sorted((e["id"] for e in seen), reverse=True)
    bad = await client.get(f"/v1/integrations/customers/{customer}/transactions?cursor=nonsense", headers=integration)
    assert bad.status_code == 422
    missing = await client.get(f"/v1/integrations/customers/{uuid.uuid4()}/transactions", headers=integration)
    assert missing.status_code == 404


async def test_online_orders_share_the_balance(till: Till, client: Client, integration: dict[str, str]) -> None:
    shopper = await till.register()
    response = await client.post(
        "/v1/integrations/orders",
        json={"order_id": "web-1", "card": PHONE, "lines": [item("box", 1, 10_000)]},
        headers=integration | {"Idempotency-Key": "web-1"},
    )
    assert response.status_code == 201, response.text
    assert (await till.identify(shopper["card"]["number"]))["balance"]["pending"] == 500


async def test_bad_carts_are_422(till: Till, client: Client) -> None:
    shopper = await till.register()
    card = shopper["card"]["number"]
    for lines, field in (
        ([], "lines"),
        ([item("x", 0, 100)], "lines[0].qty"),
        ([item("x", 1, -5)], "lines[0].unit_price"),
        ([{"sku": "x", "qty": 1.5, "unit_price": 100}], "lines[0].qty"),
        ([{"sku": "x", "qty": 1, "unit_price": 100, "color": "red"}], "lines[0].color"),
    ):
        response = await client.post(
            "/v1/pos/orders/calculate", json={"card": card, "lines": lines}, headers=till.headers
        )
        assert response.status_code == 422, (lines, response.text)
        assert problem(response)["errors"][0]["field"] == field
    negative = await client.post(
        "/v1/pos/orders/calculate",
        json={"card": card, "lines": [item("x", 1, 1)], "redeem_points": -1},
        headers=till.headers,
    )
    assert negative.status_code == 422


async def test_expiry_jobs_running_at_once_write_each_lot_off_once(
    till: Till, client: Client, keys: Keys, clock: FakeClock, pool: Pool, conn: Connection
) -> None:
    from wallet.jobs import expire  # noqa: PLC0415

    for n in range(30):
        shopper = await till.register(f"+3752960000{n:02d}")
        await grant(client, keys, shopper["customer"]["id"], 100 + n, days=1)
    clock.advance(timedelta(days=2))
    done = await asyncio.gather(*(expire(pool, NOTIFIER, clock.now(), batch=7) for _ in range(4)))
    assert sum(done) == 30
    assert await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE kind = 'expiry'") == 30
    assert await conn.fetchval("SELECT sum(points) FROM ledger_entries") == 0


async def test_points_that_expired_unspent_are_not_taken_back_again(
    till: Till, clock: FakeClock, pool: Pool, conn: Connection
) -> None:
    from wallet.jobs import expire  # noqa: PLC0415

    shopper = await till.register()
    card = shopper["card"]["number"]
    unspent = await till.order(card, [item("sofa", 1, 40_000)])  # 20.00 points, never spent
    clock.advance(timedelta(days=200))
    await expire(pool, NOTIFIER, clock.now())
    refund = await till.refund(unspent["order_id"], [{"sku": "sofa", "qty": 1}])
    assert refund["points_taken_back"] == 0
    assert refund["balance"]["available"] == 0
    assert await conn.fetchval("SELECT debt FROM accounts") == 0

    partly = await till.order(card, [item("desk", 1, 40_000)])  # 20.00 more
    clock.advance(DAY)
    await till.order(card, [item("pen", 1, 1_000)], redeem=500)  # 5.00 of them spent
    clock.advance(timedelta(days=200))  # the other 15.00 expire unspent (not yet written off)
    refund = await till.refund(partly["order_id"], [{"sku": "desk", "qty": 1}])
    assert refund["points_taken_back"] == 500  # only what the shopper actually used
    assert refund["balance"]["available"] == -500


async def test_refunds_racing_for_one_refund_id_get_409_not_500(client: Client, keys: Keys) -> None:
    tills = [Till(client, await keys.headers(Scope.POS, terminal=f"t{n}")) for n in range(2)]
    orders = []
    for n, t in enumerate(tills):
        shopper = await t.register(f"+37529700000{n}")
        orders.append(await t.order(shopper["card"]["number"], [item("x", 1, 1_000)]))
    results = await asyncio.gather(
        *(
            client.post(
                f"/v1/pos/orders/{order['order_id']}/refunds",
                json={"refund_id": "same-0", "lines": [{"sku": "x", "qty": 1}]},
                headers=t.headers | {"Idempotency-Key": f"k-0-{n}"},
            )
            for n, (t, order) in enumerate(zip(tills, orders, strict=True))
        )
    )
    assert sorted(r.status_code for r in results) == [201, 409]


async def test_a_purchase_racing_a_merge_of_its_card_never_deadlocks(client: Client, pos: dict[str, str]) -> None:
    await client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos)
    for n in range(8):
        number = (await client.post("/v1/pos/cards/anonymous", headers=pos)).json()["card"]["number"]
        purchase, attach = await asyncio.gather(
            client.post(
                "/v1/pos/orders",
                json={"order_id": f"race-{n}", "card": number, "lines": [item("x", 1, 1_000)]},
                headers=pos | {"Idempotency-Key": f"race-{n}"},
            ),
            client.post(f"/v1/pos/cards/{number}/attach", json={"phone": PHONE}, headers=pos),
        )
        assert purchase.status_code in (201, 409), purchase.text
        assert attach.status_code == 200, attach.text
    balance = (await client.post("/v1/pos/identify", json={"code": PHONE}, headers=pos)).json()["balance"]
    assert balance["pending"] == 8 * 50  # every purchase's points ended up on the phone's account


async def test_online_keys_refund_only_online_orders(till: Till, client: Client, integration: dict[str, str]) -> None:
    shopper = await till.register()
    at_till = await till.order(shopper["card"]["number"], [item("x", 2, 1_000)])
    unknown = await client.post(
        f"/v1/integrations/orders/{at_till['order_id']}/refunds",
        json={"refund_id": "web-r1", "lines": [{"sku": "x", "qty": 1}]},
        headers=integration | {"Idempotency-Key": "web-r1"},
    )
    assert unknown.status_code == 404  # an online refund's order id means an online order
    refused = await client.post(
        f"/v1/integrations/orders/{at_till['order_id']}/refunds",
        json={"refund_id": "web-r1", "lines": [{"sku": "x", "qty": 1}], "order_channel": "pos"},
        headers=integration | {"Idempotency-Key": "web-r1"},
    )
    assert refused.status_code == 403
    online = await client.post(
        "/v1/integrations/orders",
        json={"order_id": "web-2", "card": PHONE, "lines": [item("y", 1, 1_000)]},
        headers=integration | {"Idempotency-Key": "web-2"},
    )
    assert online.status_code == 201
    await till.refund("web-2", [{"sku": "y", "qty": 1}], expect=404)  # not one of this store's orders
    returned_in_store = await till.refund(  # buy online, return in store: named as an online order
        "web-2", [{"sku": "y", "qty": 1}], order={"order_channel": "online"}
    )
    assert returned_in_store["amount"] == 1_000


async def test_purchase_time_bounds(till: Till, clock: FakeClock) -> None:
    shopper = await till.register()
    card = shopper["card"]["number"]
    too_old = await till.order(card, [item("x", 1, 100)], purchased_at="2026-01-30T09:00:00+00:00", expect=422)
    assert "30 days" in too_old["detail"]
    ahead = await till.order(card, [item("x", 1, 100)], purchased_at="2026-03-02T09:04:00+00:00")
    assert ahead["purchased_at"] == "2026-03-02T09:00:00Z"  # a till clock a little fast counts as now


async def test_cursor_and_header_mistakes_name_what_is_wrong(
    till: Till, client: Client, integration: dict[str, str], pos: dict[str, str]
) -> None:
    shopper = await till.register()
    customer = shopper["customer"]["id"]
    huge = await client.get(
        f"/v1/integrations/customers/{customer}/transactions?cursor=ZTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5",
        headers=integration,
    )
    assert huge.status_code == 422
    no_key = await client.post(
        "/v1/pos/orders", json={"order_id": "n1", "card": PHONE, "lines": [item("x", 1, 1)]}, headers=pos
    )
    assert problem(no_key)["errors"][0]["field"] == "Idempotency-Key"


async def test_a_merged_no_name_customer_is_gone_for_its_old_id(
    client: Client, pos: dict[str, str], integration: dict[str, str]
) -> None:
    await client.post("/v1/pos/customers", json={"phone": PHONE}, headers=pos)
    anonymous = (await client.post("/v1/pos/cards/anonymous", headers=pos)).json()
    await client.post(f"/v1/pos/cards/{anonymous['card']['number']}/attach", json={"phone": PHONE}, headers=pos)
    response = await client.get(
        f"/v1/integrations/customers/{anonymous['customer']['id']}/transactions", headers=integration
    )
    assert response.status_code == 404
    assert problem(response)["merged_into"]
