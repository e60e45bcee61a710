"""Time as a dependency: services ask a clock, so tests can move time (pending points becoming
available, lots expiring, tier windows) without sleeping. Business rules never read ``now()`` in SQL;
they pass the clock's time as a parameter. Only bookkeeping takes the database's time: ``updated_at``
columns and the claims of the worker's jobs (``job_runs``), which the fake clock does not move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that stands still until told to move."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment
