"""The rollups behind the KPI report, kept by the worker (docs/analytics.md, "Freshness").

Two kinds:

- **Receipt days** (``kpi_buyer_days``, ``kpi_anonymous_days``) are recomputed a whole day at a time
  from the orders, refunds and receipts of that local day, so a figure that depends on other days (a
  customer's first purchase ever, a refund that empties a receipt, a merge of two accounts) is right after
  the recompute whatever happened in between. A change marks the days it can affect dirty
  (``kpi_dirty_days``): the day of the purchase and every later day of that customer's purchases (their
  first purchase may have moved); the recompute deletes its day's mark in its own transaction, so a crash
  leaves the day dirty and the next round does it again.
- **Period counts** (``kpi_buyer_counts``): what is counted distinct over a period (buyers, buyers with
  two or more receipts) does not add up over days, so it is kept per local day, week and month, for the
  chain, each store, each source and each store and source. Recomputing a receipt day marks its day, week
  and month (``kpi_dirty_periods``); the round then recounts each marked period from ``kpi_buyer_days``,
  deleting the mark in the same transaction.
- **Points hours** (``kpi_points_hours``) add each ledger entry once: the ledger is append-only, and an
  entry is added in the transaction that moves the feed's mark past it, with its UTC month's total
  (``kpi_points_months``), from which the liability at any moment is a few dozen rows.
- **Wallet days** (``kpi_wallet_days``): active cards and installed passes at the end of each local day,
  rebuilt whole from the install history by the first round of every hour.

Changes are found by following each table by id (``kpi_feeds``). Ids are handed out before a
transaction commits, so a round first waits until every transaction that may hold an id up to the highest
one it read has finished (no session of this database holds an xid older than that moment's ``xmax``);
ids are then final and each is read exactly once. Several workers may run this at once: a feed's row
and a dirty day are claimed with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, timedelta
from typing import Final

import msgspec

from analytics.kpis import ACTIVATION_DAYS
from kartka.db import Connection, Pool

logger = logging.getLogger(__name__)

#: Ids read per transaction when a feed catches up (a back-fill, a first start on old data).
FEED_CHUNK: Final = 50_000
#: How long a round waits for transactions in flight to finish before leaving the feeds to the next one.
SETTLE_SECONDS: Final = 10.0

#: The application name of transactions that write none of the followed tables (the daily segment
#: recompute's, minutes long at a million customers): the settling wait does not wait for them.
NOT_FOLLOWED: Final = "kartka-analytics-daily"

#: Local-day bounds of the days in [$1, $2) in the zone $3, as SQL.
_LO: Final = "($1::date::timestamp AT TIME ZONE $3)"
_HI: Final = "($2::date::timestamp AT TIME ZONE $3)"

#: An order's value net of its refunds: the check as rung up (after discounts, points being a means of
#: payment), less the money and the points given back. An order counts when this is above zero.
_NET = """({o}.subtotal - {o}.discount
           - coalesce((SELECT sum(r.amount + r.points_returned) FROM refunds r WHERE r.order_pk = {o}.id), 0))"""

RECOMPUTE_IDENTIFIED: Final = f"""
WITH ord AS (
    SELECT o.id, o.customer_id, coalesce(o.store, '') AS store, o.channel AS source, o.purchased_at,
           (o.purchased_at AT TIME ZONE $3)::date AS day, {_NET.format(o="o")} AS net
      FROM orders o
     WHERE o.purchased_at >= {_LO} AND o.purchased_at < {_HI}
), counted AS (
    -- The customer's first counting purchase ever: no earlier one that counts (ties broken by id).
    SELECT ord.*, NOT EXISTS (
               SELECT 1 FROM orders e
                WHERE e.customer_id = ord.customer_id AND e.purchased_at <= ord.purchased_at
                  AND (e.purchased_at < ord.purchased_at OR e.id < ord.id)
                  AND {_NET.format(o="e")} > 0
           ) AS first
      FROM ord WHERE net > 0
)
INSERT INTO kpi_buyer_days (day, store, source, customer_id, receipts, revenue, first_receipts)
SELECT day, store, source, customer_id, count(*), sum(net), count(*) FILTER (WHERE first)
  FROM counted GROUP BY day, store, source, customer_id
