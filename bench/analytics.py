"""Benchmark of the analytics at scale: the KPI report, segment previews, the daily RFM / lifecycle
recompute, each against a bare ``count(*)`` of the same rows from the same run.

    ./scripts/bench-analytics                  100,000 customers, 1,000,000 receipts (a few minutes)
    ./scripts/bench-analytics --full           1,000,000 customers, 10,000,000 receipts (the issue's size)
    ./scripts/bench-analytics --full --seed-only, then --reuse URL --drop   (seed once, measure later)

It makes a fresh, uniquely named database (dropped afterwards), seeds ``--customers`` customers with
their cards, registrations, accounts and consent, and ``--receipts`` receipts over the last year
(``--identified`` of them orders with a card, each with its accrual in the ledger, 2 % of them partly
refunded; the rest receipts without a card) with set-based SQL inside PostgreSQL (``generate_series``;
plain indexes dropped for the load and built after it), then measures:

- the worker's share: every rollup built from scratch (a back-fill), one day recomputed, one month
  recounted;
- ``GET /v1/admin/reports/kpis`` for the last full month, whole chain and by day, week, store and source,
  and for 30 days that are no whole period (the service the handler calls, best of three), against a
  bare ``count(*)`` of the same month's orders and receipts;
- the daily recompute (every customer's facts, T50 / T90, RFM, lifecycle, segment sizes) against a bare
  ``count(*)`` of the orders it reads, with the worker's job loop (KPI rollups, touched customers) run
  beside it; segment previews against a ``count(*)`` of the facts they scan.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from analytics import kpis_rollup, segments
from analytics.reports import KpiService
from analytics.segments import Rule, SegmentInput
from analytics.segments_daily import run_daily
from analytics.segments_facts import refresh_touched
from bench.harness import _execute, admin_url, fresh_database, save, with_database
from boot.schema import SCHEMA
from kartka.db import Pool, create_pool
from kartka.settings import Environment, Secret, load_settings
from wallet.program import DEFAULT_PROGRAM

ZONE = DEFAULT_PROGRAM.timezone
#: Segment previews timed (``POST /v1/admin/segments/preview``'s work: the size and 20 members).
PREVIEWS: dict[str, dict[str, Any]] = {
    "everyone": {},
    "champions_and_loyal_consenting": {"rfm": ["champions", "loyal"], "consent_marketing": True},
    "big_spenders_recent": {"spend_365d": {"min": 50_000}, "last_purchase": {"days_ago_max": 30}},
    "churn_risk_gold_store_3": {"lifecycle": ["churn_risk", "churned"], "tiers": ["gold"], "home_stores": ["store-3"]},
    "not_gold_one_purchase": {"lifecycle": ["one_purchase"], "none_of": ["gold"]},
}
#: The tables the seed fills (their plain indexes are dropped for the load and built after it).
_SEEDED = (
    "customers",
    "cards",
    "registrations",
    "accounts",
    "notification_preferences",
    "orders",
    "ledger_entries",
    "refunds",
    "receipts",
)
STORES = 12


# Deterministic ids: customer i is md5(i)::uuid with card ean13('2' + i), so orders can name both
# without a join. The check digit is the one ean13_valid() (wallet's migration) checks.
def _ean_sql() -> str:
    """``pg_temp.ean(i)``: '2' and i in 11 digits, with its check digit, as arithmetic (SQL functions
    with subqueries are not inlined, and 10 M calls of one would take most of the seeding)."""
    weighted = " + ".join(f"{3 if j % 2 == 0 else 1} * (i / {10**j} % 10)" for j in range(11))
    return f"""
    CREATE FUNCTION pg_temp.ean(i bigint) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT '2' || lpad(i::text, 11, '0') || ((10 - (2 + {weighted}) % 10) % 10)::text
    $$;
    """


_SEED = [
    (
        "customers",
        """
        INSERT INTO customers (id, phone, source, created_at, updated_at, home_store)
        SELECT md5(i::text)::uuid, '+37529' || lpad(i::text, 8, '0'),
               (ARRAY['pos', 'pos', 'pos', 'qr_poster', 'app', 'website', 'online_order'])[1 + i % 7],
               $2::timestamptz - (i % 365) * interval '1 day' - (i % 86400) * interval '1 second', now(),
               'store-' || (i % $3)
          FROM generate_series(1, $1) AS i
        """,
    ),
    (
        "cards",
        """
        INSERT INTO cards (number, customer_id, issued_at)
        SELECT pg_temp.ean(i), md5(i::text)::uuid, $2::timestamptz - (i % 365) * interval '1 day'
          FROM generate_series(1, $1) AS i
        """,
    ),
    (
        "registrations",
        """
        INSERT INTO registrations (customer_id, card_number, source, outcome, store, created_at)
        SELECT md5(i::text)::uuid, pg_temp.ean(i),
               (ARRAY['pos', 'pos', 'pos', 'qr_poster', 'app', 'website', 'online_order'])[1 + i % 7], 'created',
               'store-' || (i % $3), $2::timestamptz - (i % 365) * interval '1 day' - (i % 86400) * interval '1 second'
          FROM generate_series(1, $1) AS i
        """,
    ),
    (
        "accounts",
        """
        INSERT INTO accounts (customer_id, tier_code)
        SELECT md5(i::text)::uuid, CASE WHEN i % 10 = 0 THEN 'gold' ELSE 'standart' END
          FROM generate_series(1, $1) AS i
        """,
    ),
    (
        "notification_preferences",
        """
        INSERT INTO notification_preferences (customer_id, channels, marketing)
        SELECT md5(i::text)::uuid, '{sms}', true FROM generate_series(1, $1) AS i WHERE i % 5 < 2
        """,
    ),
    (
        "orders",
        # Buyers skewed towards the low customer numbers (some buy often, most seldom); a random time in
        # the year before $2; every 20th online.
        """
        INSERT INTO orders (order_id, customer_id, card_number, idempotency_key, request_hash, store, terminal,
                            purchased_at, subtotal, discount, redeemed_points, paid, accrued_points, tier_code,
                            rate_bp, engine, degraded, channel, engine_notified)
        SELECT 'b' || i, md5(c::text)::uuid, pg_temp.ean(c), 'k' || i, '\\x00'::bytea,
               CASE WHEN i % 20 = 0 THEN NULL ELSE 'store-' || (i % $3) END, 'till-1',
               $2::timestamptz - random() * interval '365 days', amount, 0, 0, amount, amount / 20, 'standart', 500,
               'embedded', false, CASE WHEN i % 20 = 0 THEN 'online' ELSE 'pos' END, true
          FROM (SELECT i, 1 + floor(power(random(), 2) * $4)::bigint AS c,
                       500 + floor(random() * 6000)::bigint AS amount
                  FROM generate_series(1, $1) AS i) g
        """,
    ),
    (
        "ledger",
        """
        INSERT INTO ledger_entries (customer_id, kind, points, order_pk, occurred_at)
        SELECT customer_id, 'accrual', accrued_points, id, purchased_at FROM orders WHERE accrued_points > 0
        """,
    ),
    (
        "refunds",
        """
        WITH r AS (
            INSERT INTO refunds (refund_id, order_pk, customer_id, idempotency_key, request_hash, amount,
                                 points_taken_back, points_returned, channel, store)
            SELECT 'f' || id, id, customer_id, 'f' || id, '\\x00'::bytea, paid / 2, 0, 0, channel, store
              FROM orders WHERE id % 50 = 0
            RETURNING order_pk, amount
        )
        UPDATE orders o SET refunded_amount = r.amount FROM r WHERE o.id = r.order_pk
        """,
    ),
    (
        "receipts",
        """
        INSERT INTO receipts (receipt_id, channel, store, terminal, purchased_at, total, imported)
        SELECT 'a' || i, 'pos', 'store-' || (i % $3), 'till-1', $2::timestamptz - random() * interval '365 days',
               300 + floor(random() * 3000)::bigint, true
          FROM generate_series(1, $1) AS i
        """,
    ),
]


async def seed(db: str, customers: int, identified: int, anonymous: int, now: datetime) -> dict[str, float]:
    conn = await asyncpg.connect(db, command_timeout=None)
    timings: dict[str, float] = {}
    try:
        await conn.execute("SET statement_timeout = 0")
        # Bulk load: foreign keys were checked by construction (the same deterministic ids on both sides).
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(_ean_sql())
        await conn.execute("SET maintenance_work_mem = '512MB'")
        # Indexes are built once after the load (what a bulk load does): kept up row by row, the random
        # customer ids of 7 M orders (and the customers' own uuid and name indexes) would cost most of the
        # seeding. Only indexes behind constraints (primary keys, unique constraints) stay.
        indexes = await conn.fetch(
            """
            SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
              FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
             WHERE t.relname = ANY($1::text[])
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
            """,
            list(_SEEDED),
        )
        for index in indexes:
            await conn.execute(f"DROP INDEX {index['name']}")
        # The card numbers' check digit (wallet's ean13_valid(), a SQL function with a subquery: ~80 µs a
        # row) is right by construction here; it is put back NOT VALID after the load.
        await conn.execute("ALTER TABLE cards DROP CONSTRAINT cards_number_check")
        counts = {
            "customers": customers,
            "cards": customers,
            "registrations": customers,
            "accounts": customers,
            "notification_preferences": customers,
            "orders": identified,
            "receipts": anonymous,
        }
        for name, sql in _SEED:
            started = time.perf_counter()
            if name in counts:
                args: list[Any] = [counts[name], now, STORES]
                if name == "orders":
                    args.append(customers)
                await conn.execute(sql, *args[: max(int(n) for n in re.findall(r"\$(\d)", sql))])
            else:
                await conn.execute(sql)
            timings[name] = time.perf_counter() - started
            print(f"  seeded {name} in {timings[name]:.1f} s", flush=True)
        await conn.execute("SET session_replication_role = origin")
        await conn.execute("ALTER TABLE cards ADD CONSTRAINT cards_number_check CHECK (ean13_valid(number)) NOT VALID")
        started = time.perf_counter()
        for index in indexes:
            await conn.execute(index["definition"])
        timings["indexes"] = time.perf_counter() - started
        print(f"  built {len(indexes)} indexes in {timings['indexes']:.1f} s", flush=True)
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        timings["vacuum_analyze"] = time.perf_counter() - started
    finally:
        await conn.close()
    return timings


async def best_of(times: int, work: Callable[[], Awaitable[Any]]) -> float:
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        await work()
        best = min(best, time.perf_counter() - started)
    return best


async def timed(work: Awaitable[Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await work
    return time.perf_counter() - started, result


async def build_rollups(pool: Pool, now: datetime, *, built: bool = False) -> dict[str, Any]:
    """What the worker keeps, built from scratch as a back-fill would (the feeds' whole history at once);
    ``built``: the rollups of a --reuse'd database were built by an earlier run (only the last steps)."""
    results: dict[str, Any] = {}
    local_today = now.astimezone(DEFAULT_PROGRAM.zone).date()
    if not built:
        results |= await _from_scratch(pool, local_today)
    results["wallet_days_s"], _ = await timed(kpis_rollup.count_wallet_adoption(pool, ZONE))
    # The worker's first round of a day also sweeps the last 31 issue days (card activation).
    results["first_round_of_day_s"], _ = await timed(kpis_rollup.run(pool, ZONE))
    print(f"  first worker round of the day in {results['first_round_of_day_s']:.0f} s", flush=True)
    async with pool.acquire() as conn:
        await conn.execute("VACUUM ANALYZE kpi_buyer_days, kpi_buyer_counts, kpi_anonymous_days, kpi_points_hours")
        day = local_today - timedelta(days=3)
        results["recompute_one_day_s"] = await best_of(
            1, lambda: kpis_rollup.recompute(conn, day, day + timedelta(days=1), ZONE)
        )
        results["recount_month_s"] = await best_of(1, lambda: kpis_rollup.recount(conn, "month", day.replace(day=1)))
        await conn.execute("DELETE FROM kpi_dirty_periods")  # those two redid what they marked
    return results


async def _from_scratch(pool: Pool, local_today: date) -> dict[str, Any]:
    results: dict[str, Any] = {}
    await kpis_rollup.skip_receipt_feeds(pool)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL work_mem = '256MB'")
        await conn.execute("SET LOCAL jit = off")
        results["rebuild_receipt_days_s"], _ = await timed(
            kpis_rollup.recompute(conn, local_today - timedelta(days=370), local_today + timedelta(days=1), ZONE)
        )
    print(f"  receipt days rebuilt in {results['rebuild_receipt_days_s']:.0f} s", flush=True)
    results["recount_periods_s"], results["periods"] = await timed(kpis_rollup.recount_dirty_periods(pool))
    print(f"  {results['periods']} periods counted in {results['recount_periods_s']:.0f} s", flush=True)
    results["ledger_feed_s"], _ = await timed(kpis_rollup.follow(pool, ZONE, chunk=1_000_000))
    print(f"  ledger fed in {results['ledger_feed_s']:.0f} s", flush=True)
    return results


async def kpi_report(pool: Pool, now: datetime) -> dict[str, Any]:
    """The report for the last full month every way, and for 30 days that are no whole period (counted
    from the buyer days), against a bare count(*) of the month's orders and receipts."""
    results: dict[str, Any] = {}
    local_today = now.astimezone(DEFAULT_PROGRAM.zone).date()
    month_end = local_today.replace(day=1)
    month_start = (month_end - timedelta(days=1)).replace(day=1)
    lo = datetime(month_start.year, month_start.month, 1, tzinfo=DEFAULT_PROGRAM.zone)
    hi = datetime(month_end.year, month_end.month, 1, tzinfo=DEFAULT_PROGRAM.zone)
    count = (
        "SELECT (SELECT count(*) FROM orders WHERE purchased_at >= $1 AND purchased_at < $2)"
        " + (SELECT count(*) FROM receipts WHERE purchased_at >= $1 AND purchased_at < $2)"
    )
    service = KpiService(DEFAULT_PROGRAM)
    async with pool.acquire() as conn:
        results["month"] = f"{month_start}..{month_end}"
        results["baseline_count_s"] = await best_of(3, lambda: conn.fetchval(count, lo, hi))
        results["month_rows"] = await conn.fetchval(count, lo, hi)
        for group_by in (None, "day", "week", "store", "source"):
            results[f"kpi_month_{group_by or 'chain'}_s"] = await best_of(
                3,
                lambda g=group_by: service.report(  # type: ignore[misc]
                    conn, first=month_start, end=month_end, store=None, group_by=g
                ),
            )
        odd_start = month_start + timedelta(days=3)
        results["kpi_30_days_unaligned_s"] = await best_of(
            3,
            lambda: service.report(
                conn, first=odd_start, end=odd_start + timedelta(days=30), store=None, group_by=None
            ),
        )
        report = await service.report(conn, first=month_start, end=month_end, store=None, group_by=None)
        results["kpi_month_row"] = {
            k: v
            for k, v in msgspec.to_builtins(report.rows[0]).items()
            if k in ("receipts", "identified_share_receipts", "repeat_share", "buyers", "liability_points")
        }
    return results


async def segments_work(pool: Pool, now: datetime) -> dict[str, Any]:
    """The daily RFM / lifecycle recompute (every customer's facts, then the scores), with the worker's job
    loop going on beside it, and segment previews; against bare count(*)s of the rows they read."""
    results: dict[str, Any] = {}
    async with pool.acquire() as conn:
        results["baseline_count_orders_s"] = await best_of(3, lambda: conn.fetchval("SELECT count(*) FROM orders"))
        results["baseline_count_customers_s"] = await best_of(
            3, lambda: conn.fetchval("SELECT count(*) FROM customers")
        )
    daily = asyncio.ensure_future(timed(run_daily(pool, DEFAULT_PROGRAM, now, force=True)))
    rounds: list[float] = []
    while not daily.done():  # what the worker's job loop does meanwhile (its KPI and touched rounds)
        started = time.perf_counter()
        await kpis_rollup.run(pool, ZONE)
        await refresh_touched(pool, DEFAULT_PROGRAM, now)
        rounds.append(time.perf_counter() - started)
        await asyncio.wait([daily], timeout=5)
    results["daily_s"], report = daily.result()
    results["daily_report"] = msgspec.to_builtins(report)
    results["job_rounds_during_daily"] = len(rounds)
    results["job_round_max_s"] = max(rounds, default=0.0)
    print(f"  daily recompute in {results['daily_s']:.0f} s", flush=True)
    async with pool.acquire() as conn:
        results["baseline_count_facts_s"] = await best_of(
            3, lambda: conn.fetchval("SELECT count(*) FROM customer_facts")
        )
        await conn.execute("ANALYZE customer_facts")
        async with conn.transaction():
            await segments.put(
                conn, "gold", SegmentInput(title="Gold", rule=Rule(tiers=("gold",))),
                program=DEFAULT_PROGRAM, now=now, actor=None,
            )  # fmt: skip
        previews: dict[str, Any] = {}
        for name, rule in PREVIEWS.items():
            compiled = msgspec.convert(rule, Rule)
            seconds = await best_of(
                3,
                lambda r=compiled: segments.preview(conn, r, program=DEFAULT_PROGRAM, now=now),  # type: ignore[misc]
            )
            answer = await segments.preview(conn, compiled, program=DEFAULT_PROGRAM, now=now)
            previews[name] = {"s": seconds, "size": answer.size}
        results["preview"] = previews
    return results


async def measure(db: str, *, built: bool = False) -> dict[str, Any]:
    await create(db)  # a kept database gets the migrations added since it was seeded
    now = datetime.now(UTC)
    # The worker's back-fill statements run long: no statement timeout on the bench's pool.
    settings = load_settings(
        {},
        environment=Environment.TEST,
        database_url=Secret(db),
        db_statement_timeout_ms=0,
        db_command_timeout_seconds=3600.0,
    )
    pool = await create_pool(settings, application="kartka-bench", background=True)
    results: dict[str, Any] = {}
    try:
        print("building the rollups", flush=True)
        results |= await build_rollups(pool, now, built=built)
        results |= await kpi_report(pool, now)
        print("segments", flush=True)
        results |= await segments_work(pool, now)
    finally:
        await pool.close()
    return results


#: The default, quick size, and ``--full``: the issue's 1 M customers and 10 M receipts.
QUICK = (100_000, 1_000_000)
FULL = (1_000_000, 10_000_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help=f"{FULL[0]:,} customers and {FULL[1]:,} receipts")
    parser.add_argument("--customers", type=int, help=f"default {QUICK[0]:,}")
    parser.add_argument("--receipts", type=int, help=f"default {QUICK[1]:,}")
    parser.add_argument("--identified", type=float, default=0.7, help="share of receipts made with a card")
    parser.add_argument("--seed-only", action="store_true", help="seed, keep the database and print its URL")
    parser.add_argument("--reuse", metavar="URL", help="measure a database a --seed-only run left (no seeding)")
    parser.add_argument("--drop", action="store_true", help="with --reuse: drop that database afterwards")
    parser.add_argument("--built", action="store_true", help="with --reuse: its rollups were built by an earlier run")
    args = parser.parse_args()
    customers, receipts = FULL if args.full else QUICK
    customers, receipts = args.customers or customers, args.receipts or receipts
    identified = int(receipts * args.identified)
    now = datetime.now(UTC)
    results: dict[str, Any] = {"customers": customers, "receipts": receipts, "identified": identified}
    if args.reuse:
        try:
            results |= asyncio.run(measure(args.reuse, built=args.built))
        finally:
            if args.drop:
                asyncio.run(drop(args.reuse))
    else:
        with kept() if args.seed_only else fresh_database("kartka_bench_analytics") as db:
            asyncio.run(create(db))
            started = time.perf_counter()
            results["seed"] = asyncio.run(seed(db, customers, identified, receipts - identified, now))
            results["seed_total_s"] = time.perf_counter() - started
            print(f"seeded in {results['seed_total_s']:.0f} s", flush=True)
            if args.seed_only:
                print(f"saved to {save('analytics-seed', results)}")
                return
            results |= asyncio.run(measure(db))
    report(results)
    print(f"\nsaved to {save('analytics', results)}")


async def create(db: str) -> None:
    conn = await asyncpg.connect(db)
    try:
        await SCHEMA.migrate(conn)
    finally:
        await conn.close()


@contextlib.contextmanager
def kept() -> Iterator[str]:
    """A new database that outlives the run (``--seed-only``): its URL is printed; ``--reuse URL --drop``
    measures and drops it."""
    admin, _ = asyncio.run(admin_url())
    name = f"kartka_bench_analytics_{secrets.token_hex(4)}"
    asyncio.run(_execute(admin, f'CREATE DATABASE "{name}"'))
    url = with_database(admin, name)
    print(f"database kept: {url}", flush=True)
    yield url


async def drop(url: str) -> None:
    name = urllib.parse.urlsplit(url).path.lstrip("/")
    admin, _ = await admin_url()
    await _execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"dropped {name}")


