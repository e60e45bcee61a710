"""The per-customer facts segments are evaluated against, and how they are kept fresh.

:func:`refresh` recomputes the facts of a set of customers in one statement (and drops those merged
away or closed). Two callers keep the table true:

- every worker round, :func:`refresh_touched` refreshes the customers that an order, refund, ledger
  entry (grants, redemptions, expiry), registration (new customers, merges) or tier change touched
  since the previous round — read by identity column from marks in ``analytics_marks`` — so purchases,
  balances and tiers lag by one round (the jobs interval);
- the daily job (:mod:`analytics.segments_daily`) rebuilds every row in batches, which also moves what
  time alone changes (the 365-day window sliding, balances as points mature or expire) and what no
  marked table records (home store, birthday, marketing consent, wallet passes): those lag up to a day.
  A campaign still checks consent live when it enqueues.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

from analytics.lifecycle import COUNTED, STAGE_SQL, Thresholds, latest
from kartka.db import Connection, Pool
from wallet.program import Program

#: Tables whose new rows mean their customer's facts moved, read by identity column.
SOURCES: Final = ("orders", "refunds", "ledger_entries", "registrations", "tier_changes")

_REFRESH: Final = f"""
    WITH batch AS (
        SELECT cu.id, cu.created_at, cu.source, cu.home_store, cu.birthday
          FROM customers cu
         WHERE cu.id = ANY($1::uuid[]) AND cu.merged_into IS NULL AND cu.closed_at IS NULL
    ), gone AS (
        DELETE FROM customer_facts d USING customers cu
         WHERE cu.id = ANY($1::uuid[]) AND (cu.merged_into IS NOT NULL OR cu.closed_at IS NOT NULL)
           AND d.customer_id = cu.id
    ), computed AS (
        SELECT b.id AS customer_id, coalesce(a.tier_code, $4) AS tier_code, b.created_at AS registered_at,
               b.source, b.home_store,
               (extract(month FROM b.birthday) * 100 + extract(day FROM b.birthday))::smallint AS birthday_md,
               coalesce(p.marketing, false) AS consent_marketing,
               EXISTS (SELECT FROM cards c JOIN passes ps ON ps.card_number = c.number AND ps.retired_at IS NULL
                        WHERE c.customer_id = b.id AND c.status = 'active'
                          AND (ps.google_linked_at IS NOT NULL
                               OR EXISTS (SELECT FROM pass_registrations r WHERE r.serial_number = ps.serial_number)))
                   AS has_wallet_pass,
               coalesce(l.available, 0) - coalesce(a.debt, 0) AS balance,
               o.spend_365d, o.orders_365d, o.revenue_total, o.orders_total, o.first_purchase_at,
               o.last_purchase_at
          FROM batch b
          LEFT JOIN accounts a ON a.customer_id = b.id
          LEFT JOIN notification_preferences p ON p.customer_id = b.id
          LEFT JOIN LATERAL (
              SELECT sum(remaining) AS available FROM lots
               WHERE customer_id = b.id AND remaining > 0 AND available_at <= $2 AND expires_at > $2
          ) l ON true
          CROSS JOIN LATERAL (
              SELECT coalesce(sum(o.paid - o.refunded_amount) FILTER (WHERE o.purchased_at > $3), 0) AS spend_365d,
                     count(*) FILTER (WHERE o.purchased_at > $3 AND {COUNTED})::integer AS orders_365d,
                     coalesce(sum(o.paid - o.refunded_amount), 0) AS revenue_total,
                     count(*) FILTER (WHERE {COUNTED})::integer AS orders_total,
                     min(o.purchased_at) FILTER (WHERE {COUNTED}) AS first_purchase_at,
                     max(o.purchased_at) FILTER (WHERE {COUNTED}) AS last_purchase_at
                FROM orders o WHERE o.customer_id = b.id AND o.purchased_at <= $2
          ) o
    )
    INSERT INTO customer_facts AS f (customer_id, tier_code, registered_at, source, home_store, birthday_md,
                                     consent_marketing, has_wallet_pass, balance, spend_365d, orders_365d,
                                     revenue_total, orders_total, first_purchase_at, last_purchase_at, lifecycle,
                                     refreshed_at)
    SELECT c.*, {STAGE_SQL.format(new="$5", t50="$6", t90="$7").replace("f.", "c.")}, $2 FROM computed c
    ON CONFLICT (customer_id) DO UPDATE SET
        tier_code = EXCLUDED.tier_code, registered_at = EXCLUDED.registered_at, source = EXCLUDED.source,
        home_store = EXCLUDED.home_store, birthday_md = EXCLUDED.birthday_md,
        consent_marketing = EXCLUDED.consent_marketing, has_wallet_pass = EXCLUDED.has_wallet_pass,
        balance = EXCLUDED.balance, spend_365d = EXCLUDED.spend_365d, orders_365d = EXCLUDED.orders_365d,
        revenue_total = EXCLUDED.revenue_total, orders_total = EXCLUDED.orders_total,
        first_purchase_at = EXCLUDED.first_purchase_at, last_purchase_at = EXCLUDED.last_purchase_at,
        lifecycle = EXCLUDED.lifecycle, refreshed_at = EXCLUDED.refreshed_at