"""

#: The same for a long range at once (a back-fill): one pass over every order, each customer's purchases
#: numbered in time, instead of a look-up of earlier purchases per order.
RECOMPUTE_IDENTIFIED_BULK: Final = f"""
WITH refunded AS (
    SELECT order_pk, sum(amount + points_returned) AS back FROM refunds GROUP BY order_pk
), counted AS (
    SELECT o.customer_id, coalesce(o.store, '') AS store, o.channel AS source, o.purchased_at,
           o.subtotal - o.discount - coalesce(r.back, 0) AS net,
           row_number() OVER (PARTITION BY o.customer_id ORDER BY o.purchased_at, o.id) AS n
      FROM orders o LEFT JOIN refunded r ON r.order_pk = o.id
     WHERE o.subtotal - o.discount - coalesce(r.back, 0) > 0 AND o.purchased_at < {_HI}
)
INSERT INTO kpi_buyer_days (day, store, source, customer_id, receipts, revenue, first_receipts)
SELECT (purchased_at AT TIME ZONE $3)::date, store, source, customer_id, count(*), sum(net),
       count(*) FILTER (WHERE n = 1)
  FROM counted WHERE purchased_at >= {_LO}
 GROUP BY 1, 2, 3, 4
"""

#: From how many days on a recompute takes the bulk path.
BULK_DAYS: Final = 31

RECOMPUTE_ANONYMOUS: Final = f"""
INSERT INTO kpi_anonymous_days (day, store, source, receipts, revenue)
SELECT (r.purchased_at AT TIME ZONE $3)::date, coalesce(r.store, ''), r.channel, count(*),
       sum(r.total - r.refunded_amount)
  FROM receipts r
 WHERE r.purchased_at >= {_LO} AND r.purchased_at < {_HI} AND r.total > r.refunded_amount
   -- The till also reported, as a receipt, a purchase made with a card: the order stands for it.
   AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.channel = r.channel AND coalesce(o.store, '') = coalesce(r.store, '')
                                            AND o.order_id = r.receipt_id)
 GROUP BY 1, 2, 3
"""


#: Cards issued on the days (a new customer's card, by the registration that made it) and whether their
#: account (the one a no-name card was merged into, after a merge) bought within 30 days of the issue.
RECOMPUTE_CARDS: Final = f"""
INSERT INTO kpi_card_days (day, store, source, issued, activated)
SELECT (r.created_at AT TIME ZONE $3)::date, coalesce(r.store, ''), r.source, count(*),
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM orders o
            WHERE o.customer_id = coalesce(cu.merged_into, cu.id)
              AND o.purchased_at >= r.created_at AND o.purchased_at < r.created_at + interval '{ACTIVATION_DAYS} days'
              AND {_NET.format(o="o")} > 0
       ))
  FROM registrations r JOIN customers cu ON cu.id = r.customer_id
 WHERE r.outcome = 'created' AND r.created_at >= {_LO} AND r.created_at < {_HI}
 GROUP BY 1, 2, 3
"""


#: Marks the days, weeks and months that meet the local days [$1, $2): their counts are to be redone.
_MARK_PERIODS: Final = """
INSERT INTO kpi_dirty_periods (grain, period_start)
SELECT DISTINCT g.grain, date_trunc(g.grain, d)::date
  FROM generate_series($1::date::timestamp, $2::date::timestamp - interval '1 day', interval '1 day') d
 CROSS JOIN (VALUES ('day'), ('week'), ('month')) g (grain)
ON CONFLICT (grain, period_start) DO UPDATE SET marked_at = now()
"""

#: A period's counts ($1 grain, local days [$2, $3)), for every scope the report asks: the chain ('*', '*'),
#: each store, each source, each store and source. Buyers are distinct customers in the scope; repeat
#: buyers those with two or more receipts in it.
RECOUNT_PERIOD: Final = """
INSERT INTO kpi_buyer_counts (grain, period_start, store, source, receipts, revenue, first_receipts, buyers,
                              repeat_buyers)
