"""Background jobs of the wallet: expire lots, lower tiers. Run by ``kartka worker`` on a timer and by
``kartka jobs run``; every job is safe to run twice and from several workers at once."""

from __future__ import annotations

import logging
from datetime import datetime

import msgspec

from kartka.clock import Clock
from kartka.db import Pool
from wallet import ledger, tiers
from wallet.program import Program

logger = logging.getLogger(__name__)


class JobReport(msgspec.Struct):
    expired_lots: int = 0
    downgrades: int | None = None
    """``None`` when today's evaluation had already been run (by this or another worker)."""


async def expire(pool: Pool, now: datetime, *, batch: int = 5_000) -> int:
    """Expire every lot due at ``now``, one short transaction per batch."""
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            done = await ledger.expire_due(conn, now, batch=batch)
        total += done
        if done < batch:
            return total


async def downgrade_daily(pool: Pool, program: Program, now: datetime, *, force: bool = False) -> int | None:
    """Evaluate tier downgrades once per day (the program's local date); ``force`` runs it regardless."""
    day = now.astimezone(program.zone).date()
    async with pool.acquire() as conn:
        if not force:
            # Claim the day; a claim an hour old that never finished (its worker died) may be taken over.
            claimed = await conn.fetchval(
                """
                INSERT INTO job_runs (job, run_on) VALUES ('downgrades', $1)
                ON CONFLICT (job, run_on) DO UPDATE SET started_at = now()
                 WHERE job_runs.finished_at IS NULL AND job_runs.started_at < now() - interval '1 hour'
                RETURNING 1
                """,
                day,
            )
            if claimed is None:
                return None
        lowered = await tiers.evaluate_downgrades(conn, program, now)
        await conn.execute(
            """
            INSERT INTO job_runs (job, run_on, finished_at, result) VALUES ('downgrades', $1, now(), $2)
            ON CONFLICT (job, run_on) DO UPDATE SET finished_at = now(), result = excluded.result
            """,
            day,
            {"lowered": lowered},
        )
    return lowered


async def run_all(pool: Pool, program: Program, clock: Clock, *, force: bool = False) -> JobReport:
    now = clock.now()
    report = JobReport(expired_lots=await expire(pool, now))
    report.downgrades = await downgrade_daily(pool, program, now, force=force)
    if report.expired_lots or report.downgrades:
        logger.info("jobs: expired %d lots, lowered %s tiers", report.expired_lots, report.downgrades)
    return report
