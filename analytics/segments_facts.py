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

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

import asyncpg

from analytics.lifecycle import COUNTED, STAGE_SQL, Thresholds, latest
from kartka.db import Connection, Pool
from wallet.program import Program

logger = logging.getLogger(__name__)

#: Tables whose new rows mean their customer's facts moved, read by identity column.
SOURCES: Final = ("orders", "refunds", "ledger_entries", "registrations", "tier_changes")

#: The facts of a set of customers, set-based: each source table is read once for the whole set and
#: grouped by customer (no per-customer subqueries). ``{customers}`` selects the set over a customer id
#: column: a list of ids ($1) for the touched customers, an id range ($1 to $8, inclusive) for the daily
#: rebuild's batches, which the orders' and lots' (customer, time) indexes then read as one range each.
_REFRESH: Final = f"""
    WITH batch AS (
        SELECT cu.id, cu.created_at, cu.source, cu.home_store, cu.birthday
          FROM customers cu
         WHERE {{customers:cu.id}} AND cu.merged_into IS NULL AND cu.closed_at IS NULL
    ), gone AS (
        DELETE FROM customer_facts d USING customers cu
         WHERE {{customers:cu.id}} AND (cu.merged_into IS NOT NULL OR cu.closed_at IS NOT NULL)
           AND d.customer_id = cu.id
    ), bought AS (
        SELECT o.customer_id,
               coalesce(sum(o.paid - o.refunded_amount) FILTER (WHERE o.purchased_at > $3), 0) AS spend_365d,
               count(*) FILTER (WHERE o.purchased_at > $3 AND {COUNTED})::integer AS orders_365d,
               coalesce(sum(o.paid - o.refunded_amount), 0) AS revenue_total,
               count(*) FILTER (WHERE {COUNTED})::integer AS orders_total,
               min(o.purchased_at) FILTER (WHERE {COUNTED}) AS first_purchase_at,
               max(o.purchased_at) FILTER (WHERE {COUNTED}) AS last_purchase_at
          FROM orders o
         WHERE {{customers:o.customer_id}} AND o.purchased_at <= $2
         GROUP BY o.customer_id
    ), points AS (
        SELECT customer_id, sum(remaining) AS available FROM lots
         WHERE {{customers:customer_id}} AND remaining > 0 AND available_at <= $2 AND expires_at > $2
         GROUP BY customer_id
    ), wallet AS (
        SELECT DISTINCT c.customer_id
          FROM cards c JOIN passes ps ON ps.card_number = c.number AND ps.retired_at IS NULL
         WHERE {{customers:c.customer_id}} AND c.status = 'active'
           AND (ps.google_linked_at IS NOT NULL
                OR EXISTS (SELECT FROM pass_registrations r WHERE r.serial_number = ps.serial_number))
    ), computed AS (
        SELECT b.id AS customer_id, coalesce(a.tier_code, $4) AS tier_code, b.created_at AS registered_at,
               b.source, b.home_store,
               (extract(month FROM b.birthday) * 100 + extract(day FROM b.birthday))::smallint AS birthday_md,
               coalesce(p.marketing, false) AS consent_marketing,
               w.customer_id IS NOT NULL AS has_wallet_pass,
               coalesce(l.available, 0) - coalesce(a.debt, 0) AS balance,
               coalesce(o.spend_365d, 0) AS spend_365d, coalesce(o.orders_365d, 0) AS orders_365d,
               coalesce(o.revenue_total, 0) AS revenue_total, coalesce(o.orders_total, 0) AS orders_total,
               o.first_purchase_at, o.last_purchase_at
          FROM batch b
          LEFT JOIN accounts a ON a.customer_id = b.id
          LEFT JOIN notification_preferences p ON p.customer_id = b.id
          LEFT JOIN points l ON l.customer_id = b.id
          LEFT JOIN bought o ON o.customer_id = b.id
          LEFT JOIN wallet w ON w.customer_id = b.id
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


def _refresh_sql(by_range: bool) -> str:
    out = _REFRESH
    for column in ("cu.id", "o.customer_id", "customer_id", "c.customer_id"):
        condition = f"{column} BETWEEN $1::uuid AND $8::uuid" if by_range else f"{column} = ANY($1::uuid[])"
        out = out.replace(f"{{customers:{column}}}", condition)
    return out


_REFRESH_IDS: Final = _refresh_sql(by_range=False)
_REFRESH_RANGE: Final = _refresh_sql(by_range=True)


async def no_jit(conn: Connection) -> None:
    """For the rest of the transaction: these statements run once over many rows, and compiling them
    (PostgreSQL's JIT) cost more than it saved — 5 of 12 s for a batch of 20,000 customers."""
    await conn.execute("SET LOCAL jit = off")


async def refresh(
    conn: Connection,
    customer_ids: Sequence[UUID],
    program: Program,
    thresholds: Thresholds,
    now: datetime,
    *,
    through: UUID | None = None,
) -> None:
    """Recompute these customers' facts (RFM scores stay until the daily job: they rank everyone). With
    ``through``: every customer from ``customer_ids[0]`` to ``through`` inclusive (a batch of the daily
    rebuild, in id order), read as one id range."""
    if not customer_ids:
        return
    t50, t90 = thresholds.cutoffs(now)
    await no_jit(conn)
    common = (
        now,
        now - timedelta(days=program.rfm.window_days),
        program.base_tier.code,
        now - timedelta(days=program.lifecycle.new_days),
        t50,
        t90,
    )
    if through is None:
        await conn.execute(_REFRESH_IDS, list(customer_ids), *common)
    else:
        await conn.execute(_REFRESH_RANGE, customer_ids[0], *common, through)


async def refresh_touched(
    pool: Pool, program: Program, now: datetime, *, limit: int = 20_000, lock_wait_ms: int = 1_000
) -> int:
    """Refresh the customers touched since the last round; returns how many. Workers take turns (the
    marks are locked for the round); a round reads at most ``limit`` new rows of each source table.

    While the daily job scores (it holds the facts table for that one transaction), this waits
    ``lock_wait_ms`` for it and then leaves its customers to the next round (the marks stay): the worker's
    job loop is not held up by the daily job."""
    try:
        return await _refresh_touched(pool, program, now, limit, lock_wait_ms)
    except asyncpg.LockNotAvailableError:
        logger.info("analytics: the daily scoring holds the facts; touched customers wait for the next round")
        return 0


async def _refresh_touched(pool: Pool, program: Program, now: datetime, limit: int, lock_wait_ms: int) -> int:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = {int(lock_wait_ms)}")
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