SELECT $1, $2, store, source, sum(receipts), sum(revenue), sum(firsts), count(*),
       count(*) FILTER (WHERE receipts >= 2)
  FROM (SELECT CASE WHEN grouping(t.store) = 1 THEN '*' ELSE t.store END AS store,
               CASE WHEN grouping(t.source) = 1 THEN '*' ELSE t.source END AS source,
               sum(t.receipts) AS receipts, sum(t.revenue) AS revenue, sum(t.first_receipts) AS firsts
          FROM kpi_buyer_days t
         WHERE t.day >= $2 AND t.day < $3
         GROUP BY GROUPING SETS ((t.customer_id, t.store, t.source), (t.customer_id, t.store),
                                 (t.customer_id, t.source), (t.customer_id))) c
 GROUP BY store, source
"""


def period_end(grain: str, start: date) -> date:
    """The exclusive end of the day, week (from Monday) or month that begins on ``start``."""
    if grain == "day":
        return start + timedelta(days=1)
    if grain == "week":
        return start + timedelta(days=7)
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)


async def recount(conn: Connection, grain: str, start: date) -> None:
    """Redo one period's counts from the receipt days (in the caller's transaction)."""
    await conn.execute("SET LOCAL jit = off")
    await conn.execute("SET LOCAL work_mem = '64MB'")  # a month's buyers hashed in memory
    await conn.execute("DELETE FROM kpi_buyer_counts WHERE grain = $1 AND period_start = $2", grain, start)
    await conn.execute(RECOUNT_PERIOD, grain, start, period_end(grain, start))


async def recount_dirty_periods(pool: Pool) -> int:
    """Recount the marked periods one at a time, each in its own transaction with its mark; how many."""
    periods = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            found = await conn.fetchrow(
                "SELECT grain, period_start FROM kpi_dirty_periods ORDER BY period_start DESC, grain"
                " FOR UPDATE SKIP LOCKED LIMIT 1"
            )
            if found is None:
                return periods
            await recount(conn, found["grain"], found["period_start"])
            await conn.execute(
                "DELETE FROM kpi_dirty_periods WHERE grain = $1 AND period_start = $2",
                found["grain"],
                found["period_start"],
            )
        periods += 1


async def recompute(conn: Connection, first: date, end: date, timezone: str) -> None:
    """Rebuild the rollups of the local days [first, end) from the orders, receipts and registrations,
    and mark their days, weeks and months for a recount (:func:`recount_dirty_periods`)."""
    await conn.execute("DELETE FROM kpi_buyer_days WHERE day >= $1 AND day < $2", first, end)
    await conn.execute("DELETE FROM kpi_anonymous_days WHERE day >= $1 AND day < $2", first, end)
    await conn.execute("DELETE FROM kpi_card_days WHERE day >= $1 AND day < $2", first, end)
    await conn.execute(RECOMPUTE_CARDS, first, end, timezone)
    bulk = (end - first).days >= BULK_DAYS
    await conn.execute(RECOMPUTE_IDENTIFIED_BULK if bulk else RECOMPUTE_IDENTIFIED, first, end, timezone)
    await conn.execute(RECOMPUTE_ANONYMOUS, first, end, timezone)
    await conn.execute(_MARK_PERIODS, first, end)


_MARK = """
INSERT INTO kpi_dirty_days (day)
SELECT DISTINCT day FROM ({days}) d WHERE day IS NOT NULL
ON CONFLICT (day) DO UPDATE SET marked_at = now()
"""

#: A customer's purchases from ``since`` on: their days change when one of them, or an earlier one, does;
#: and the issue days of their cards that ``since`` may have activated (issued up to 30 days before).
_CUSTOMER_DAYS = f"""
    SELECT (o.purchased_at AT TIME ZONE $3)::date AS day
      FROM changed c JOIN orders o ON o.customer_id = c.customer_id AND o.purchased_at >= c.since
    UNION ALL
    SELECT (r.created_at AT TIME ZONE $3)::date
      FROM changed c JOIN registrations r ON r.customer_id = c.customer_id
     WHERE r.outcome = 'created' AND r.created_at > c.since - interval '{ACTIVATION_DAYS + 1} days'
