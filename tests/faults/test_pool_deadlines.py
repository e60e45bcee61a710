"""No path through the pool waits twice on a frozen database: whatever a request is doing when the server
stops answering (waiting for a connection, connecting, a statement, its commit or its rollback), it gives
up within one deadline, not that deadline plus a rollback or a reset on a connection that did not
answer the first time. So a till's worst case is the largest of the ``KARTKA_DB_*_TIMEOUT_SECONDS``
(5 s as shipped), never their sum.

Each case runs the pool the API runs (``kartka.db.create_pool``) against the throwaway cluster, frozen
with SIGSTOP, with every deadline set to ``T``, and times the whole ``async with`` a request's
connection lives in, its release included. Before the pool terminated such connections, a timed-out
statement cost ``2 T``: asyncpg waited another deadline for the frozen server to confirm the
cancellation, then sent it a ``ROLLBACK``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import pytest

from api.errors import database_away
from kartka.db import Pool, create_pool
from kartka.settings import Settings
from tests.faults.conftest import eventually
from tests.pgcluster import Cluster

# One worker runs this group on a throwaway cluster of its own (pytest-xdist --dist loadgroup), beside
# the other half of the fault tests ("pg-cluster") on another worker and cluster.
pytestmark = pytest.mark.xdist_group("pg-cluster-deadlines")

T = 1.0
#: Scheduling, the freeze itself and asyncpg's own steps; well under another deadline.
SLACK = 0.5


@pytest.fixture
async def bounded(cluster_settings: Settings) -> AsyncIterator[Pool]:
    settings = msgspec.structs.replace(
        cluster_settings,
        db_pool_min=1,
        db_pool_max=2,
        db_connect_timeout_seconds=T,
        db_acquire_timeout_seconds=T,
        db_command_timeout_seconds=T,
    )
    pool = await create_pool(settings, application="kartka-deadlines")
    yield pool
    pool.terminate()


async def _statement(pool: Pool, freeze: Callable[[], None]) -> None:
    async with pool.acquire() as conn:
        freeze()
        await conn.fetchval("SELECT 1")


async def _statement_in_transaction(pool: Pool, freeze: Callable[[], None]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.fetchval("SELECT 1")
        freeze()
        await conn.fetchval("SELECT 2")


async def _commit(pool: Pool, freeze: Callable[[], None]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.fetchval("SELECT 1")
        freeze()  # the next round trip is the COMMIT


class Refused(Exception):
    """A handler's own error (a 4xx): the transaction rolls back."""


async def _rollback(pool: Pool, freeze: Callable[[], None]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.fetchval("SELECT 1")
        freeze()  # the next round trip is the ROLLBACK
        raise Refused


async def _connect(pool: Pool, freeze: Callable[[], None]) -> None:
    await pool.expire_connections()  # the idle connection is closed (in the background) and replaced
    freeze()
    async with pool.acquire() as conn:  # a new connection: the server accepts the socket, then says nothing
        await conn.fetchval("SELECT 1")


PATHS: dict[str, Callable[[Pool, Callable[[], None]], Awaitable[None]]] = {
    "statement": _statement,
    "statement in a transaction": _statement_in_transaction,
    "commit": _commit,
    "rollback": _rollback,
    "connect": _connect,
}


@pytest.mark.parametrize("path", PATHS)
async def test_a_frozen_database_costs_one_deadline(path: str, cluster: Cluster, bounded: Pool) -> None:
    await bounded.fetchval("SELECT 1")  # a connection is open and idle
    started = 0.0

    def freeze() -> None:
        nonlocal started
        cluster.freeze()
        started = time.monotonic()

    try:
        with pytest.raises(Exception) as failed:  # noqa: PT011 - which one depends on the path: see below
            await PATHS[path](bounded, freeze)
        waited = time.monotonic() - started
    finally:
        cluster.thaw()
    assert database_away(failed.value), repr(failed.value)  # a 503 for the till
    assert waited < T + SLACK, f"{path}: waited {waited:.2f} s with every deadline {T} s"
    assert await bounded.fetchval("SELECT 1") == 1  # thawed, the pool serves again


async def test_waiting_for_a_busy_pool_and_then_its_statement_cost_one_deadline(
    cluster: Cluster, bounded: Pool
) -> None:
    """Every connection busy when the server freezes: the waiting request gets one back only when a stuck
    one gives up; it must connect anew then, and its acquire deadline (running since it began to wait)
    ends it, not a fresh statement deadline on top."""
    holding = [await bounded.acquire() for _ in range(2)]  # the pool's two connections
    try:
        cluster.freeze()
        started = time.monotonic()
        stuck = [asyncio.ensure_future(conn.fetchval("SELECT 1")) for conn in holding]
        with pytest.raises(TimeoutError):
            async with bounded.acquire() as conn:
                await conn.fetchval("SELECT 1")
        waited = time.monotonic() - started
        for outcome in await asyncio.gather(*stuck, return_exceptions=True):
            assert isinstance(outcome, TimeoutError)
    finally:
        cluster.thaw()
        for conn in holding:
            await bounded.release(conn)
    assert waited < T + SLACK, f"waited {waited:.2f} s with every deadline {T} s"
    assert await bounded.fetchval("SELECT 1") == 1


async def test_a_statement_given_up_on_a_live_server_is_cancelled_there(
    cluster_settings: Settings, cluster: Cluster, cluster_pool: Pool
) -> None:
    """Dropping the connection does not leave its statement running on a server that is slow rather than
    frozen: the cancel request asyncpg sent goes on, and the server stops the statement (and lets its
    locks go) at once, not at its own ``statement_timeout``."""
    patient_server = msgspec.structs.replace(
        cluster_settings, db_statement_timeout_ms=60_000, db_command_timeout_seconds=T, db_acquire_timeout_seconds=T
    )
    pool = await create_pool(patient_server, application="kartka-given-up")
    blocker = await cluster_pool.acquire()
    try:
        await blocker.execute("BEGIN; LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with pool.acquire() as conn, conn.transaction():
                await conn.fetchval("SELECT count(*) FROM customers")  # waits for the lock
        assert time.monotonic() - started < T + SLACK

        async def gone() -> bool:
            return not await cluster_pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kartka-given-up' "
                "AND wait_event_type = 'Lock'"
            )

        await eventually(gone, 2, "the server to stop the statement the client gave up on")
    finally:
        await blocker.execute("ROLLBACK")
        await cluster_pool.release(blocker)
        pool.terminate()
