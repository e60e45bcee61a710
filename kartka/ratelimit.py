"""Sliding-window rate limits kept in PostgreSQL, so every API replica shares them.

A limit is "at most ``limit`` events per ``window`` for one subject" (a phone, a client address, a
username). Each admitted event is a row in ``rate_events``; the check counts the rows of the last
``window`` under a transaction-scoped advisory lock on the bucket, so two requests at once cannot both
take the last slot. A refused request records nothing and learns when the oldest counted event
leaves the window (``Retry-After``). Buckets are keyed hashes, so the table holds no phones or
addresses; the worker deletes rows older than a day.

Besides plain windows: :meth:`RateLimiter.backoff` lets a few events through and then makes each next
one wait twice as long as the last (sign-in failures, code resends: a guesser slows down fast, while a
stranger cannot shut the owner out for long), and :class:`TextBudget` caps the texts strangers can make
the service send, per destination country and in all (SMS pumping).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final

from kartka.crypto import keyed_hash
from kartka.db import Connection, Pool
from kartka.errors import RateLimited

logger = logging.getLogger(__name__)

#: Rows older than this are of no use to any limit (the longest window is an hour).
RETENTION: Final = timedelta(days=1)

_COUNT_AND_ADD: Final = """
    WITH recent AS (
        SELECT count(*) AS n, min(at) AS oldest FROM rate_events
         WHERE bucket = $1 AND at > greatest($2::timestamptz - make_interval(secs => $3), $5::timestamptz)
    ), added AS (
        INSERT INTO rate_events (bucket, at) SELECT $1, $2 FROM recent WHERE n < $4
    )
    SELECT n, oldest FROM recent
"""

_BACKOFF: Final = """
    SELECT count(*) AS n, max(at) AS latest FROM rate_events
     WHERE bucket = $1 AND at > greatest($2::timestamptz - make_interval(secs => $3), $4::timestamptz)
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
        since: datetime | None = None,
    ) -> int:
        """Count one event, or raise :class:`RateLimited` (with ``message``) when the window is full;
        returns how many events the window holds with this one.

        Runs in the caller's transaction: the event counts only if that transaction commits.
        ``locked``: the caller already serialises requests for this subject (holds a row lock that every
        such request takes first), so the advisory lock would add nothing. ``since``: events before it do
        not count (an admin lifted the limit).
        """
        bucket = self.bucket(name, subject)
        if not locked:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(encode($1::bytea, 'hex'), 0))", bucket)
        row = await conn.fetchrow(_COUNT_AND_ADD, bucket, now, window.total_seconds(), limit, since)
        assert row is not None
        if row["n"] >= limit:
            wait = (row["oldest"] + window - now).total_seconds()
            raise RateLimited(message, retry_after=max(1, math.ceil(wait)))
        return int(row["n"]) + 1

    async def backoff(
        self,
        conn: Connection,
        name: str,
        subject: str,
        *,
        free: int,
        first_delay: timedelta,
        max_delay: timedelta,
        window: timedelta,
        now: datetime,
        message: str,
        since: datetime | None = None,
    ) -> timedelta:
        """Count one event, or raise :class:`RateLimited` while a growing delay runs; returns the delay
        the next event will have to wait.

        Of the events in the last ``window`` (after ``since``: an admin's unlock), the first ``free`` go
        through at once; after that each must wait ``first_delay`` after the latest, doubled for every
        event past ``free``, up to ``max_delay``. Runs in the caller's transaction, under the bucket's lock.
        """

        def delay(n: int) -> timedelta:  # the wait after the latest, once n events are in the window
            return timedelta(0) if n < free else min(max_delay, first_delay * 2 ** min(n - free, 32))

        bucket = self.bucket(name, subject)
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(encode($1::bytea, 'hex'), 0))", bucket)
        row = await conn.fetchrow(_BACKOFF, bucket, now, window.total_seconds(), since)
        assert row is not None
        if row["latest"] is not None:
            wait = (row["latest"] + delay(row["n"]) - now).total_seconds()
            if wait > 0:
                raise RateLimited(message, retry_after=max(1, math.ceil(wait)))
        await conn.execute("INSERT INTO rate_events (bucket, at) VALUES ($1, $2)", bucket, now)
        return delay(row["n"] + 1)

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


class TextBudgetSpent(RateLimited):
    code = "sms-budget"


_HOUR: Final = timedelta(hours=1)


class TextBudget:
    """Hourly budgets of the texts (SMS, Viber) a stranger can make the service send: join-page cards and
    sign-in codes. Pumping fraud asks for texts to premium numbers abroad, paid per message; no limit
    per phone or per address stops it (fresh numbers, many addresses), a budget does. The home country is
    bounded by the total alone; any other by its own (smaller) budget. Refusals are counted per process
    and logged (the first, the tenth, the hundredth...), since a spent budget means an attack or a budget
    set too low, and both want a person. The service has no metrics endpoint; the log record carries the
    figures as fields of their own (``sms_budget``: ``country`` or ``total``; ``country``, the text's
    destination; ``budget_per_hour``; ``refused``, this process's count for that budget), which the JSON
    log format writes as keys for a log collector to count and alert on."""

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        per_hour: int,
        per_country_per_hour: int,
        countries: Mapping[str, int],
        home: str,
    ) -> None:
        self.limiter = limiter
        self.per_hour = per_hour
        self.per_country_per_hour = per_country_per_hour
        self.countries = dict(countries)
        self.home = home
        self.refused: Counter[str] = Counter()

    def country_budget(self, country: str) -> int | None:
        """Texts per hour to ``country``, or None when only the total bounds it (the home country)."""
        if country in self.countries:
            return self.countries[country]
        return None if country == self.home else self.per_country_per_hour

    async def spend(self, conn: Connection, country: str, now: datetime) -> None:
        """Count one text to ``country`` in the caller's transaction, or raise :class:`TextBudgetSpent`."""
        message = "we cannot send more texts right now; try again later"
        budget = self.country_budget(country)
        scope, limit = f"country {country}", budget
        try:
            if budget == 0:
                raise RateLimited(message, retry_after=int(_HOUR.total_seconds()))
            if budget is not None:
                await self.limiter.hit(
                    conn, "sms-country", country, limit=budget, window=_HOUR, now=now, message=message
                )
            scope, limit = "total", self.per_hour
            await self.limiter.hit(conn, "sms-total", "", limit=self.per_hour, window=_HOUR, now=now, message=message)
        except RateLimited as exc:
            self._count_refusal(scope, country, limit or 0)
            raise TextBudgetSpent(message, retry_after=exc.retry_after) from None

    def _count_refusal(self, scope: str, country: str, limit: int) -> None:
        self.refused[scope] += 1
        count = self.refused[scope]
        if str(count).rstrip("0") == "1":  # the 1st, 10th, 100th, ...: a line per order of magnitude
            logger.warning(
                "SMS budget spent (%s, %d an hour): %d texts refused by this process so far (this one to %s)",
                scope,
                limit,
                count,
                country,
                extra={
                    "sms_budget": scope.split(" ", 1)[0],
                    "country": country,
                    "budget_per_hour": limit,
                    "refused": count,
                },
            )


async def prune(pool: Pool, now: datetime) -> int:
    """Delete events no window can see any more; returns how many."""
    status = await pool.execute("DELETE FROM rate_events WHERE at < $1", now - RETENTION)
    return int(status.rsplit(" ", 1)[-1])