"""

#: Per feed: the table and sequence it follows, and the days a range ($1, $2] of its ids makes dirty.
FEEDS: Final[dict[str, tuple[str, str]]] = {
    "orders": (
        "orders",
        f"""
        WITH changed AS (SELECT customer_id, min(purchased_at) AS since FROM orders
                          WHERE id > $1 AND id <= $2 GROUP BY customer_id)
        {_CUSTOMER_DAYS}
        UNION ALL  -- a receipt the order supersedes (the same id in the same store) may sit on another day
        SELECT (r.purchased_at AT TIME ZONE $3)::date FROM orders o
          JOIN receipts r ON r.channel = o.channel AND coalesce(r.store, '') = coalesce(o.store, '')
                         AND r.receipt_id = o.order_id
         WHERE o.id > $1 AND o.id <= $2
        """,
    ),
    "refunds": (
        "refunds",
        f"""
        WITH changed AS (SELECT o.customer_id, min(o.purchased_at) AS since
                           FROM refunds r JOIN orders o ON o.id = r.order_pk
                          WHERE r.id > $1 AND r.id <= $2 GROUP BY o.customer_id)
        {_CUSTOMER_DAYS}
        """,
    ),
    # A card issued: its issue day. A no-name card's account merged into a phone's: every purchase of the
    # kept account may change (which one was first; they all belong to it now), and so may the no-name
    # card's activation.
    "registrations": (
        "registrations",
        f"""
        WITH changed AS (SELECT DISTINCT customer_id, '-infinity'::timestamptz AS since FROM registrations
                          WHERE id > $1 AND id <= $2 AND outcome = 'merged')
        {_CUSTOMER_DAYS}
        UNION ALL
        SELECT (created_at AT TIME ZONE $3)::date FROM registrations
         WHERE id > $1 AND id <= $2 AND outcome = 'created'
        UNION ALL
        SELECT (r.created_at AT TIME ZONE $3)::date
          FROM registrations m JOIN cards k ON k.number = m.card_number
          JOIN registrations r ON r.customer_id = k.customer_id AND r.outcome = 'created'
         WHERE m.id > $1 AND m.id <= $2 AND m.outcome = 'merged'
        """,
    ),
    "receipts": (
        "receipts",
        "SELECT (purchased_at AT TIME ZONE $3)::date AS day FROM receipts WHERE id > $1 AND id <= $2",
    ),
    "receipt_refunds": (
        "receipt_refunds",
        """
        SELECT (r.purchased_at AT TIME ZONE $3)::date AS day
          FROM receipt_refunds f JOIN receipts r ON r.id = f.receipt_pk WHERE f.id > $1 AND f.id <= $2
        """,
    ),
}

#: The ledger entries ($1, $2] added to their hours (UTC), by the store and channel of their order.
ADD_POINTS: Final = """
INSERT INTO kpi_points_hours AS h
       (hour, store, source, accrued, spent, granted, adjusted, taken_back, returned, expired)
SELECT date_trunc('hour', e.occurred_at, 'UTC'), coalesce(o.store, ''), coalesce(o.channel, ''),
       coalesce(sum(e.points) FILTER (WHERE e.kind = 'accrual'), 0),
       coalesce(-sum(e.points) FILTER (WHERE e.kind = 'redemption'), 0),
       coalesce(sum(e.points) FILTER (WHERE e.kind = 'grant'), 0),
       coalesce(sum(e.points) FILTER (WHERE e.kind = 'adjustment'), 0),
       coalesce(-sum(e.points) FILTER (WHERE e.kind = 'refund_take_back'), 0),
       coalesce(sum(e.points) FILTER (WHERE e.kind = 'refund_return'), 0),
       coalesce(-sum(e.points) FILTER (WHERE e.kind = 'expiry'), 0)
  FROM ledger_entries e LEFT JOIN orders o ON o.id = e.order_pk
 WHERE e.id > $1 AND e.id <= $2
 GROUP BY 1, 2, 3
