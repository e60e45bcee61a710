"""Benchmark of notification delivery and campaign enqueueing, each against a baseline from the same run.

    .venv-test/bin/python -m bench.notify            (or ./scripts/bench-notify)

It makes a fresh database (as ``bench/run.py`` does) and measures:

- ``dispatch``: messages per second from the outbox to a fake Infobip over HTTP, through 1 and then 2
  ``kartka worker`` processes (claim, render, send in batches, record). The baseline drives the same
  fake directly with the same batch size and no database: what the provider path alone allows.
- ``campaign``: seconds to enqueue one campaign to ``--recipients`` consenting customers (segment
  joins, channel choice, throttling, ``INSERT ... SELECT`` in chunks). The baseline is a bare
  ``INSERT ... SELECT`` of as many outbox rows from ``generate_series``: what writing the rows costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from bench.harness import ROOT, free_port, fresh_database, save
from kartka.clock import SystemClock
from kartka.db import create_pool
from kartka.settings import Environment, Secret, load_settings
from main.schema import SCHEMA
from notifications import campaigns
from tests.fakes.infobip import API_KEY
from wallet.program import DEFAULT_PROGRAM

BATCH = 200  # messages per Infobip request, as the adapter sends them


def start_fake() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.infobip", "--port", str(port)], cwd=ROOT, env=os.environ.copy()
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx.get(f"{url}/_stats", timeout=1)
            return process, url
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


async def baseline_dispatch(url: str, messages: int, concurrency: int = 8) -> float:
    """The fake provider driven directly: batches of BATCH messages, ``concurrency`` requests in flight."""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"App {API_KEY}"}) as client:
        batches = [range(i, min(i + BATCH, messages)) for i in range(0, messages, BATCH)]
        queue: asyncio.Queue[range] = asyncio.Queue()
        for batch in batches:
            queue.put_nowait(batch)

        async def sender() -> None:
            while not queue.empty():
                batch = queue.get_nowait()
                body = {
                    "messages": [
                        {
                            "from": "Kartka",
                            "destinations": [{"to": f"37529{i:07d}", "messageId": f"base-{i}"}],
                            "text": "Начислено 12,50 балла, можно тратить с 03.03.2026. Баланс: 140 баллов.",
                        }
                        for i in batch
                    ]
                }
                response = await client.post("/sms/2/text/advanced", json=body)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return messages / (time.perf_counter() - started)


def worker_env(db: str, fake: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KARTKA_") and k != "DATABASE_URL"}
    return env | {
        "DATABASE_URL": db,
        "KARTKA_ENV": "test",
        "KARTKA_SMS_PROVIDER": "infobip",
        "KARTKA_VIBER_PROVIDER": "none",
        "KARTKA_INFOBIP_BASE_URL": fake,
        "KARTKA_INFOBIP_API_KEY": API_KEY,
        "KARTKA_INFOBIP_WEBHOOK_SECRET": "bench",
        "KARTKA_JOBS_INTERVAL_SECONDS": "3600",
        "KARTKA_LOG_LEVEL": "WARNING",
    }


_ENQUEUE = """
    INSERT INTO outbox (idempotency_key, channel, recipient, category, template, locale, params, due_at, created_at)
    SELECT $1 || i, 'sms', '+37529' || lpad(i::text, 7, '0'), 'transactional', 'points_earned', 'ru',
           jsonb_build_object('earned', 1250, 'available_on', '2026-03-03', 'total_available', 14000), now(), now()
      FROM generate_series(1, $2) AS i
