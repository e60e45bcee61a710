"""Benchmark of segment previews and the daily RFM / lifecycle recompute, against bare counts.

    .venv-test/bin/python -m bench.segments [--customers 1000000] [--orders-per-customer 10]

It makes a fresh database (as ``bench/run.py`` does), seeds it set-based (``generate_series``, a few
statements): customers with a card and an account, 40 % consenting to marketing, a home store of 20,
birthdays for a third, and on average ``--orders-per-customer`` purchases over the last 500 days (one
in twenty refunded, in full or in part). Then it measures (the previews: median of three):

- ``daily``: the whole daily recompute (every customer's facts rebuilt in batches, T50 / T90, RFM
  quintiles, lifecycle, saved segments recounted). Baseline: ``count(*)`` over the orders it reads.
- ``preview``: ``POST /v1/admin/segments/preview``'s work (size and 20 members) for a few typical rules.
  Baseline: ``count(*)`` over the facts table the rules scan.
- ``touched``: the per-round refresh after 10,000 new purchases.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from analytics import segments
from analytics.segments import Rule, SegmentInput
from analytics.segments_daily import run_daily
from analytics.segments_facts import refresh_touched
from bench.harness import fresh_database, save
from boot.schema import SCHEMA
from kartka.db import Pool, create_pool
from kartka.settings import Environment, Secret, load_settings
from wallet.program import DEFAULT_PROGRAM

SEED = """
    CREATE TEMP TABLE seed AS
    SELECT g, md5(g::text)::uuid AS id, body || (10 - (
               (substr(body, 1, 1)::int + substr(body, 3, 1)::int + substr(body, 5, 1)::int + substr(body, 7, 1)::int
                + substr(body, 9, 1)::int + substr(body, 11, 1)::int)
               + 3 * (substr(body, 2, 1)::int + substr(body, 4, 1)::int + substr(body, 6, 1)::int
                      + substr(body, 8, 1)::int + substr(body, 10, 1)::int + substr(body, 12, 1)::int)) % 10) % 10
               AS number
      FROM (SELECT g, '2' || lpad(g::text, 11, '0') AS body FROM generate_series(1, $1) g) s;

    INSERT INTO customers (id, phone, name, source, home_store, birthday, birthday_set_at, created_at)
    SELECT id, '+37529' || lpad(g::text, 7, '0'), 'C' || g,
           (ARRAY['pos', 'qr_poster', 'app', 'website', 'online_order'])[1 + g % 5], 's' || (g % 20),
           CASE WHEN g % 3 = 0 THEN date '1970-01-01' + (g % 15000) END,
           CASE WHEN g % 3 = 0 THEN now() - interval '400 days' END,
           now() - (g % 900) * interval '1 day'
      FROM seed;
    INSERT INTO cards (number, customer_id) SELECT number, id FROM seed;
    INSERT INTO accounts (customer_id, tier_code)
    SELECT id, CASE WHEN g % 10 = 0 THEN 'gold' WHEN g % 50 = 0 THEN 'platinum' ELSE 'standart' END FROM seed;
    INSERT INTO notification_preferences (customer_id, channels, marketing)
    SELECT id, '{sms}', true FROM seed WHERE g % 5 < 2;
"""

ORDERS = """
    INSERT INTO orders (order_id, customer_id, card_number, idempotency_key, request_hash, store, purchased_at,
                        subtotal, discount, redeemed_points, paid, accrued_points, refunded_amount, tier_code,
                        rate_bp, engine, degraded)
    SELECT o.oid, s.id, s.number, o.oid, '\\x00', 's' || (s.g % 20), o.at, o.paid, 0, 0, o.paid, 0,
           CASE WHEN (s.g + i) % 20 = 0 THEN o.paid WHEN (s.g + i) % 20 = 1 THEN o.paid / 2 ELSE 0 END,
           'standart', 500, 'embedded', false
      FROM seed s
     CROSS JOIN LATERAL generate_series(1, 1 + (s.g * 7 + $3::int) % (2 * $4::int - 1)) i
     CROSS JOIN LATERAL (
         SELECT 'b' || s.g || '-' || i || '-' || $3::int AS oid,
                now() - ((s.g * 31 + i * 17 + $3::int) % 500) * interval '1 day' - (i % 24) * interval '1 hour' AS at,
                500 + (s.g * 13 + i * 101) % 20000 AS paid
     ) o
     WHERE s.g > $1::int AND s.g <= $2::int