ON CONFLICT (hour, store, source) DO UPDATE SET
    accrued = h.accrued + excluded.accrued, spent = h.spent + excluded.spent,
    granted = h.granted + excluded.granted, adjusted = h.adjusted + excluded.adjusted,
    taken_back = h.taken_back + excluded.taken_back, returned = h.returned + excluded.returned,
    expired = h.expired + excluded.expired
"""

#: The same entries ($1, $2] added to their UTC month's total (what the liability starts from).
ADD_POINTS_MONTHS: Final = """
INSERT INTO kpi_points_months AS m (month, net)
SELECT date_trunc('month', e.occurred_at, 'UTC'), sum(e.points) FROM ledger_entries e
 WHERE e.id > $1 AND e.id <= $2
 GROUP BY 1
ON CONFLICT (month) DO UPDATE SET net = m.net + excluded.net
"""

_TABLES: Final = {**{feed: table for feed, (table, _) in FEEDS.items()}, "ledger": "ledger_entries"}


class RollupReport(msgspec.Struct):
    ids_read: int = 0
    days_recomputed: int = 0
    periods_recounted: int = 0
    settled: bool = True
    """False when transactions in flight did not finish in time: the feeds wait for the next round."""


async def _highs(conn: Connection) -> dict[str, int]:
    """The last id handed out per followed table (committed or not)."""
    highs: dict[str, int] = {}
    for feed, table in _TABLES.items():
        sequence = await conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table)
        highs[feed] = await conn.fetchval(
            f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {sequence}"  # a catalog name
        )
    return highs


async def _settle(conn: Connection, deadline: float) -> bool:
    """Wait until every transaction of this database that had written when we looked has finished: ids
    read before are then final. (Only this database's sessions count: ``pg_snapshot_xmin`` would also wait
    for any long transaction elsewhere in the cluster; nor do those named :data:`NOT_FOLLOWED`.)"""
    horizon = await conn.fetchval("SELECT xid(pg_snapshot_xmax(pg_current_snapshot()))")
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        busy = await conn.fetchval(
            """
            SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                            WHERE datname = current_database() AND backend_xid IS NOT NULL
                              AND age(backend_xid) > age($1::xid) AND application_name IS DISTINCT FROM $2)
            """,
            horizon,
            NOT_FOLLOWED,
        )
        if not busy:
            return True
        if loop.time() >= end:
            return False
        await asyncio.sleep(0.05)


async def follow(
    pool: Pool, timezone: str, *, settle_seconds: float = SETTLE_SECONDS, chunk: int = FEED_CHUNK
) -> RollupReport:
    """Read what the followed tables gained since the last round: mark the days it changes, add the ledger."""
    report = RollupReport()
    async with pool.acquire() as conn:
        highs = await _highs(conn)
        if not await _settle(conn, settle_seconds):
            report.settled = False
            return report
    for feed, high in highs.items():
        while True:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("INSERT INTO kpi_feeds (feed) VALUES ($1) ON CONFLICT DO NOTHING", feed)
                done = await conn.fetchval("SELECT done FROM kpi_feeds WHERE feed = $1 FOR UPDATE SKIP LOCKED", feed)
                if done is None or done >= high:  # another worker has it, or nothing new
                    break
                upto = min(high, done + chunk)
                if feed == "ledger":
                    await conn.execute(ADD_POINTS, done, upto)
                    await conn.execute(ADD_POINTS_MONTHS, done, upto)
                else:
                    await conn.execute(_MARK.format(days=FEEDS[feed][1]), done, upto, timezone)
                await conn.execute("UPDATE kpi_feeds SET done = $2, updated_at = now() WHERE feed = $1", feed, upto)
                report.ids_read += upto - done
    return report


async def recompute_dirty(pool: Pool, timezone: str) -> int:
    """Recompute the dirty days one at a time, each in its own transaction with its mark; how many."""
    days = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            day = await conn.fetchval("SELECT day FROM kpi_dirty_days ORDER BY day FOR UPDATE SKIP LOCKED LIMIT 1")
            if day is None:
                return days
            await recompute(conn, day, day + timedelta(days=1), timezone)
            await conn.execute("DELETE FROM kpi_dirty_days WHERE day = $1", day)
        days += 1


async def _sweep_activation(pool: Pool, timezone: str) -> None:
    """Once a local day, the card days of the last 31 issue days again: a no-name card merged after its
    issue day counts the kept account's later purchases, which no feed ties back to that day. Only the
    card days: recomputing those whole days' receipts too took over a minute a day at 10 M receipts."""
    async with pool.acquire() as conn, conn.transaction():
        today = await conn.fetchval("SELECT (now() AT TIME ZONE $1)::date", timezone)
        await conn.execute("INSERT INTO kpi_feeds (feed) VALUES ('activation_sweep') ON CONFLICT DO NOTHING")
        due = await conn.fetchval(
            "UPDATE kpi_feeds SET done = $1, updated_at = now() WHERE feed = 'activation_sweep' AND done < $1 "
            "RETURNING 1",
            today.toordinal(),
        )
        if due:
            first, end = today - timedelta(days=ACTIVATION_DAYS + 1), today + timedelta(days=1)
            await conn.execute("DELETE FROM kpi_card_days WHERE day >= $1 AND day < $2", first, end)
            await conn.execute(RECOMPUTE_CARDS, first, end, timezone)


