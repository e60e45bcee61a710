"""Migration 0077: what order_promotions said moves onto the order's lines and its uses, unchanged, and the
budget rows count what their uses say."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import asyncpg

from boot.schema import SCHEMA
from engine.promotions.store import Usages


async def test_the_per_line_rows_move_onto_the_lines_and_the_uses(fresh_database: str) -> None:
    conn = await asyncpg.connect(fresh_database)
    try:
        for migration in SCHEMA.discover():  # the schema as it was before 0076
            if migration.version >= 76:
                break
            await conn.execute(migration.sql)
        await conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, package text NOT NULL,"
            " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.executemany(
            "INSERT INTO schema_migrations (version, name, package, checksum) VALUES ($1, $2, $3, $4)",
            [(m.version, m.name, m.package, m.checksum) for m in SCHEMA.discover() if m.version < 76],
        )
        customer, at = uuid.uuid4(), datetime(2026, 11, 2, 12, tzinfo=UTC)
        await conn.execute("INSERT INTO customers (id, phone, source) VALUES ($1, '+375291234567', 'pos')", customer)
        await conn.execute("INSERT INTO cards (number, customer_id) VALUES ('2000000000008', $1)", customer)
        orders = {}
        for name, refunded in (("kept", 0), ("returned", 2)):
            orders[name] = await conn.fetchval(
                "INSERT INTO orders (order_id, customer_id, card_number, idempotency_key, request_hash, purchased_at,"
                " subtotal, discount, redeemed_points, paid, accrued_points, tier_code, rate_bp, engine, degraded)"
                " VALUES ($1, $2, '2000000000008', $1, 'h', $3, 3000, 400, 0, 2600, 130, 'standart', 500,"
                " 'embedded', false) RETURNING id",
                name,
                customer,
                at,
            )
            await conn.executemany(
                "INSERT INTO order_lines (order_pk, line_no, sku, on_sale, qty, unit_price, total, discount,"
                " redeemed_points, paid, accrued_points, refunded_qty) VALUES ($1, $2, $3, false, 2, 750, 1500,"
                " 200, 0, 1300, 65, $4)",
                [(orders[name], 0, "tea", refunded), (orders[name], 1, "cake", refunded)],
            )
            await conn.executemany(
                "INSERT INTO order_promotions (order_pk, line_no, promotion_id, revision, discount, points,"
                " returned_discount, returned_points) VALUES ($1, $2, $3, 1, $4, $5, $6, $7)",
                [
                    (orders[name], 0, "a", 150, 0, 150 if refunded else 0, 0),
                    (orders[name], 1, "a", 50, 0, 50 if refunded else 0, 0),
                    (orders[name], 1, "b", 0, 40, 0, 40 if refunded else 0),
                ],
            )
        # "kept" has both uses; "returned" only one (made by the migration, returned with the order)
        await conn.executemany(
            "INSERT INTO promotion_uses (order_pk, promotion_id, revision, customer_id, used_at)"
            " VALUES ($1, $2, 1, $3, $4)",
            [(orders["kept"], "a", customer, at), (orders["kept"], "b", customer, at)],
        )

        # A budget added while "a" ran: its row started at nothing
        await conn.execute("INSERT INTO promotion_budgets (promotion_id) VALUES ('a')")

        await SCHEMA.migrate(conn)

        # Kept, unwritten, for a rolling deploy's replicas of the release before
        assert await conn.fetchval("SELECT count(*) FROM order_promotions") == 6
        lines = await conn.fetch(
            "SELECT promotions FROM order_lines WHERE order_pk = $1 ORDER BY line_no", orders["kept"]
        )
        assert [json.loads(r["promotions"]) for r in lines] == [
            [{"id": "a", "revision": 1, "discount": 150, "points": 0}],
            [
                {"id": "a", "revision": 1, "discount": 50, "points": 0},
                {"id": "b", "revision": 1, "discount": 0, "points": 40},
            ],
        ]
        uses = await conn.fetch(
            "SELECT o.order_id, u.promotion_id, u.returned, u.discount, u.points, u.returned_discount,"
            " u.returned_points FROM promotion_uses u JOIN orders o ON o.id = u.order_pk ORDER BY 1, 2"
        )
        assert [tuple(r) for r in uses] == [
            ("kept", "a", False, 200, 0, 0, 0),
            ("kept", "b", False, 0, 40, 0, 0),
            ("returned", "a", True, 200, 0, 200, 0),
            ("returned", "b", True, 0, 40, 0, 40),
        ]
        assert await Usages().totals(conn, "a") == (1, 200, 0)
        budget = await conn.fetchrow("SELECT orders, discount, points FROM promotion_budgets")
        assert budget is not None
        assert tuple(budget) == (1, 200, 0)  # as the uses say
    finally:
        await conn.close()