"""


async def drain(db: str, messages: int, label: str) -> float:
    """Enqueue ``messages`` in one transaction (the workers are already listening) and time until the
    last one is recorded as sent."""
    conn = await asyncpg.connect(db)
    try:
        started = time.perf_counter()
        async with conn.transaction():
            await conn.execute(_ENQUEUE, label, messages)
            await conn.execute("NOTIFY kartka_outbox")
        while True:
            if not await conn.fetchval("SELECT count(*) FROM outbox WHERE status <> 'sent'"):
                return messages / (time.perf_counter() - started)
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def dispatch(db: str, fake: str, messages: int, workers: int) -> float:
    async def truncate() -> None:
        conn = await asyncpg.connect(db)
        await conn.execute("TRUNCATE outbox CASCADE")
        await conn.close()

    asyncio.run(truncate())
    procs = [
        subprocess.Popen([sys.executable, "-m", "main", "worker"], cwd=ROOT, env=worker_env(db, fake))
        for _ in range(workers)
    ]
    try:
        time.sleep(4)  # let the workers start and LISTEN
        return asyncio.run(drain(db, messages, f"bench-{workers}-"))
    finally:
        for proc in procs:
            stop(proc)


async def seed_recipients(db: str, recipients: int) -> None:
    conn = await asyncpg.connect(db)
    try:
        await conn.execute(
            """
            INSERT INTO customers (phone, source, name)
            SELECT '+37533' || lpad(i::text, 7, '0'), 'pos', 'Покупатель ' || i FROM generate_series(1, $1) AS i
            """,
            recipients,
        )
        await conn.execute(
            """
            INSERT INTO notification_preferences (customer_id, channels, marketing)
            SELECT id, ARRAY['app', 'viber', 'sms'], true FROM customers
            """
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def baseline_insert(db: str, rows: int) -> float:
    conn = await asyncpg.connect(db)
    try:
        await conn.execute("TRUNCATE outbox CASCADE")
        started = time.perf_counter()
        await conn.execute(_ENQUEUE, "baseline-", rows)
        elapsed = time.perf_counter() - started
        await conn.execute("TRUNCATE outbox CASCADE")
        return elapsed
    finally:
        await conn.close()


async def campaign(db: str) -> tuple[float, int]:
    settings = load_settings({}, environment=Environment.TEST, database_url=Secret(db))
    pool = await create_pool(settings, application="kartka-bench", background=True)
    try:
        async with pool.acquire() as conn:
            data = campaigns.CampaignInput(
                name="bench", texts={"ru": "{name}, весна: −20% на всё!"}, rate_per_minute=100_000
            )
            campaign_id = await campaigns.create(
                conn, data, program=DEFAULT_PROGRAM, now=datetime.now(UTC), created_by="bench"
            )
        started = time.perf_counter()
        while await campaigns.enqueue_chunk(pool, DEFAULT_PROGRAM, viber=True, now=SystemClock().now()):
            pass
        elapsed = time.perf_counter() - started
        recipients: int = await pool.fetchval("SELECT recipients FROM campaigns WHERE id = $1", campaign_id)
        return elapsed, recipients
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000, help="messages per dispatch run")
    parser.add_argument("--recipients", type=int, default=1_000_000, help="customers a campaign goes to")
    parser.add_argument("--workers", default="1,2", help="worker process counts to measure")
    args = parser.parse_args()

    results: dict[str, Any] = {}
    with fresh_database("kartka_bench_notify") as db:

        async def create() -> None:
            conn = await asyncpg.connect(db)
            await SCHEMA.migrate(conn)
            await conn.close()

        asyncio.run(create())
        fake, fake_url = start_fake()
        try:
            results["dispatch_baseline_per_s"] = asyncio.run(baseline_dispatch(fake_url, args.messages))
            for workers in (int(w) for w in args.workers.split(",")):
                stop(fake)
                fake, fake_url = start_fake()
                results[f"dispatch_{workers}_workers_per_s"] = dispatch(db, fake_url, args.messages, workers)
                stats = httpx.get(f"{fake_url}/_stats").json()
                assert stats["delivered"] == args.messages, stats
                assert stats["duplicates"] == 0, stats
            stop(fake)

            started = time.perf_counter()
            asyncio.run(seed_recipients(db, args.recipients))
            print(f"seeded {args.recipients} consenting customers in {time.perf_counter() - started:.1f} s")
            results["insert_baseline_s"] = asyncio.run(baseline_insert(db, args.recipients))
            results["campaign_s"], results["campaign_recipients"] = asyncio.run(campaign(db))
        finally:
            if fake.poll() is None:
                stop(fake)
    report(results, args)


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    base = results["dispatch_baseline_per_s"]
    print(f"\ndispatch of {args.messages} SMS through the outbox to a fake Infobip over HTTP")
    print(f"  {'baseline (fake driven directly)':34} {base:9.0f} msg/s   100%")
    for key, value in results.items():
        if key.startswith("dispatch_") and key.endswith("_workers_per_s"):
            workers = key.split("_")[1]
            print(f"  {workers + ' worker process(es)':34} {value:9.0f} msg/s   {value / base:4.0%}")
    insert = results["insert_baseline_s"]
    print(f"\ncampaign to {results['campaign_recipients']} consenting customers")
    print(f"  {'baseline (bare INSERT ... SELECT)':34} {insert:9.1f} s       100%")
    ratio = results["campaign_s"] / insert
    print(f"  {'campaign enqueue':34} {results['campaign_s']:9.1f} s     {ratio:5.1f}x the baseline's time")
    save("notify", results | {"messages": args.messages})


if __name__ == "__main__":
    main()
