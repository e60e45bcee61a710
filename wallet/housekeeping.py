"""Deleting what no longer serves in the wallet's own tables: sign-in codes past their expiry (a code is
useless then, and it names a phone)."""

from __future__ import annotations

from datetime import datetime

from kartka.db import Pool


async def housekeeping(pool: Pool, now: datetime) -> dict[str, int]:
    """Run by the worker with its timed jobs (``main.jobs``); safe from several workers at once."""
    codes = await pool.execute("DELETE FROM signin_codes WHERE expires_at < $1", now)
    return {"pruned_signin_codes": int(codes.rsplit(" ", 1)[-1])}
