"""Worker heartbeats: a row per worker, refreshed while its loops make progress, read by ``/ready``; and
the worker's own watch over its loops (:class:`Loops`) with a file on its machine that says it is alive.

A worker that died, froze, or sits in a loop that no longer comes round stops beating; every API
replica sees that in the database, whichever machine the worker ran on. A loop that hangs (an await
that never returns) is seen by the worker itself: it stops beating and exits, so that whatever runs it
(``kartka serve``, Docker's restart policy, systemd) starts a fresh one. The file (``kartka worker
--check``) is for health checks on the worker's own machine, and needs no database: a worker that
backs off while the database is away is alive.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from kartka.db import Connection, Pool
from kartka.settings import Settings

#: Rows of workers silent this long are deleted by the next beat of any worker.
FORGET_AFTER_SECONDS = 86_400


async def beat(pool: Pool, name: str) -> None:
    """Record that worker ``name`` is alive now (database time)."""
    await pool.execute(
        """
        INSERT INTO worker_heartbeats (name, host, pid) VALUES ($1, $2, $3)
        ON CONFLICT (name) DO UPDATE SET beat_at = now()
        """,
        name,
        socket.gethostname()[:200],
        os.getpid(),
    )


async def forget_old(pool: Pool) -> None:
    await pool.execute(
        "DELETE FROM worker_heartbeats WHERE beat_at < now() - make_interval(secs => $1)", float(FORGET_AFTER_SECONDS)
    )


async def seconds_since_last_beat(conn: Connection) -> float | None:
    """Seconds since the freshest heartbeat of any worker; None when no worker ever beat."""
    age: float | None = await conn.fetchval(
        "SELECT extract(epoch FROM now() - max(beat_at))::float8 FROM worker_heartbeats"
    )
    return age


class Loops:
    """A worker's loops, each with how long it may stay inside one round (or one step of a round: a loop
    says so with :meth:`came_round`) before the worker counts as stuck. A loop sleeping between rounds is
    not judged, and time in which the whole process did not run (stopped, its machine paused) is not
    held against any loop (:meth:`resumed`)."""

    def __init__(self) -> None:
        self._within: dict[str, float] = {}
        self._busy: dict[str, float | None] = {}
        self._alive: dict[str, Callable[[], float]] = {}
        self._resumed = 0.0

    def watch(self, name: str, within: float, *, alive: Callable[[], float] | None = None) -> None:
        """Judge loop ``name``: stuck past ``within`` seconds in a round (0: never). ``alive``: for a loop
        that keeps its own time, when (monotonic) it last came round; such a loop is always judged."""
        self._within[name] = within
        self._busy[name] = None
        if alive is not None:
            self._alive[name] = alive

    @contextlib.contextmanager
    def round(self, name: str) -> Iterator[None]:
        self._busy[name] = time.monotonic()
        try:
            yield
        finally:
            self._busy[name] = None

    def came_round(self, name: str) -> None:
        """A step of the current round is done: the loop goes on."""
        if self._busy.get(name) is not None:
            self._busy[name] = time.monotonic()

    def resumed(self) -> None:
        """The process did not run for a while (noticed by whoever slept far longer than asked): every
        loop's time starts again now."""
        self._resumed = time.monotonic()

    def stuck(self) -> dict[str, float]:
        """The loops stuck now, with how long each has been inside its round or step."""
        now = time.monotonic()
        found = {}
        for name, within in self._within.items():
            probe = self._alive.get(name)
            since = probe() if probe is not None else self._busy[name]
            if since is None or not within:
                continue
            lag = now - max(since, self._resumed)
            if lag > within:
                found[name] = lag
        return found


def health_file(configured: Path | None) -> Path:
    """Where the worker says it is alive: ``KARTKA_WORKER_HEALTH_FILE``, or a file in the temp folder."""
    return configured or Path(tempfile.gettempdir()) / "kartka-worker.alive"


def report_alive(path: Path) -> None:
    """Record now as the last moment the worker's loops were all alive (the file's modification time)."""
    with contextlib.suppress(OSError):  # a full or read-only disk must not stop the worker
        path.touch()


def seconds_since_alive(path: Path) -> float | None:
    """Seconds since a worker on this machine last said it was alive; None when none ever did."""
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except OSError:
        return None


def alive_here(settings: Settings) -> tuple[bool, str]:
    """Whether a worker on this machine said lately that its loops are alive, and in words (``kartka
    worker --check``, the container's health check); no database needed."""
    path = health_file(settings.worker_health_file)
    age = seconds_since_alive(path)
    limit = max(settings.worker_stale_seconds or settings.worker_stuck_seconds, 3 * settings.worker_heartbeat_seconds)
    if age is None:
        return False, f"no worker has reported alive here ({path})"
    if age > limit:
        return False, f"the worker last reported alive {age:.0f} s ago (more than {limit:g} s; {path})"
    return True, f"the worker reported alive {age:.0f} s ago"
