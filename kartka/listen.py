"""A ``LISTEN`` connection that comes back after the database does.

A listening connection dies with every PostgreSQL restart, and a frozen server leaves it open but deaf;
either way its notices stop without a word. :class:`Listener` owns one dedicated connection, notices
when it closes (or stops answering a periodic ping), tells its owner (``on_change``) so that whatever
relied on the notices stops relying on them, and reconnects with backoff until it listens again.

A ping that has not come back is not yet a dead connection, but it is no longer evidence of a live one:
:meth:`Listener.heard_lately` turns false as soon as the server is late with an answer (the ping
interval plus :data:`LATE`), a whole ping timeout before the connection is given up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from kartka.resilience import backoff

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    Connect: TypeAlias = Callable[[], Awaitable[asyncpg.Connection[Any]]]
else:  # asyncpg's classes are generic only in its stubs
    Connect = Callable[[], Awaitable[asyncpg.Connection]]
Callback = Callable[..., None]

#: How long past the ping interval the server may take to answer before the listener stops vouching for it.
LATE = 0.5


class Listener:
    """Keeps ``LISTEN`` on ``channels`` alive; ``listening`` says whether notices can be trusted now."""

    def __init__(
        self,
        connect: Connect,
        channels: Mapping[str, Callback],
        *,
        on_change: Callable[[bool], None] | None = None,
        ping_seconds: float = 5.0,
        max_backoff: float = 10.0,
        name: str = "listener",
    ) -> None:
        self._connect = connect
        self._channels = dict(channels)
        self._on_change = on_change
        self._ping = ping_seconds
        self._max_backoff = max_backoff
        self._name = name
        self._conn: asyncpg.Connection[Any] | None = None
        self._lost = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.listening = False
        #: How many times a listening connection was made (the first one included).
        self.connections = 0
        #: When (monotonic) the server last showed the connection alive: it was opened, or answered a ping.
        self.answered = 0.0

    def heard_lately(self) -> bool:
        """Whether notices can be trusted now: listening, and the server answered within the ping interval
        (plus :data:`LATE`). False from the moment a ping is late, not only once it timed out."""
        return self.listening and time.monotonic() - self.answered < self._ping + LATE

    async def start(self) -> None:
        """Listen now if the database answers (so the caller starts with notices), then keep at it."""
        with contextlib.suppress(Exception):
            await self._open()
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def close(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop()

    def _set(self, listening: bool) -> None:
        if listening != self.listening:
            self.listening = listening
            if self._on_change is not None:
                self._on_change(listening)

    async def _open(self) -> None:
        conn = await self._connect()
        try:
            for channel, callback in self._channels.items():
                await conn.add_listener(channel, callback)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._terminated)
        self._conn = conn
        self._lost.clear()
        self.connections += 1
        self.answered = time.monotonic()
        self._set(True)

    def _terminated(self, *_: object) -> None:
        self._set(False)
        self._lost.set()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._set(False)
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            if self._conn is None or self._conn.is_closed():
                await self._drop()
                try:
                    await self._open()
                except Exception as exc:
                    failures += 1
                    delay = backoff(failures, base=0.5, cap=self._max_backoff)
                    logger.warning("%s: cannot listen (%s); retrying in %.1f s", self._name, exc, delay)
                    await asyncio.sleep(delay)
                    continue
                if failures:
                    logger.info("%s: listening again", self._name)
                failures = 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), timeout=self._ping)
            if self._lost.is_set() or self._conn is None:
                continue
            try:  # a frozen server keeps the socket open: only a question it cannot answer shows it
                await self._conn.fetchval("SELECT 1", timeout=self._ping)
                self.answered = time.monotonic()
            except Exception as exc:
                logger.warning("%s: the listening connection stopped answering (%s)", self._name, exc)
                await self._drop()