"""


async def no_jit(conn: Connection) -> None:
    """For the rest of the transaction: these statements run once over many rows, and compiling them
    (PostgreSQL's JIT) cost more than it saved — 5 of 12 s for a batch of 20,000 customers."""
    await conn.execute("SET LOCAL jit = off")


async def refresh(
    conn: Connection, customer_ids: Sequence[UUID], program: Program, thresholds: Thresholds, now: datetime
) -> None:
    """Recompute these customers' facts (RFM scores stay until the daily job: they rank everyone)."""
    if not customer_ids:
        return
    t50, t90 = thresholds.cutoffs(now)
    await no_jit(conn)
    await conn.execute(
        _REFRESH,
        list(customer_ids),
        now,
        now - timedelta(days=program.rfm.window_days),
        program.base_tier.code,
        now - timedelta(days=program.lifecycle.new_days),
        t50,
        t90,
    )


async def refresh_touched(pool: Pool, program: Program, now: datetime, *, limit: int = 20_000) -> int:
    """Refresh the customers touched since the last round; returns how many. Workers take turns (the
    marks are locked for the round); a round reads at most ``limit`` new rows of each source table."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO analytics_marks (name, last_id) SELECT unnest($1::text[]), 0 ON CONFLICT DO NOTHING",
            list(SOURCES),
        )
        marks = {
            row["name"]: row["last_id"]
            for row in await conn.fetch("SELECT name, last_id FROM analytics_marks ORDER BY name FOR UPDATE")
        }
        touched: set[UUID] = set()
        moved: dict[str, int] = {}
        merged_into: list[UUID] = []
        for table in SOURCES:
            extra = ", outcome" if table == "registrations" else ""
            rows = await conn.fetch(
                f"SELECT id, customer_id{extra} FROM {table} WHERE id > $1 ORDER BY id LIMIT $2",
                marks[table],
                limit,
            )
            if rows:
                moved[table] = rows[-1]["id"]
                touched.update(row["customer_id"] for row in rows)
                if table == "registrations":
                    merged_into += [row["customer_id"] for row in rows if row["outcome"] == "merged"]
        if merged_into:  # the no-name customers merged away leave the facts
            touched.update(
                row["id"]
                for row in await conn.fetch("SELECT id FROM customers WHERE merged_into = ANY($1::uuid[])", merged_into)
            )
        await refresh(conn, sorted(touched), program, await latest(conn, program), now)
        for table, last_id in moved.items():
            await conn.execute("UPDATE analytics_marks SET last_id = $2 WHERE name = $1", table, last_id)
    return len(touched)


async def source_heads(conn: Connection) -> dict[str, int]:
    """The newest id of each source table: a rebuild that started here covers everything up to them."""
    row = await conn.fetchrow("SELECT " + ", ".join(f"(SELECT coalesce(max(id), 0) FROM {t}) AS {t}" for t in SOURCES))
    assert row is not None
    return {t: row[t] for t in SOURCES}


async def advance_marks(conn: Connection, heads: dict[str, int]) -> None:
    """After a full rebuild: the incremental refresh need not read what the rebuild already saw."""
    await conn.execute(
        """
        INSERT INTO analytics_marks (name, last_id) SELECT * FROM unnest($1::text[], $2::bigint[])
        ON CONFLICT (name) DO UPDATE SET last_id = greatest(analytics_marks.last_id, EXCLUDED.last_id)
        """,
        list(heads),
        list(heads.values()),
    )
