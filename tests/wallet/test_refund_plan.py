"""A refund reads only its own order's part of the ledger: the "takeable" query, run and measured.

A refund holds the customer's account lock while it works out what it may take back, so that query
must find the order's lots and their expiry entries through indexes (``lots_order``, and
``ledger_expiry_lot`` from migration 0011), not by reading the ledger. "No sequential scan" is not
enough: an index on the customer (``ledger_customer``) would read every entry of a long-standing
shopper and still be an index scan. So the query is run under ``EXPLAIN (ANALYZE, BUFFERS)``, on a
ledger of tens of thousands of entries of the *same* customer, and what it read is counted: rows and
pages bounded by the order's few lots, not by the customer's history. The same measure without the
index (dropped in a transaction rolled back) reads the whole ledger, so the bound is what catches it.
"""

from __future__ import annotations

from typing import Any

from engine.embedded import EmbeddedEngine
from kartka.clock import FakeClock
from kartka.db import Connection
from tests.helpers import NOTIFIER
from wallet.customers import CustomerService, Origin
from wallet.models import Source
from wallet.orders import CommitInput, OrderService
from wallet.orders.refund import TAKEABLE
from wallet.pricing import CartLine
from wallet.program import DEFAULT_PROGRAM

#: The shopper's other lots, each granted and expired: twice as many ledger entries.
OTHER_LOTS = 20_000
#: What reading one order's part may cost: its lots, their expiry entries and its refunds are a handful
#: of rows; each index lookup reads an index path and a heap page or two.
MOST_ROWS = 10
MOST_PAGES = 40

_SCANS = frozenset({"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan"})


def _scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan] if plan["Node Type"] in _SCANS else []
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


def _rows_read(scan: dict[str, Any]) -> int:
    """Rows the scan looked at: those it returned and those it read only to throw away, on every loop."""
    removed = scan.get("Rows Removed by Filter", 0) + scan.get("Rows Removed by Index Recheck", 0)
    per_loop = scan["Actual Rows"] + removed
    return int(per_loop * scan["Actual Loops"])


def _index_of(plan: dict[str, Any], relation: str) -> set[str | None]:
    """The indexes the plan reaches ``relation`` through (``None`` for a sequential scan)."""
    names: set[str | None] = set()
    for scan in _scans(plan):
        if scan.get("Relation Name") != relation:
            continue
        if scan["Node Type"] == "Bitmap Heap Scan":
            names |= {child.get("Index Name") for child in scan.get("Plans", [])}
        else:
            names.add(scan.get("Index Name"))
    return names


async def _measure(conn: Connection, order_pk: int, clock: FakeClock) -> tuple[dict[str, Any], int, int]:
    """The executed plan, the rows its scans read and the pages it touched."""
    explained = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {TAKEABLE}", order_pk, clock.now())
    plan: dict[str, Any] = explained[0]["Plan"]
    pages = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]  # the root's count includes its children's
    return plan, sum(_rows_read(scan) for scan in _scans(plan)), pages


async def test_the_takeable_query_reads_the_order_not_the_customers_ledger(conn: Connection, clock: FakeClock) -> None:
    customers = CustomerService(region="BY", card_prefix="2", program=DEFAULT_PROGRAM, events=NOTIFIER, clock=clock)
    orders = OrderService(
        program=DEFAULT_PROGRAM, engine=EmbeddedEngine(DEFAULT_PROGRAM), customers=customers, clock=clock
    )
    async with conn.transaction():
        shopper = await customers.register(conn, phone="+375291234567", origin=Origin(source=Source.POS))
        data = CommitInput(
            order_id="o-1", card=shopper.card.number, lines=(CartLine(sku="x", qty=1, unit_price=10_000),)
        )
        await orders.commit(conn, data, idempotency_key="o-1", api_key_id=None, store="s1", terminal="t1")
        # The same shopper's other lots, granted and expired long ago: 40,000 entries besides the order's,
        # all reachable through the customer's index.
        await conn.execute(
            """
            WITH lot AS (
                INSERT INTO lots (customer_id, kind, points, remaining, available_at, expires_at, expired_at)
                SELECT $1, 'grant', 100, 0, $2, $2, $2 FROM generate_series(1, $3)
                RETURNING id
            )
            INSERT INTO ledger_entries (customer_id, kind, points, lot_id, occurred_at)
            SELECT $1, kind, points, lot.id, $2 FROM lot, (VALUES ('grant', 100), ('expiry', -100)) AS e (kind, points)
            """,
            shopper.customer.id,
            clock.now(),
            OTHER_LOTS,
        )
    await conn.execute("ANALYZE lots, ledger_entries, refunds")
    order_pk = await conn.fetchval("SELECT id FROM orders")
    assert await conn.fetchval(TAKEABLE, order_pk, clock.now()) > 0  # the query is about something

    plan, rows, pages = await _measure(conn, order_pk, clock)
    assert _index_of(plan, "lots") == {"lots_order"}, plan
    assert _index_of(plan, "ledger_entries") == {"ledger_expiry_lot"}, plan
    assert rows <= MOST_ROWS, plan
    assert pages <= MOST_PAGES, plan

    # The bound is what tells: without the index, the same query reads the shopper's whole ledger.
    counterfactual = conn.transaction()
    await counterfactual.start()
    try:
        await conn.execute("DROP INDEX ledger_expiry_lot")
        _, rows_without, pages_without = await _measure(conn, order_pk, clock)
    finally:
        await counterfactual.rollback()
    assert rows_without >= 2 * OTHER_LOTS
    assert pages_without > 10 * MOST_PAGES
