"""The timed jobs, in the order the worker runs them each round and ``kartka jobs run`` runs them once.

Each package owns its jobs and its housekeeping; this is only the schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import msgspec

from analytics import kpis_rollup
from analytics.segments_daily import run_daily_safely, run_segment_jobs
from boot.services import Services
from kartka import housekeeping as kartka_housekeeping
from kartka.db import Pool, create_pool
from kartka.settings import Settings
from wallet import housekeeping as wallet_housekeeping
from wallet.jobs import run_all

#: The statement deadline of the analytics' work (a day's KPI rollup, the daily recompute's scoring): at a
#: million customers some of its statements run for a minute or more, far past the deadline the rest of
#: the worker keeps (``KARTKA_DB_STATEMENT_TIMEOUT_MS``, 15 s by default, so a frozen database costs
#: seconds). Still finite: a frozen database holds the analytics up for at most this long.
ANALYTICS_STATEMENT_MS: Final = 30 * 60 * 1000


@contextlib.asynccontextmanager
async def analytics_pool(settings: Settings, application: str = "kartka-analytics") -> AsyncIterator[Pool]:
    """A pool for the analytics' long statements (:data:`ANALYTICS_STATEMENT_MS`), closed on the way out."""
    bound = settings.db_statement_timeout_ms
    long = msgspec.structs.replace(settings, db_statement_timeout_ms=bound and max(bound, ANALYTICS_STATEMENT_MS))
    pool = await create_pool(long, application=application, background=True)
    try:
        yield pool
    finally:
        await pool.close()


async def run_jobs(
    services: Services,
    *,
    force: bool = False,
    daily: bool = True,
    analytics: Pool | None = None,
    progress: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Expire due lots, evaluate tier downgrades (``force``: even if today's run is done), birthday
    bonuses, pass updates, expiry reminders, then prune, then bring the KPI rollups and the segments'
    facts up to date (once a day also RFM and lifecycle, unless ``daily`` is false: the worker runs that
    in a loop of its own, :func:`run_daily_segments`); returns what was done. ``analytics``: the pool of
    :func:`analytics_pool` for the analytics' long statements (the services' pool if not given).
    ``progress`` is called after each step (the worker's watch over its loops)."""
    pool, clock = services.pool, services.clock
    report = await run_all(pool, services.program, clock, services.notifier, force=force)
    progress()
    reminded = await services.notifier.remind_expiring(pool, clock.now())
    done: dict[str, Any] = msgspec.to_builtins(report)
    done["reminded_lots"] = reminded
    progress()
    done |= await wallet_housekeeping.housekeeping(pool, clock.now())
    done |= await kartka_housekeeping.housekeeping(pool, clock.now())
    progress()
    long = analytics or pool
    rollup = await kpis_rollup.run(long, services.program.timezone)
    done["kpi_days_recomputed"] = rollup.days_recomputed
    progress()
    done |= await run_segment_jobs(long, services.program, clock.now(), force=force, daily=daily)
    return done


async def run_daily_segments(
    services: Services,
    analytics: Pool,
    stop: asyncio.Event | None = None,
    progress: Callable[[], None] = lambda: None,
) -> dict[str, Any] | None:
    """The daily recompute of every customer's facts, RFM and lifecycle (minutes at a million customers):
    the worker's own loop runs it, on the ``analytics`` pool, so the timed jobs go on meanwhile. None when
    it was not due. ``progress`` is called after each batch."""
    report = await run_daily_safely(analytics, services.program, services.clock.now(), stop=stop, progress=progress)
    return None if report is None else msgspec.to_builtins(report)
