"""The timed jobs, in the order the worker runs them each round and ``kartka jobs run`` runs them once.

Each package owns its jobs and its housekeeping; this is only the schedule.
"""

from __future__ import annotations

from typing import Any

import msgspec

from analytics import kpis_rollup
from analytics.segments_daily import run_daily_safely, run_segment_jobs
from boot.services import Services
from kartka import housekeeping as kartka_housekeeping
from wallet import housekeeping as wallet_housekeeping
from wallet.jobs import run_all


async def run_jobs(services: Services, *, force: bool = False, daily: bool = True) -> dict[str, Any]:
    """Expire due lots, evaluate tier downgrades (``force``: even if today's run is done), birthday
    bonuses, pass updates, expiry reminders, then prune, then bring the KPI rollups and the segments'
    facts up to date (once a day also RFM and lifecycle, unless ``daily`` is false: the worker runs that
    in a loop of its own, :func:`run_daily_segments`); returns what was done."""
    pool, clock = services.pool, services.clock
    report = await run_all(pool, services.program, clock, services.notifier, force=force)
    reminded = await services.notifier.remind_expiring(pool, clock.now())
    done: dict[str, Any] = msgspec.to_builtins(report)
    done["reminded_lots"] = reminded
    done |= await wallet_housekeeping.housekeeping(pool, clock.now())
    done |= await kartka_housekeeping.housekeeping(pool, clock.now())
    rollup = await kpis_rollup.run(pool, services.program.timezone)
    done["kpi_days_recomputed"] = rollup.days_recomputed
    done |= await run_segment_jobs(pool, services.program, clock.now(), force=force, daily=daily)
    return done


async def run_daily_segments(services: Services) -> dict[str, Any] | None:
    """The daily recompute of every customer's facts, RFM and lifecycle (minutes at a million customers):
    the worker's own loop runs it, so the timed jobs go on meanwhile. None when it was not due."""
    report = await run_daily_safely(services.pool, services.program, services.clock.now())
    return None if report is None else msgspec.to_builtins(report)