#: Wallet adoption at the end of every local day ($1: the program's zone), from the install history.
#: A card is active from its issue until it was blocked, replaced or closed (``status_changed_at`` of a
#: card that is not active; a card unblocked again counts as active since its issue). A card's pass is on
#: a phone while an Apple registration of it is live (``created_at`` until ``removed_at``) or since a
#: Google save until the next Google event of it (a delete), each within the pass's own life (until a link
#: rotation retired it). A card's installed spans are merged (two phones, or Apple and Google, count one
#: card) and clipped to its active span; each span start adds one on its local day, each end takes one
#: away; the running sums are the day's figures.
WALLET_DAYS: Final = """
WITH card_life AS (
    SELECT number, issued_at AS a0,
           CASE WHEN status = 'active' THEN 'infinity'::timestamptz ELSE coalesce(status_changed_at, issued_at) END
               AS a1
      FROM cards
), google AS (
    SELECT g.serial_number, g.event_type, g.received_at AS s,
           lead(g.received_at) OVER (PARTITION BY g.serial_number ORDER BY g.received_at, g.id) AS e
      FROM google_wallet_events g WHERE g.serial_number IS NOT NULL
), installs AS (
    SELECT p.card_number, greatest(r.created_at, p.created_at) AS s,
           least(coalesce(r.removed_at, 'infinity'), coalesce(p.retired_at, 'infinity')) AS e
      FROM pass_registrations r JOIN passes p ON p.serial_number = r.serial_number
    UNION ALL
    SELECT p.card_number, greatest(g.s, p.created_at),
           least(coalesce(g.e, 'infinity'), coalesce(p.retired_at, 'infinity'))
      FROM google g JOIN passes p ON p.serial_number = g.serial_number
     WHERE g.event_type = 'save'
), clipped AS (
    SELECT i.card_number, greatest(i.s, c.a0) AS s, least(i.e, c.a1) AS e
      FROM installs i JOIN card_life c ON c.number = i.card_number
     WHERE greatest(i.s, c.a0) < least(i.e, c.a1)
), ordered AS (
    SELECT card_number, s, e,
           max(e) OVER (PARTITION BY card_number ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
               AS reach
      FROM clipped
), islands AS (
    SELECT card_number, s, e,
           count(*) FILTER (WHERE reach IS NULL OR reach < s) OVER (PARTITION BY card_number ORDER BY s, e) AS island
      FROM ordered
), merged AS (
    SELECT min(s) AS s, max(e) AS e FROM islands GROUP BY card_number, island
), deltas AS (
    SELECT (s AT TIME ZONE $1)::date AS day, 0 AS active, 1 AS installed FROM merged
    UNION ALL
    SELECT (e AT TIME ZONE $1)::date, 0, -1 FROM merged WHERE e < 'infinity'
    UNION ALL
    SELECT (a0 AT TIME ZONE $1)::date, 1, 0 FROM card_life WHERE a0 < a1
    UNION ALL
    SELECT (a1 AT TIME ZONE $1)::date, -1, 0 FROM card_life WHERE a0 < a1 AND a1 < 'infinity'
), per_day AS (
    SELECT day, sum(active) AS active, sum(installed) AS installed FROM deltas GROUP BY day
)
INSERT INTO kpi_wallet_days (day, active_cards, installed)
SELECT day, sum(active) OVER w, sum(installed) OVER w FROM per_day WINDOW w AS (ORDER BY day)
"""


