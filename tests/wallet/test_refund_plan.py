"""A refund reads only its own order's part of the ledger: the plan of the "takeable" query, checked.

A refund holds the customer's account lock while it works out what it may take back, so that query
must find the order's lots and their expiry entries through indexes, not by reading the whole ledger.
The ledger here holds tens of thousands of other entries, analysed, so a scan would be the costly choice
the planner avoids whenever it has an index to use; without one, a scan is its only way.
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

OTHER_LOTS = 20_000


def _nodes(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    found = [(plan["Node Type"], plan.get("Relation Name"))]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


async def test_the_takeable_query_reads_the_order_through_indexes(conn: Connection, clock: FakeClock) -> None:
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
        # Other lots granted and expired long ago: a ledger of 40,000 entries besides the order's.
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
    plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {TAKEABLE}", order_pk, clock.now())
    nodes = _nodes(plan[0]["Plan"])
    scanned = [relation for kind, relation in nodes if kind == "Seq Scan"]
    assert "ledger_entries" not in scanned, nodes
    assert "lots" not in scanned, nodes
