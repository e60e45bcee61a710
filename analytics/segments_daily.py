"""The daily recompute: every customer's facts, then RFM, lifecycle and the saved segments' sizes.

Once per program-local day, claimed in ``analytics_runs`` so one worker runs it. The worker runs it in a
loop of its own (``boot.worker``), beside the timed jobs, so expiry, reminders and the KPI rollups do not
wait for it. The facts are rebuilt in batches of customers in id order (one set-based statement per
batch, reading each source table as one id range), each batch committed with the run's cursor, so a
worker that dies mid-way leaves a cursor the next one resumes from (a claim untouched for ten minutes is
taken over).
The scoring — T50 / T90, RFM quintiles, lifecycle stages, segment sizes — then runs in one transaction:
redone whole if interrupted, and never seen half-done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import msgspec

from analytics import lifecycle, rfm, segments
from analytics.kpis_rollup import NOT_FOLLOWED
from analytics.segments_facts import advance_marks, no_jit, refresh, refresh_touched, source_heads
from kartka.db import Pool
from wallet.program import Program

BATCH: Final = 20_000
#: A claim nobody has moved for this long belongs to a worker that died; another may resume it.
STALE: Final = "10 minutes"

logger = logging.getLogger(__name__)


class DailyReport(msgspec.Struct, frozen=True):
    customers: int
    """Customers whose facts this run rebuilt (all of them, or the rest after a resume)."""
    scored: int
    """Customers with an RFM score (a purchase in the window)."""
    lifecycle_changed: int
    t50_days: float
    t90_days: float
    segments: int


async def run_daily(
    pool: Pool,
    program: Program,
    now: datetime,
    *,
    force: bool = False,
    batch: int = BATCH,
    stop: asyncio.Event | None = None,
    progress: Callable[[], None] = lambda: None,
) -> DailyReport | None:
    """Run (or resume) today's recompute; None when it already ran today, another worker holds it, or
    ``stop`` was set between two batches (the claim is then let go at once, so the next worker, or this
    one restarted, resumes from the cursor without waiting for it to go stale). ``progress`` is called
    after each batch (the worker's watch over its loops: a long recompute is not a hung one)."""
    day = now.astimezone(program.zone).date()
    async with pool.acquire() as conn:
        if force:
            claim = await conn.fetchrow(
                """
                INSERT INTO analytics_runs (run_on) VALUES ($1)
                ON CONFLICT (run_on) DO UPDATE SET stage = 'facts', cursor_id = NULL, started_at = now(),
                       touched_at = now(), finished_at = NULL, result = NULL
                RETURNING stage, cursor_id, result
                """,
                day,
            )
        else:
            claim = await conn.fetchrow(
                f"""
                INSERT INTO analytics_runs (run_on) VALUES ($1)
                ON CONFLICT (run_on) DO UPDATE SET touched_at = now()
                 WHERE analytics_runs.finished_at IS NULL AND analytics_runs.touched_at < now() - interval '{STALE}'
                RETURNING stage, cursor_id, result
                """,
                day,
            )
        if claim is None:
            return None
        heads: dict[str, Any] = (claim["result"] or {}).get("heads") or await source_heads(conn)
        if claim["result"] is None:
            await conn.execute("UPDATE analytics_runs SET result = $2 WHERE run_on = $1", day, {"heads": heads})
        thresholds = await lifecycle.latest(conn, program)
    cursor: UUID | None = claim["cursor_id"]
    rebuilt = 0
    if claim["stage"] == "facts":
        while True:
            if stop is not None and stop.is_set():
                async with pool.acquire() as conn:
                    await conn.execute(
                        "UPDATE analytics_runs SET touched_at = now() - interval '1 day'"
                        " WHERE run_on = $1 AND cursor_id IS NOT DISTINCT FROM $2 AND stage = 'facts'",
                        day,
                        cursor,
                    )
                return None
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(f"SET LOCAL application_name = '{NOT_FOLLOWED}'")  # no KPI feed waits for it
                # Two statements rather than "$1 IS NULL OR id > $1", which a generic plan cannot range-scan.
                rows = await (
                    conn.fetch("SELECT id FROM customers ORDER BY id LIMIT $1", batch)
                    if cursor is None
                    else conn.fetch("SELECT id FROM customers WHERE id > $1 ORDER BY id LIMIT $2", cursor, batch)
                )
                ids = [row["id"] for row in rows]
                await refresh(conn, ids, program, thresholds, now, through=ids[-1] if ids else None)
                last = ids[-1] if ids else cursor
                stage = "facts" if len(ids) == batch else "scores"
                # Only the holder of the cursor moves it: a worker that lost its claim stops here.
                owned = await conn.fetchval(
                    """
                    UPDATE analytics_runs SET cursor_id = $3, stage = $4, touched_at = now()
                     WHERE run_on = $1 AND cursor_id IS NOT DISTINCT FROM $2 AND stage = 'facts' RETURNING 1
                    """,
                    day,
                    cursor,
                    last,
                    stage,
                )
                if owned is None:
                    raise _Lost
            rebuilt += len(ids)
            cursor = last
            progress()
            if stage == "scores":
                break
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL application_name = '{NOT_FOLLOWED}'")
        if (
            await conn.fetchval(
                "SELECT 1 FROM analytics_runs WHERE run_on = $1 AND stage = 'scores' FOR UPDATE SKIP LOCKED", day
            )
            is None
        ):
            return None
        await no_jit(conn)
        await conn.execute("SET LOCAL work_mem = '256MB'")  # the quintiles and percentiles sort in memory
        # The scores rewrite every row: the touched refresh of the worker's job loop must not interleave
        # its upserts with them (a deadlock) nor wait on their row locks; it waits a second for this lock
        # and otherwise leaves its customers to its next round (analytics.segments_facts.refresh_touched).
        await conn.execute("LOCK TABLE customer_facts IN SHARE ROW EXCLUSIVE MODE")
        await advance_marks(conn, {k: int(v) for k, v in heads.items()})
        thresholds = await lifecycle.estimate(conn, program, now)
        await lifecycle.record(conn, day, thresholds)
        scored = await rfm.score(conn, program, now)
        changed = await lifecycle.assign(conn, program, thresholds, now)
        # Fresh statistics for the previews' plans: the table was just rewritten (and a plan that
        # thinks a stage rare walks an index where a scan would do).
        await conn.execute("ANALYZE customer_facts")
        counted = await segments.recount(conn, program=program, now=now)
        report = DailyReport(
            customers=rebuilt,
            scored=scored,
            lifecycle_changed=changed,
            t50_days=float(thresholds.t50_days),
            t90_days=float(thresholds.t90_days),
            segments=counted,
        )
        await conn.execute(
            """
            UPDATE analytics_runs SET stage = 'done', finished_at = now(), touched_at = now(), result = $2
             WHERE run_on = $1
            """,
            day,
            {"heads": heads, **msgspec.to_builtins(report)},
        )
    logger.info(
        "analytics: rebuilt %d customers' facts, %d scored, T50 %.0f / T90 %.0f days, %d segments counted",
        rebuilt,
        scored,
        report.t50_days,
        report.t90_days,
        counted,
    )
    return report


class _Lost(Exception):
    """Another worker took this run over (ours looked dead); it goes on from the cursor."""


async def run_daily_safely(
    pool: Pool,
    program: Program,
    now: datetime,
    *,
    force: bool = False,
    stop: asyncio.Event | None = None,
    progress: Callable[[], None] = lambda: None,
) -> DailyReport | None:
    """:func:`run_daily` for the worker's timer: a lost claim is not an error."""
    try:
        return await run_daily(pool, program, now, force=force, stop=stop, progress=progress)
    except _Lost:
        logger.warning("analytics: today's recompute was taken over by another worker")
        return None


async def run_segment_jobs(
    pool: Pool, program: Program, now: datetime, *, force: bool = False, daily: bool = True
) -> dict[str, Any]:
    """The touched customers' facts, then (once a day; not with ``daily=False``, the worker's job loop,
    which leaves it to its own loop) the rest."""
    refreshed = await refresh_touched(pool, program, now)
    if not daily:
        return {"facts_refreshed": refreshed}
    report = await run_daily_safely(pool, program, now, force=force)
    return {"facts_refreshed": refreshed, "segments_daily": None if report is None else msgspec.to_builtins(report)}
