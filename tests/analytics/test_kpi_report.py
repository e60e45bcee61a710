"""The KPI report on a hand-built month: every figure worked out below from the purchases, with refunds,
a merged no-name card, anonymous receipts and one the till sent for a purchase made with a card.

February 2026, store-1 unless said (Minsk time; every purchase at noon):

    with a card                                   without a card
    Jan 28  A 1000 (A's first, before the month)  Feb 03  R1 1000
    Feb 03  A 2000   repeat                       Feb 10  R2 2000, 500 refunded -> 1500
    Feb 03  B 1500   B's first                    Feb 12  R3  500 (store-2)
    Feb 10  B  500   repeat                       Feb 15  R4  900, refunded in full: does not count
    Feb 10  C 3000   refunded in full: no count   Feb 21  "shared-1" 700: the till also reported
    Feb 12  C 1000   C's first that counts                B's order shared-1 as a receipt: counted once
    Feb 15  A 2500, one of two items refunded -> 1250   repeat
    Feb 20  D  800   no-name card, later merged into A: repeat (A bought before)
    Feb 21  B  700   repeat, 0.50 points spent (order id shared-1)

    receipts 10, of which 7 with a card -> identified share 0.7
    revenue with a card 2000+1500+500+1000+1250+800+700 = 7750, without 1000+1500+500 = 3000
    repeat share 5/7; buyers A, B, C -> 3, with two or more receipts A and B -> 2/3
    average check with a card 7750/7 = 1107.14 -> 1107, without 1000, uplift (7750/7)/1000
    cards issued in February: B (Feb 2), C (Feb 1), D (Feb 20), E (Feb 5, never buys) -> 3 of 4 active
    wallet adoption at the end of February: A's pass on a phone since Feb 20; cards active A, B, C, D, E
    (D's is replaced by the merge on March 2) -> 1 of 5; at the end of March 2: 1 of 4
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from analytics import kpis_rollup
from kartka.clock import FakeClock
from kartka.db import Connection, Pool
from kartka.keys import Scope
from tests.helpers import Keys

Client = AsyncTestClient[Litestar]
ZONE = "Europe/Minsk"


def noon(day: date) -> str:
    return datetime(day.year, day.month, day.day, 9, 0, tzinfo=UTC).isoformat()  # 12:00 in Minsk


def utc(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 10, 0, tzinfo=UTC)


def feb(day: int) -> date:
    return date(2026, 2, day)


class Shop:
    def __init__(self, client: Client, till: dict[str, str], other: dict[str, str]) -> None:
        self.client, self.till, self.other = client, till, other

    async def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
        response = await self.client.post(
            path, json=body, headers=(headers or self.till) | {"Idempotency-Key": uuid.uuid4().hex}
        )
        assert response.status_code in (200, 201), response.text
        result: dict[str, Any] = response.json()
        return result

    async def register(self, phone: str) -> dict[str, Any]:
        return await self.post("/v1/pos/customers", {"phone": phone})

    async def order(self, card: str, day: date, *prices: int, order_id: str | None = None, redeem: int = 0) -> str:
        order_id = order_id or f"o-{uuid.uuid4().hex[:10]}"
        lines = [{"sku": f"sku-{i}", "qty": 1, "unit_price": p} for i, p in enumerate(prices)]
        body = {"order_id": order_id, "card": card, "lines": lines, "purchased_at": noon(day)}
        await self.post("/v1/pos/orders", body | ({"redeem_points": redeem} if redeem else {}))
        return order_id

    async def refund(self, order_id: str, *skus: str) -> None:
        lines = [{"sku": sku, "qty": 1} for sku in skus]
        await self.post(
            f"/v1/pos/orders/{order_id}/refunds", {"refund_id": f"r-{uuid.uuid4().hex[:8]}", "lines": lines}
        )

    async def receipt(self, receipt_id: str, day: date, total: int, *, other_store: bool = False) -> None:
        body = {"receipt_id": receipt_id, "total": total, "purchased_at": noon(day)}
        await self.post("/v1/pos/receipts", body, self.other if other_store else None)

    async def refund_receipt(self, receipt_id: str, amount: int) -> None:
        body = {"refund_id": f"rr-{uuid.uuid4().hex[:8]}", "amount": amount}
        await self.post(f"/v1/pos/receipts/{receipt_id}/refunds", body)


async def issued_on(conn: Connection, card: str, day: date) -> None:
    """Registrations and cards take the database's clock; the hand-built month says when each was issued."""
    at = datetime(day.year, day.month, day.day, 8, 0, tzinfo=UTC)
    await conn.execute(
        "UPDATE registrations SET created_at = $2 WHERE card_number = $1 AND outcome = 'created'", card, at
    )
    await conn.execute("UPDATE cards SET issued_at = $2 WHERE number = $1", card, at)


