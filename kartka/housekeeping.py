"""Deleting what no longer serves: counted requests past every window, ended sessions, dead codes."""

from __future__ import annotations

from datetime import datetime

from kartka import ratelimit, tokens
from kartka.db import Pool


async def housekeeping(pool: Pool, now: datetime) -> dict[str, int]:
    """Run by the worker with its timed jobs; safe from several workers at once."""
    codes = await pool.execute("DELETE FROM signin_codes WHERE expires_at < $1", now)
    return {
        "pruned_rate_events": await ratelimit.prune(pool, now),
        "pruned_sessions": await tokens.prune(pool, now),
        "pruned_signin_codes": int(codes.rsplit(" ", 1)[-1]),
    }
