"""Sliding-window rate limits kept in PostgreSQL, so every API replica shares them.

A limit is "at most ``limit`` events per ``window`` for one subject" (a phone, a client address, a
username). Each admitted event is a row in ``rate_events``; the check counts the rows of the last
``window`` under a transaction-scoped advisory lock on the bucket, so two requests at once cannot both
take the last slot. A refused request records nothing and learns when the oldest counted event
leaves the window (``Retry-After``). Buckets are keyed hashes, so the table holds no phones or
addresses; the worker deletes rows older than a day.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Final

from kartka.crypto import keyed_hash
from kartka.db import Connection, Pool
from kartka.errors import RateLimited

#: Rows older than this are of no use to any limit (the longest window is an hour).
RETENTION: Final = timedelta(days=1)

_COUNT_AND_ADD: Final = """
    WITH recent AS (
        SELECT count(*) AS n, min(at) AS oldest FROM rate_events
         WHERE bucket = $1 AND at > $2::timestamptz - make_interval(secs => $3)
    ), added AS (
        INSERT INTO rate_events (bucket, at) SELECT $1, $2 FROM recent WHERE n < $4
    )
    SELECT n, oldest FROM recent
"""


class RateLimiter:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def bucket(self, name: str, subject: str) -> bytes:
        return keyed_hash(self._key, name, subject)[:16]

    async def hit(
        self,
        conn: Connection,
        name: str,
        subject: str,
        *,
        limit: int,
        window: timedelta,
        now: datetime,
        message: str,
        locked: bool = False,
    ) -> None:
        """Count one event, or raise :class:`RateLimited` (with ``message``) when the window is full.

        Runs in the caller's transaction: the event counts only if that transaction commits.
        ``locked``: the caller already serialises requests for this subject (holds a row lock that every
        such request takes first), so the advisory lock would add nothing.
        """
        bucket = self.bucket(name, subject)
        if not locked:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(encode($1::bytea, 'hex'), 0))", bucket)
        row = await conn.fetchrow(_COUNT_AND_ADD, bucket, now, window.total_seconds(), limit)
        assert row is not None
        if row["n"] >= limit:
            wait = (row["oldest"] + window - now).total_seconds()
            raise RateLimited(message, retry_after=max(1, math.ceil(wait)))

    async def hit_now(
        self, pool: Pool, name: str, subject: str, *, limit: int, window: timedelta, now: datetime, message: str
    ) -> None:
        """:meth:`hit` in a transaction of its own: the attempt counts whatever the request does next
        (a guessed code that turns out wrong still used up one try)."""
        async with pool.acquire() as conn, conn.transaction():
            await self.hit(conn, name, subject, limit=limit, window=window, now=now, message=message)

    async def clear(self, conn: Connection, name: str, subject: str) -> None:
        """Forget a subject's events (a successful staff sign-in clears its failures)."""
        await conn.execute("DELETE FROM rate_events WHERE bucket = $1", self.bucket(name, subject))


async def prune(pool: Pool, now: datetime) -> int:
    """Delete events no window can see any more; returns how many."""
    status = await pool.execute("DELETE FROM rate_events WHERE at < $1", now - RETENTION)
    return int(status.rsplit(" ", 1)[-1])
