"""The catalog of live promotions every API process prices with, reloaded the moment a change commits.

A change (approve, pause, resume, end, a group) moves ``promotion_catalog.version`` and sends
``NOTIFY kartka_promotions`` in its own transaction (``engine.promotions.store``). Each process listens
(``kartka.listen.Listener``, which reconnects after the database does) and, on a notice, reads the whole
catalog in one repeatable-read transaction and swaps it in with one assignment: a cart is priced with
the catalog before the change or the one after, never a mix. When LISTEN is away, a poll of the version
every ``poll_seconds`` (and a slower one while listening, in case a notice is lost) does the same.

Schedule boundaries need no reload: the catalog carries each promotion's ``when`` and the engine checks
the time of every cart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec

from engine.promotions.book import NEW_BUDGET_ROWS, REBASE_BUDGET_ROWS, has_budget
from engine.promotions.evaluate import Active, Catalog
from engine.promotions.model import DEFAULT_GROUP, Group, Promotion
from engine.promotions.store import CHANNEL
from kartka.db import Connection, Pool
from kartka.listen import Connect, Listener

logger = logging.getLogger(__name__)

#: How often the version is compared while LISTEN is away, and while it is there (a lost notice).
POLL_UNLISTENED: Final = 0.5
POLL_LISTENING: Final = 5.0


class LivePromotion(msgspec.Struct, frozen=True):
    """One promotion as it prices carts: its approved revision."""

    id: str
    revision: int
    promotion: Promotion
    created_at: datetime


class Snapshot(msgspec.Struct, frozen=True):
    """Everything that prices carts, read at one moment: the promotions that run (active, not paused;
    their ``when`` still to be checked against the cart's time) and the arbitration groups."""

    version: int
    promotions: tuple[LivePromotion, ...] = ()
    groups: dict[str, Group] = msgspec.field(default_factory=lambda: {DEFAULT_GROUP: Group()})
    loaded_at: float = 0.0
    """``time.monotonic()`` when this process read it."""
    stored: bool = False
    """Whether any stored promotion ever went live (even one ended or archived since). Until one does, a
    new installation runs the program's two starter promotions (``engine.promotions.legacy``)."""

    def catalog(self, zone: ZoneInfo) -> Catalog:
        """The evaluation core's indexed catalog of this snapshot; ties in priority go to the earlier
        created (the snapshot is in creation order)."""
        return Catalog(
            (Active(p.promotion, p.revision, seq) for seq, p in enumerate(self.promotions)), self.groups, zone=zone
        )


EMPTY: Final = Snapshot(version=0)


async def read_snapshot(conn: Connection) -> Snapshot:
    """The catalog in one repeatable-read transaction: the version and the rows belong together."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        version = await conn.fetchval("SELECT version FROM promotion_catalog") or 0
        stored = await conn.fetchval("SELECT EXISTS (SELECT FROM promotions WHERE live_revision IS NOT NULL)")
        groups = {
            row["id"]: Group(mode=row["mode"], priority=row["priority"], max_discount_bp=row["max_discount_bp"])
            for row in await conn.fetch("SELECT id, mode, priority, max_discount_bp FROM promotion_groups")
        }
        rows = await conn.fetch(
            """
            SELECT p.id, p.live_revision, p.created_at, r.body
              FROM promotions p
              JOIN promotion_revisions r ON r.promotion_id = p.id AND r.revision = p.live_revision
             WHERE p.status = 'active'
             ORDER BY p.created_at, p.id
            """
        )
    groups.setdefault(DEFAULT_GROUP, Group())
    return Snapshot(
        version=version,
        promotions=tuple(
            LivePromotion(
                id=row["id"],
                revision=row["live_revision"],
                promotion=msgspec.convert(row["body"], Promotion),
                created_at=row["created_at"],
            )
            for row in rows
        ),
        groups=groups,
        loaded_at=time.monotonic(),
        stored=stored,
    )


async def ensure_budget_rows(conn: Connection, snapshot: Snapshot) -> bool:
    """A budget row for every promotion with a budget, true to its uses, before any commit prices with
    it: a commit then only locks rows, in id order, and two first commits never make rows in each
    other's way. False, changing nothing, when the catalog is no longer ``snapshot``'s version (read it
    again): a stale catalog must not undo what a newer one did to the rows.

    Rows are never deleted. A commit counts only into the rows of the budgets it prices with, so a row
    whose promotion has no budget in ``snapshot`` stops counting (``counting``; a process still on the
    catalog before keeps counting into it until it reloads), and when a budget comes back its row is
    made again from the uses. Left out: what processes on a catalog without the budget give while it is
    added (they neither check it nor count into it), until each has reloaded."""
    budgeted = sorted(p.id for p in snapshot.promotions if has_budget(p.promotion))
    async with conn.transaction():
        # Shared: a change to the catalog waits until the rows are done (and this waits for one under way).
        if (await conn.fetchval("SELECT version FROM promotion_catalog FOR SHARE") or 0) != snapshot.version:
            return False
        # The rows whose counting changes, locked in one statement in id order, as commits lock them.
        changing = await conn.fetch(
            "SELECT promotion_id, counting FROM promotion_budgets"
            " WHERE (counting AND promotion_id <> ALL($1::text[])) OR (NOT counting AND promotion_id = ANY($1::text[]))"
            " ORDER BY promotion_id FOR UPDATE",
            budgeted,
        )
        if gone := [r["promotion_id"] for r in changing if r["counting"]]:
            await conn.execute("UPDATE promotion_budgets SET counting = false WHERE promotion_id = ANY($1)", gone)
        if back := [r["promotion_id"] for r in changing if not r["counting"]]:
            await conn.execute(REBASE_BUDGET_ROWS, back)  # a statement after the locks: it sees every count
        if budgeted:
            await conn.execute(
                f"INSERT INTO promotion_budgets (promotion_id, orders, discount, points) {NEW_BUDGET_ROWS}"
                " ON CONFLICT (promotion_id) DO NOTHING",
                budgeted,
            )
    return True


class LiveCatalog:
    """Holds this process's current :class:`Snapshot` and keeps it current.

    ``on_swap`` callbacks (the embedded engine's catalog holder) get every new snapshot as it is installed.
    """

    def __init__(
        self,
        pool: Pool,
        connect: Connect,
        *,
        poll_unlistened: float = POLL_UNLISTENED,
        poll_listening: float = POLL_LISTENING,
    ) -> None:
        self._pool = pool
        self._poll = (poll_unlistened, poll_listening)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[Snapshot], object]] = []
        self.current: Snapshot = EMPTY
        self.reloads = 0
        self.listener = Listener(
            connect,
            {CHANNEL: self._notified},
            on_change=self._listening_changed,
            name="promotion changes",
        )

    def on_swap(self, callback: Callable[[Snapshot], object]) -> Callable[[], None]:
        """Call ``callback`` with the current snapshot now and with every new one; returns the unsubscribe."""
        self._listeners.append(callback)
        callback(self.current)
        return lambda: self._listeners.remove(callback)

    async def start(self) -> None:
        """Listen, read the catalog once (so the first cart is priced with it), then keep it current."""
        await self.listener.start()
        with contextlib.suppress(Exception):  # a database that is away: the loop retries
            await self.reload()
        self._task = asyncio.create_task(self._run(), name="promotion catalog")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.listener.close()

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    def _listening_changed(self, listening: bool) -> None:
        # Back after a gap: whatever changed meanwhile sent its notice to no one. Look now.
        self._wake.set()

    async def reload(self, *, force: bool = False) -> bool:
        """Read the catalog if its version moved (or ``force``); True when a new one was installed."""
        async with self._pool.acquire() as conn:
            if not force and self.current is not EMPTY:
                version = await conn.fetchval("SELECT version FROM promotion_catalog") or 0
                if version == self.current.version:
                    return False
            snapshot = await read_snapshot(conn)
            while not await ensure_budget_rows(conn, snapshot):  # the catalog changed meanwhile
                snapshot = await read_snapshot(conn)
        self._install(snapshot)
        return True

    def _install(self, snapshot: Snapshot) -> None:
        self.current = snapshot  # one assignment: a cart sees the old catalog or the new one
        self.reloads += 1
        for callback in self._listeners:
            callback(snapshot)

    async def _run(self) -> None:
        while True:
            timeout = self._poll[1] if self.listener.listening else self._poll[0]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            self._wake.clear()
            try:
                await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning(
                    "cannot reload the promotion catalog (%s); pricing with version %s", exc, self.current.version
                )