def report(results: dict[str, Any]) -> None:
    base = results["baseline_count_s"]
    seeded = f"seeded in {results['seed_total_s']:.0f} s" if "seed_total_s" in results else "seeded earlier"
    print(
        f"\n{results['customers']:,} customers, {results['receipts']:,} receipts "
        f"({results['identified']:,} with a card); {seeded}"
    )
    print(f"KPI report for {results['month']} ({results['month_rows']:,} receipts in the month)")
    print(f"  {'baseline: bare count(*) of the rows':44} {base * 1000:9.0f} ms   x1")
    for key in ("chain", "day", "week", "store", "source"):
        value = results[f"kpi_month_{key}_s"]
        label = "kpis, " + ("whole chain" if key == "chain" else "by " + key)
        print(f"  {label:44} {value * 1000:9.0f} ms   x{value / base:.2f}")
    value = results["kpi_30_days_unaligned_s"]
    print(f"  {'kpis, 30 days not a whole month (counted)':44} {value * 1000:9.0f} ms   x{value / base:.2f}")
    print("the worker's share (from scratch, as a back-fill)")
    if "rebuild_receipt_days_s" in results:
        print(f"  {'rebuild every receipt day':44} {results['rebuild_receipt_days_s']:9.1f} s")
        print(f"  {'count every day, week and month':44} {results['recount_periods_s']:9.1f} s")
        print(f"  {'ledger feed from zero':44} {results['ledger_feed_s']:9.1f} s")
    print(f"  {'wallet days from the install history':44} {results['wallet_days_s']:9.1f} s")
    print(f"  {'a worker round with the daily activation sweep':44} {results['first_round_of_day_s']:9.1f} s")
    print(f"  {'recompute one day':44} {results['recompute_one_day_s'] * 1000:9.0f} ms")
    print(f"  {'recount one month':44} {results['recount_month_s'] * 1000:9.0f} ms")
    print(f"  {results['kpi_month_row']}")
    orders, facts = results["baseline_count_orders_s"], results["baseline_count_facts_s"]
    print("segments")
    print(f"  {'baseline: bare count(*) of the orders':44} {orders:9.2f} s   x1")
    daily = results["daily_s"]
    print(f"  {'daily recompute (facts, T50/T90, RFM, stages)':44} {daily:9.1f} s   x{daily / orders:.0f}")
    print(
        f"  {'job loop rounds meanwhile':44} {results['job_rounds_during_daily']:9d}     "
        f"(longest {results['job_round_max_s']:.1f} s)"
    )
    print(f"  {'baseline: bare count(*) of the facts':44} {facts * 1000:9.0f} ms   x1")
    for name, figures in results["preview"].items():
        label = f"preview {name} ({figures['size']:,})"
        print(f"  {label:44} {figures['s'] * 1000:9.0f} ms   x{figures['s'] / facts:.2f}")


if __name__ == "__main__":
    main()
