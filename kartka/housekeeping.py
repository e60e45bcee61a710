"""Deleting what no longer serves in the infrastructure's own tables: counted requests past every window,
ended sessions, the heartbeats of workers long gone. Each package prunes its own tables (the wallet its
sign-in codes, ``wallet.housekeeping``); the composition root schedules them all (``main.jobs``)."""

from __future__ import annotations

from datetime import datetime

from kartka import heartbeat, ratelimit, tokens
from kartka.db import Pool


async def housekeeping(pool: Pool, now: datetime) -> dict[str, int]:
    """Run by the worker with its timed jobs; safe from several workers at once."""
    pruned = {
        "pruned_rate_events": await ratelimit.prune(pool, now),
        "pruned_sessions": await tokens.prune(pool, now),
    }
    await heartbeat.forget_old(pool)
    return pruned