"""

RULES: dict[str, dict[str, Any]] = {
    "everyone": {},
    "champions_and_loyal_consenting": {"rfm": ["champions", "loyal"], "consent_marketing": True},
    "big_spenders_recent": {"spend_365d": {"min": 50_000}, "last_purchase": {"days_ago_max": 30}},
    "churn_risk_gold_store_3": {"lifecycle": ["churn_risk", "churned"], "tiers": ["gold"], "home_stores": ["s3"]},
    "birthday_week_not_in_saved": {"birthday_within_days": 7, "none_of": ["gold"]},
}


async def timed(call: Callable[[], Awaitable[Any]], rounds: int = 3) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = await call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


async def seed(pool: Pool, customers: int, per_customer: int) -> dict[str, float]:
    started = time.perf_counter()
    async with pool.acquire() as conn:
        await conn.execute("SET statement_timeout = 0")
        # Seeding only: skip the foreign-key triggers (the rows are consistent by construction).
        await conn.execute("SET session_replication_role = replica")
        for statement in SEED.split(";\n"):
            if statement.strip():
                await conn.execute(statement.replace("$1", str(int(customers))))
        step = 100_000
        for low in range(0, customers, step):
            await conn.execute(ORDERS, low, min(low + step, customers), 0, per_customer)
        await conn.execute("SET session_replication_role = DEFAULT")
        await conn.execute("ANALYZE")
        orders = await conn.fetchval("SELECT count(*) FROM orders")
    return {"seconds": time.perf_counter() - started, "orders": orders}


async def main(url: str, customers: int, per_customer: int) -> dict[str, Any]:
    settings = load_settings(
        {}, environment=Environment.TEST, database_url=Secret(url), db_command_timeout_seconds=3600.0
    )
    pool = await create_pool(settings, application="bench-segments", background=True)
    try:
        async with pool.acquire() as conn:
            await SCHEMA.migrate(conn)
        seeded = await seed(pool, customers, per_customer)
        print(f"seeded {customers:,} customers and {seeded['orders']:,} orders in {seeded['seconds']:.0f} s")
        now = datetime.now(UTC)
        results: dict[str, Any] = {"customers": customers, "orders": seeded["orders"], "seed_s": seeded["seconds"]}

        async def count_orders() -> int:
            async with pool.acquire() as conn:
                n: int = await conn.fetchval("SELECT count(*) FROM orders")
                return n

        results["baseline_count_orders_s"], _ = await timed(count_orders)
        # Once: at a million customers one run takes minutes, and the first is the real one (empty facts).
        results["daily_s"], report = await timed(lambda: run_daily(pool, DEFAULT_PROGRAM, now, force=True), 1)
        results["daily_report"] = msgspec.to_builtins(report)
        baseline = results["baseline_count_orders_s"]
        print(f"daily recompute {results['daily_s']:.1f} s (count(*) of orders {baseline:.2f} s)")

        async with pool.acquire() as conn, conn.transaction():
            await segments.put(
                conn, "gold", SegmentInput(title="Gold", rule=Rule(tiers=("gold",))),
                program=DEFAULT_PROGRAM, now=now, actor=None,
            )  # fmt: skip

        async def count_facts() -> int:
            async with pool.acquire() as conn:
                n: int = await conn.fetchval("SELECT count(*) FROM customer_facts")
                return n

        results["baseline_count_facts_s"], _ = await timed(count_facts)
        previews: dict[str, Any] = {}
        for name, rule in RULES.items():

            async def preview(rule: dict[str, Any] = rule) -> segments.Preview:
                async with pool.acquire() as conn:
                    return await segments.preview(conn, msgspec.convert(rule, Rule), program=DEFAULT_PROGRAM, now=now)

            seconds, answer = await timed(preview)
            previews[name] = {"s": seconds, "size": answer.size}
            print(f"preview {name}: {answer.size:,} customers in {seconds * 1000:.0f} ms")
        results["preview"] = previews

        async with pool.acquire() as conn:
            touched = ORDERS.replace("s.g > $1::int AND s.g <= $2::int", "s.g % 100 = 0 AND $1::int < $2::int")
            await conn.execute(touched, 0, 1, 7, 1)
            await conn.execute("UPDATE orders SET purchased_at = now() WHERE order_id LIKE '%-7'")
        results["touched_s"], touched = await timed(lambda: refresh_touched(pool, DEFAULT_PROGRAM, now), 1)
        results["touched_customers"] = touched
        print(f"refresh of {touched:,} touched customers: {results['touched_s']:.2f} s")
        return results
    finally:
        await pool.close()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders-per-customer", type=int, default=10)
    args = parser.parse_args()
    with fresh_database("kartka_bench_segments") as url:
        results = asyncio.run(main(url, args.customers, args.orders_per_customer))
    print(f"saved to {save('segments', results)}")


if __name__ == "__main__":
    cli()