@pytest.fixture
async def month(client: Client, keys: Keys, clock: FakeClock, conn: Connection, pool: Pool) -> dict[str, Any]:
    shop = Shop(client, await keys.headers(Scope.POS), await keys.headers(Scope.POS, store="store-2"))
    clock.set(datetime(2026, 2, 25, 12, 0, tzinfo=UTC))
    a = (await shop.register("+375291000001"))["card"]["number"]
    b = (await shop.register("+375291000002"))["card"]["number"]
    c = (await shop.register("+375291000003"))["card"]["number"]
    e = (await shop.register("+375291000005"))["card"]["number"]
    d = (await shop.post("/v1/pos/cards/anonymous", {}))["card"]["number"]
    await shop.order(a, date(2026, 1, 28), 1000)
    await shop.order(a, feb(3), 2000)
    await shop.order(b, feb(3), 1500)
    await shop.order(b, feb(10), 500)
    c_refunded = await shop.order(c, feb(10), 3000)
    await shop.order(c, feb(12), 1000)
    a_halved = await shop.order(a, feb(15), 1250, 1250)
    await shop.order(d, feb(20), 800)
    await shop.order(b, feb(21), 700, order_id="shared-1", redeem=50)
    await shop.receipt("R1", feb(3), 1000)
    await shop.receipt("R2", feb(10), 2000)
    await shop.receipt("R3", feb(12), 500, other_store=True)
    await shop.receipt("R4", feb(15), 900)
    await shop.receipt("shared-1", feb(21), 700)
    clock.set(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    await shop.refund(c_refunded, "sku-0")
    await shop.refund(a_halved, "sku-1")
    await shop.refund_receipt("R2", 500)
    await shop.refund_receipt("R4", 900)
    merged = await shop.post(f"/v1/pos/cards/{d}/attach", {"phone": "+375291000001"})
    assert merged["outcome"] == "merged"
    for card, day in ((a, date(2026, 1, 25)), (b, feb(2)), (c, feb(1)), (d, feb(20)), (e, feb(5))):
        await issued_on(conn, card, day)
    # A's pass is on a phone since February 20: one of the five cards active at the end of February, one
    # of four after D's was replaced by the merge.
    await conn.execute(
        """
        INSERT INTO passes (serial_number, card_number, authentication_token, updated_at, created_at)
        VALUES ($1, $1, repeat('t', 32), now(), '2026-02-20T10:00:00Z');
        INSERT INTO pass_devices (device_library_id, push_token, updated_at) VALUES ('dev-1', repeat('a', 64), now());
        INSERT INTO pass_registrations (device_library_id, serial_number, created_at)
        VALUES ('dev-1', $1, '2026-02-20T10:00:00Z');
        """.replace("$1", f"'{a}'")
    )
    await kpis_rollup.run(pool, ZONE)
    accrued = await conn.fetch(
        "SELECT purchased_at, accrued_points, redeemed_points FROM orders ORDER BY purchased_at, id"
    )
    return {"orders": accrued, "admin": await keys.headers(Scope.ADMIN)}


async def report(client: Client, headers: dict[str, str], **params: str) -> dict[str, Any]:
    query = {"from": "2026-02-01", "to": "2026-03-01"} | params
    response = await client.get("/v1/admin/reports/kpis", params=query, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_month(client: Client, month: dict[str, Any], conn: Connection) -> None:
    """One month, built once, read every way (building it is most of the cost)."""
    await one_row(client, month)
    await per_store_and_per_day(client, month)
    await csv_rows(client, month)
    await back_fill_agrees(conn)
    # Whole periods not recounted yet (as right after the upgrade that brought the counts, or a new day
    # before the next round) are counted from their days: the same figures, never zeros.
    await conn.execute(
        """
        DELETE FROM kpi_buyer_counts;
        INSERT INTO kpi_dirty_periods (grain, period_start)
        SELECT DISTINCT g.grain, date_trunc(g.grain, d.day::timestamp)::date
          FROM (SELECT DISTINCT day FROM kpi_buyer_days) d CROSS JOIN (VALUES ('day'), ('week'), ('month')) g (grain)
        ON CONFLICT DO NOTHING
        """
    )
    await one_row(client, month)
    await per_store_and_per_day(client, month)


async def one_row(client: Client, month: dict[str, Any]) -> None:
    body = await report(client, month["admin"])
    assert body["days_pending"] == 0
    (row,) = body["rows"]
    assert (row["period_start"], row["period_end"]) == ("2026-02-01", "2026-03-01")
    assert (row["receipts"], row["receipts_identified"], row["receipts_anonymous"]) == (10, 7, 3)
    assert row["identified_share_receipts"] == 0.7
    assert (row["revenue_identified"], row["revenue_anonymous"]) == (7750, 3000)
    assert row["identified_share_revenue"] == round(7750 / 10750, 6)
    assert (row["repeat_receipts"], row["repeat_share"]) == (5, round(5 / 7, 6))
    assert (row["buyers"], row["repeat_buyers"], row["repeat_buyers_share"]) == (3, 2, round(2 / 3, 6))
    assert (row["average_check_identified"], row["average_check_anonymous"]) == (1107, 1000)
    assert row["average_check_uplift"] == round(7750 / 7 / 1000, 6)
    assert (row["cards_issued"], row["cards_activated_30d"], row["card_activation_share"]) == (4, 3, 0.75)
    # Points: what February's purchases earned (the refunds came in March) and the 0.50 spent on shared-1.
    in_month = [o for o in month["orders"] if o["purchased_at"] >= datetime(2026, 1, 31, 21, tzinfo=UTC)]
    earned = sum(o["accrued_points"] for o in in_month)
    assert (row["points_accrued"], row["points_spent"]) == (earned, 50)
    assert row["points_burn_rate"] == round(50 / earned, 6)
    # Owed at the end of February: everything earned up to then, less what was spent; none still pending.
    everything = sum(o["accrued_points"] for o in month["orders"])
    assert (row["liability_points"], row["liability_pending_points"]) == (everything - 50, 0)
    assert row["liability_money"] == everything - 50
    assert (row["wallet_passes_installed"], row["active_cards"], row["wallet_adoption_share"]) == (1, 5, 0.2)
    later = (await report(client, month["admin"], to="2026-03-03"))["rows"][0]
    assert (later["wallet_passes_installed"], later["active_cards"], later["wallet_adoption_share"]) == (1, 4, 0.25)
    # Not a whole month: its buyers are counted from its days, and agree with the month's (nothing was
    # bought on March 1 or 2).
    assert (later["receipts"], later["buyers"], later["repeat_buyers"], later["repeat_receipts"]) == (10, 3, 2, 5)


async def per_store_and_per_day(client: Client, month: dict[str, Any]) -> None:
    stores = {r["store"]: r for r in (await report(client, month["admin"], group_by="store"))["rows"]}
    assert (stores["store-1"]["receipts_identified"], stores["store-1"]["receipts_anonymous"]) == (7, 2)
    assert stores["store-1"]["identified_share_receipts"] == round(7 / 9, 6)
    assert (stores["store-2"]["receipts"], stores["store-2"]["identified_share_receipts"]) == (1, 0.0)
    assert stores["store-2"]["repeat_share"] is None  # no purchase with a card: nothing to divide
    assert stores["store-1"]["liability_points"] is None  # points are the chain's
    assert stores["store-1"]["points_expired"] is None  # lots lapse in no store
    only = (await report(client, month["admin"], store="store-2"))["rows"][0]
    assert (only["receipts"], only["revenue"]) == (1, 500)
    # Every scope of the whole month (read from its counts) agrees with the same purchases counted from
    # their days (a period that is not a whole month: nothing was bought on March 1 or 2).
    for params in (
        {"group_by": "store"},
        {"group_by": "source"},
        {"store": "store-1"},
        {"store": "store-1", "group_by": "source"},
    ):
        whole = (await report(client, month["admin"], **params))["rows"]
        counted = (await report(client, month["admin"], to="2026-03-03", **params))["rows"]
        figures = (
            "store",
            "source",
            "receipts_identified",
            "revenue_identified",
            "repeat_receipts",
            "buyers",
            "repeat_buyers",
        )
        assert [[r[f] for f in figures] for r in whole] == [[r[f] for f in figures] for r in counted], params

    days = {r["period_start"]: r for r in (await report(client, month["admin"], group_by="day"))["rows"]}
    assert len(days) == 28
    assert (days["2026-02-03"]["receipts_identified"], days["2026-02-03"]["receipts_anonymous"]) == (2, 1)
    assert days["2026-02-03"]["repeat_receipts"] == 1  # A's; B's was B's first
    assert days["2026-02-10"]["receipts"] == 2  # B's 500 and R2; C's refunded order is gone
    assert days["2026-02-15"]["receipts"] == 1  # A's half; R4 was refunded in full
    assert days["2026-02-21"]["receipts"] == 1  # shared-1, once
    assert days["2026-02-04"]["receipts"] == 0
    weeks = (await report(client, month["admin"], group_by="week"))["rows"]
    assert [(w["period_start"], w["period_end"]) for w in weeks][:2] == [
        ("2026-02-01", "2026-02-02"),
        ("2026-02-02", "2026-02-09"),
    ]
    assert sum(w["receipts"] for w in weeks) == 10
    assert sum(w["buyers"] for w in weeks) >= 3  # a buyer counts in every week they bought in


async def csv_rows(client: Client, month: dict[str, Any]) -> None:
    response = await client.get(
        "/v1/admin/reports/kpis",
        params={"from": "2026-02-01", "to": "2026-03-01", "group_by": "store"},
        headers=month["admin"] | {"Accept": "text/csv"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    header, first, *_ = response.text.splitlines()
    assert header.split(",")[:5] == ["period_start", "period_end", "store", "source", "receipts"]
    assert "identified_share_receipts" in header.split(",")
    assert first.split(",")[2] == "store-1"


async def test_a_later_change_reaches_the_figures_after_a_round(
    client: Client, month: dict[str, Any], pool: Pool, conn: Connection, keys: Keys
) -> None:
    """B's first purchase refunded in full: B's next one becomes the first, the repeat share moves."""
    order_id = await conn.fetchval(
        "SELECT order_id FROM orders WHERE paid = 1500 AND purchased_at < '2026-02-04'::timestamptz"
    )
    till = await keys.headers(Scope.POS)
    response = await client.post(
        f"/v1/pos/orders/{order_id}/refunds",
        json={"refund_id": "late", "lines": [{"sku": "sku-0", "qty": 1}]},
        headers=till | {"Idempotency-Key": "late"},
    )
    assert response.status_code == 201, response.text
    before = (await report(client, month["admin"]))["rows"][0]
    assert before["receipts_identified"] == 7  # the worker has not been round yet
    # A worker that dies half-way through a recompute leaves its day dirty; the next round does it.
    await kpis_rollup.follow(pool, ZONE)
    dirty = await conn.fetchval("SELECT count(*) FROM kpi_dirty_days")
    assert dirty >= 2  # Feb 3 and every later day of B's

    async def die_half_way() -> None:
        async with pool.acquire() as other, other.transaction():
            day = await other.fetchval("SELECT day FROM kpi_dirty_days ORDER BY day LIMIT 1 FOR UPDATE")
            await kpis_rollup.recompute(other, day, day + timedelta(days=1), ZONE)
            await other.execute("DELETE FROM kpi_dirty_days WHERE day = $1", day)
            raise RuntimeError("the worker dies before it commits")

    with pytest.raises(RuntimeError):
        await die_half_way()
    assert await conn.fetchval("SELECT count(*) FROM kpi_dirty_days") == dirty
    await kpis_rollup.run(pool, ZONE)
    after = (await report(client, month["admin"]))["rows"][0]
    assert (after["receipts_identified"], after["repeat_receipts"]) == (6, 4)  # B's Feb 10 is now B's first
    assert (after["buyers"], after["repeat_buyers"]) == (3, 2)
    assert after["revenue_identified"] == 7750 - 1500
    again = await kpis_rollup.run(pool, ZONE)
    assert (again.ids_read, again.days_recomputed) == (0, 0)


async def test_wallet_adoption_as_of_each_period_end(
    client: Client, keys: Keys, clock: FakeClock, conn: Connection, pool: Pool
) -> None:
    """Three cards and what phones did with their passes (2026, UTC):

    X issued Jan 10; Apple on two phones Jan 15-Feb 10 and Jan 20-25 (one card, counted once);
      saved to Google Mar 2
    Y issued Jan 20; saved to Google Jan 25, deleted Mar 5
    Z issued Feb 5; Apple since Feb 10; the card blocked Mar 20

    end of January  active X, Y      installed X, Y   -> 2 / 2
    end of February active X, Y, Z   installed Y, Z   -> 2 / 3
    end of March    active X, Y      installed X      -> 1 / 2 (Z blocked; Y deleted)
    """
    shop = Shop(client, await keys.headers(Scope.POS), await keys.headers(Scope.POS, store="store-2"))
    clock.set(datetime(2026, 1, 5, 12, 0, tzinfo=UTC))
    x, y, z = [(await shop.register(f"+37529200000{i}"))["card"]["number"] for i in range(3)]
    for card, day in ((x, date(2026, 1, 10)), (y, date(2026, 1, 20)), (z, date(2026, 2, 5))):
        await issued_on(conn, card, day)
        await conn.execute(
            "INSERT INTO passes (serial_number, card_number, authentication_token, updated_at, created_at)"
            " VALUES ($1, $1, repeat('t', 32), now(), $2)",
            card,
            datetime(day.year, day.month, day.day, 9, tzinfo=UTC),
        )
    await conn.execute(
        "INSERT INTO pass_devices (device_library_id, push_token, updated_at)"
        " VALUES ('p-1', repeat('a', 64), now()), ('p-2', repeat('b', 64), now()), ('p-3', repeat('c', 64), now())"
    )
    for device, card, start, removed in (
        ("p-1", x, utc(1, 15), utc(2, 10)),
        ("p-2", x, utc(1, 20), utc(1, 25)),
        ("p-3", z, utc(2, 10), None),
    ):
        await conn.execute(
            "INSERT INTO pass_registrations (device_library_id, serial_number, created_at, removed_at, removed_by)"
            " VALUES ($1, $2, $3, $4, CASE WHEN $4::timestamptz IS NULL THEN NULL ELSE 'device' END)",
            device,
            card,
            start,
            removed,
        )
    for n, (kind, card, at) in enumerate((("save", x, utc(3, 2)), ("save", y, utc(1, 25)), ("del", y, utc(3, 5)))):
        await conn.execute(
            "INSERT INTO google_wallet_events (nonce, event_type, class_id, object_id, serial_number, received_at)"
            " VALUES ($1, $2, 'c', $3, $3, $4)",
            f"n-{n}",
            kind,
            card,
            at,
        )
    await conn.execute("UPDATE cards SET status = 'blocked', status_changed_at = $2 WHERE number = $1", z, utc(3, 20))
    period = {"from": "2026-01-01", "to": "2026-04-01", "group_by": "month"}
    assert (await report(client, await keys.headers(Scope.ADMIN), **period))["wallet_as_of"] is None  # never built
    await kpis_rollup.run(pool, ZONE)
    body = await report(client, await keys.headers(Scope.ADMIN), **period)
    built = await conn.fetchval("SELECT updated_at FROM kpi_feeds WHERE feed = 'wallet'")
    assert datetime.fromisoformat(body["wallet_as_of"]) == built  # how old the adoption figures are
    figures = [(r["wallet_passes_installed"], r["active_cards"], r["wallet_adoption_share"]) for r in body["rows"]]
    assert figures == [(2, 2, 1.0), (2, 3, round(2 / 3, 6)), (1, 2, 0.5)]


async def test_bad_periods_are_422(client: Client, keys: Keys) -> None:
    admin = await keys.headers(Scope.ADMIN)
    for params in (
        {"from": "2026-02-01", "to": "2026-02-01"},
        {"from": "2026-02-01"},
        {"from": "2026-02-01", "to": "2026-03-01", "group_by": "year"},
        {"from": "2000-01-01", "to": "2026-03-01"},
    ):
        response = await client.get("/v1/admin/reports/kpis", params=params, headers=admin)
        assert response.status_code in (400, 422), (params, response.text)
    till = await keys.headers(Scope.POS)
    assert (
        await client.get("/v1/admin/reports/kpis", params={"from": "2026-02-01", "to": "2026-03-01"}, headers=till)
    ).status_code == 403


async def back_fill_agrees(conn: Connection) -> None:
    """The bulk path (one pass numbering each customer's purchases) and the day-by-day one give the same rows."""

    async def rows() -> list[tuple[Any, ...]]:
        found = await conn.fetch("SELECT * FROM kpi_buyer_days ORDER BY day, store, source, customer_id")
        return [tuple(r) for r in found]

    daily = await rows()
    assert len(daily) >= 7
    async with conn.transaction():
        await kpis_rollup.recompute(conn, date(2026, 1, 1), date(2026, 3, 3), ZONE)
    assert await rows() == daily


async def test_what_each_promotion_did(client: Client, keys: Keys, clock: FakeClock) -> None:
    """Two orders take 1+1=3 (three for the price of two: 300 off 900), one of them later refunded by half;
    a third order takes none."""
    shop = Shop(client, await keys.headers(Scope.POS), await keys.headers(Scope.POS, store="store-2"))
    clock.set(datetime(2026, 2, 25, 12, 0, tzinfo=UTC))
    a = (await shop.register("+375291000001"))["card"]["number"]
    b = (await shop.register("+375291000002"))["card"]["number"]
    three = [{"sku": "tea", "qty": 3, "unit_price": 300, "category": "promo-3for2"}]
    for card, order_id in ((a, "p-1"), (b, "p-2")):
        body = {"order_id": order_id, "card": card, "lines": three, "purchased_at": noon(feb(10))}
        await shop.post("/v1/pos/orders", body)
    await shop.order(a, feb(11), 1000)
    await shop.post("/v1/pos/orders/p-2/refunds", {"refund_id": "pr", "lines": [{"sku": "tea", "qty": 1}]})
    admin = await keys.headers(Scope.ADMIN)
    response = await client.get(
        "/v1/admin/reports/promotions", params={"from": "2026-02-01", "to": "2026-03-01"}, headers=admin
    )
    assert response.status_code == 200, response.text
    (row,) = response.json()["rows"]
    assert (row["promotion"], row["orders"], row["customers"]) == ("three-for-two", 2, 2)
    assert row["discount"] == 600
    assert row["revenue"] == 600 + 600 - 200  # a third of p-2's 600 came back with one of its three teas
    assert row["points"] == 2 * 30  # 5 % of 600 each
    empty = await client.get(
        "/v1/admin/reports/promotions", params={"from": "2026-01-01", "to": "2026-02-01"}, headers=admin
    )
    assert empty.json()["rows"] == []