#: How often a round rebuilds the wallet days: the rebuild reads every card (18 s at a million cards on
#: the shared development machine, most of it reading the table), too much for every round.
WALLET_EVERY: Final = timedelta(hours=1)


async def count_wallet_adoption(pool: Pool, timezone: str, *, every: timedelta | None = None) -> None:
    """Rebuild ``kpi_wallet_days`` (one statement over the cards and the install history); with ``every``,
    only if the last rebuild is older than that (the worker's rounds)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO kpi_feeds (feed, updated_at) VALUES ('wallet', '-infinity') ON CONFLICT DO NOTHING"
        )
        due = await conn.fetchval(
            "UPDATE kpi_feeds SET updated_at = now() WHERE feed = 'wallet'"
            " AND ($1::interval IS NULL OR updated_at < now() - $1::interval) RETURNING 1",
            every,
        )
        if not due:
            return
        await conn.execute("SET LOCAL jit = off")
        await conn.execute("SET LOCAL work_mem = '64MB'")
        await conn.execute("DELETE FROM kpi_wallet_days")
        await conn.execute(WALLET_DAYS, timezone)


async def run(pool: Pool, timezone: str) -> RollupReport:
    """One round: follow the feeds, then recompute the days they made dirty."""
    report = await follow(pool, timezone)
    await _sweep_activation(pool, timezone)
    report.days_recomputed = await recompute_dirty(pool, timezone)
    report.periods_recounted = await recount_dirty_periods(pool)
    await count_wallet_adoption(pool, timezone, every=WALLET_EVERY)
    if report.settled:
        await pool.execute(
            "INSERT INTO kpi_feeds (feed) VALUES ('round') ON CONFLICT (feed) DO UPDATE SET updated_at = now()"
        )
    if report.ids_read or report.days_recomputed:
        logger.info("kpi rollups: %d ids read, %d days recomputed", report.ids_read, report.days_recomputed)
    return report


async def rebuild(pool: Pool, timezone: str, first: date, end: date) -> None:
    """Recompute [first, end) at once and bring the receipt feeds up to now (a back-fill loaded by SQL,
    the bench). The feeds are moved first, under the same settling rule, so nothing written meanwhile is
    missed: it is either read by the next round or already in the recomputed days. The ledger feed is
    left to follow as usual (it adds, so it must read every entry once)."""
    await skip_receipt_feeds(pool)
    async with pool.acquire() as conn, conn.transaction():
        await recompute(conn, first, end, timezone)
    await recount_dirty_periods(pool)


async def skip_receipt_feeds(pool: Pool) -> None:
    async with pool.acquire() as conn:
        highs = await _highs(conn)
        await _settle(conn, 3600)
        for feed, high in highs.items():
            if feed == "ledger":
                continue
            await conn.execute(
                """
                INSERT INTO kpi_feeds (feed, done) VALUES ($1, $2)
                ON CONFLICT (feed) DO UPDATE SET done = greatest(kpi_feeds.done, $2), updated_at = now()
                """,
                feed,
                high,
            )
