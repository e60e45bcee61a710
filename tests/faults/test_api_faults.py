"""The API when PostgreSQL restarts or freezes under it: real faults on the throwaway cluster, the app
served over real HTTP.

A connection lost mid-request is a 503 the till can retry (not a 500); a frozen database answers a till
with 503 + Retry-After within one deadline (not a minute of silence, nor two deadlines); a key revoked after a database
restart stops working within a second or two (not when the 30-second cache expires).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

import asyncpg
import httpx
import msgspec
import pytest

from api.state import services_of
from kartka.db import Pool
from kartka.keys import Scope, revoke_key
from kartka.settings import Settings
from tests.faults.conftest import DATABASE, eventually
from tests.helpers import Keys, problem
from tests.pgcluster import Cluster
from tests.served import Served

Serve = Callable[[Settings], Served]

# One worker runs this group on a throwaway cluster of its own (pytest-xdist --dist loadgroup), beside
# the other half of the fault tests ("pg-cluster-worker") on another worker and cluster.
pytestmark = pytest.mark.xdist_group("pg-cluster-api")


def assert_unavailable(response: httpx.Response) -> None:
    body = problem(response)
    assert body["status"] == 503, body
    assert body["code"] == "database-unavailable"
    assert int(response.headers["retry-after"]) > 0


async def test_a_connection_lost_mid_request_is_503_not_500(
    cluster_settings: Settings, serve: Serve, cluster: Cluster, cluster_pool: Pool
) -> None:
    patient = msgspec.structs.replace(cluster_settings, db_command_timeout_seconds=30.0)  # the crash comes first
    served = serve(patient)
    headers = await Keys(cluster_pool).headers(Scope.POS)
    async with httpx.AsyncClient(base_url=served.base, headers=headers, timeout=20) as client:
        assert (await client.post("/v1/pos/customers", json={"phone": "+375291110001"})).status_code == 201
        # Hold a request inside its transaction (it waits for a table lock), then crash the server.
        blocker = await asyncpg.connect(cluster.url(DATABASE))
        try:
            await blocker.execute("BEGIN; LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
            request = asyncio.create_task(client.post("/v1/pos/customers", json={"phone": "+375291110002"}))

            async def waiting() -> bool:
                return bool(
                    await cluster_pool.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kartka-api' "
                        "AND wait_event_type = 'Lock'"
                    )
                )

            await eventually(waiting, 10, "the request to wait for the lock")
            await asyncio.to_thread(cluster.restart)
        finally:
            blocker.terminate()
        assert_unavailable(await asyncio.wait_for(request, 20))

        async def registered() -> bool:  # the server is back: the same request goes through
            again = await client.post("/v1/pos/customers", json={"phone": "+375291110002"})
            return again.status_code == 201

        await eventually(registered, 10, "the API to use the restarted database")


async def test_a_statement_the_server_cuts_short_is_503(
    cluster_settings: Settings, serve: Serve, cluster: Cluster, cluster_pool: Pool
) -> None:
    # The server's statement_timeout comes before the client's deadline: PostgreSQL cancels the statement.
    strict = msgspec.structs.replace(cluster_settings, db_statement_timeout_ms=300, db_command_timeout_seconds=30.0)
    served = serve(strict)
    headers = await Keys(cluster_pool).headers(Scope.POS)
    async with httpx.AsyncClient(base_url=served.base, headers=headers, timeout=20) as client:
        blocker = await asyncpg.connect(cluster.url(DATABASE))
        try:
            await blocker.execute("BEGIN; LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
            assert_unavailable(await client.post("/v1/pos/customers", json={"phone": "+375291110040"}))
        finally:
            await blocker.close()


async def test_a_frozen_database_answers_503_within_seconds(
    cluster_settings: Settings, serve: Serve, cluster: Cluster, cluster_pool: Pool
) -> None:
    """Each till answered within one deadline (every ``KARTKA_DB_*_TIMEOUT_SECONDS`` set to ``T`` here),
    whichever wait it was in: never two of them in a row (tests/faults/test_pool_deadlines.py)."""
    deadline = 1.5
    settings = msgspec.structs.replace(
        cluster_settings,
        db_connect_timeout_seconds=deadline,
        db_acquire_timeout_seconds=deadline,
        db_command_timeout_seconds=deadline,
    )
    served = serve(settings)
    headers = await Keys(cluster_pool).headers(Scope.POS)
    unverified = await Keys(cluster_pool).headers(Scope.POS, terminal="till-2")  # its first request looks it up
    async with httpx.AsyncClient(base_url=served.base, headers=headers, timeout=30) as client:
        assert (await client.post("/v1/pos/customers", json={"phone": "+375291110003"})).status_code == 201

        async def timed(path: str, body: dict[str, str], extra: dict[str, str] | None = None) -> float:
            started = time.monotonic()
            assert_unavailable(await client.post(path, json=body, headers=extra))
            return time.monotonic() - started

        with cluster.frozen():
            # Several tills at once: idle pool connections, new connections, waiting for a free one, the
            # read-only path, the transactional one, a key not yet verified.
            waits = await asyncio.gather(
                *(timed("/v1/pos/customers", {"phone": f"+37529111{n:04d}"}) for n in range(10, 16)),
                timed("/v1/pos/identify", {"code": "+375291110003"}),
                timed("/v1/pos/identify", {"code": "+375291110003"}, unverified),
            )
            slowest = max(waits)
            assert slowest < deadline + 0.9, f"a till waited {slowest:.1f} s with every deadline {deadline} s"
            started = time.monotonic()
            assert (await client.get("/ready")).status_code == 503
            assert time.monotonic() - started < 3

        async def registered() -> bool:  # thawed, the same pool serves again
            again = await client.post("/v1/pos/customers", json={"phone": "+375291110020"})
            return again.status_code == 201

        await eventually(registered, 10, "the API to use the thawed database")


async def test_a_key_revoked_after_a_database_restart_stops_working_at_once(
    cluster_settings: Settings, serve: Serve, cluster: Cluster, cluster_pool: Pool
) -> None:
    served = serve(cluster_settings)
    keys = services_of(served.app.state).keys
    headers = await Keys(cluster_pool).headers(Scope.POS)
    key = headers["Authorization"].removeprefix("Bearer ")
    identify = {"code": "+375291110030"}
    async with httpx.AsyncClient(base_url=served.base, headers=headers, timeout=20) as client:
        assert (await client.post("/v1/pos/identify", json=identify)).status_code == 404
        assert keys.listening

        await asyncio.to_thread(cluster.restart)

        async def listening_again() -> bool:
            return getattr(keys, "listening", True)  # (the attribute is new with re-listening)

        await eventually(listening_again, 10, "the API to listen for revocations again")

        async def answered() -> bool:  # the key is verified (and cached) again on the restarted server
            return (await client.post("/v1/pos/identify", json=identify)).status_code == 404

        await eventually(answered, 10, "the API to answer on the restarted database")
        conn = await asyncpg.connect(cluster.url(DATABASE))
        try:
            await revoke_key(conn, key)
        finally:
            await conn.close()

        async def refused() -> bool:
            return (await client.post("/v1/pos/identify", json=identify)).status_code == 401

        await eventually(refused, 3, "the revoked key to be refused")


async def _backend(pool: Pool, application: str) -> int:
    pid: int | None = await pool.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = $2", application, DATABASE
    )
    assert pid is not None, f"no {application} connection"
    return pid


async def _refused_after(client: httpx.AsyncClient, path: str, body: dict[str, str], seconds: float) -> float:
    """Seconds until the till's key is refused (401), asking every 50 ms."""
    started = time.monotonic()

    async def refused() -> bool:
        return (await client.post(path, json=body)).status_code == 401

    await eventually(refused, seconds, "the revoked key to be refused")
    return time.monotonic() - started


async def test_a_key_revoked_while_nothing_listens_stops_working_within_the_unlistened_window(
    cluster_settings: Settings, serve: Serve, cluster: Cluster, cluster_pool: Pool
) -> None:
    """The listening connection is cut and cannot come back (the database takes no new connections); the
    API goes on with the connections it has. A key revoked meanwhile (no notice can arrive) is refused
    within KARTKA_KEY_CACHE_UNLISTENED_SECONDS, not when its 30-second cache entry expires."""
    window = 1.0
    served = serve(
        msgspec.structs.replace(cluster_settings, key_cache_seconds=30.0, key_cache_unlistened_seconds=window)
    )
    keys = services_of(served.app.state).keys
    headers = await Keys(cluster_pool).headers(Scope.POS)
    identify = {"code": "+375291110060"}
    admin = await asyncpg.connect(cluster.url(), timeout=10)  # on the "postgres" database
    holder = await asyncpg.connect(cluster.url(DATABASE), timeout=10)  # revokes from inside
    try:
        async with httpx.AsyncClient(base_url=served.base, headers=headers, timeout=20) as client:
            assert (await client.post("/v1/pos/identify", json=identify)).status_code == 404
            await admin.execute(f"ALTER DATABASE {DATABASE} ALLOW_CONNECTIONS false")
            await admin.fetchval("SELECT pg_terminate_backend($1)", await _backend(cluster_pool, "kartka-api-listener"))

            async def deaf() -> bool:
                return not keys.listening

            await eventually(deaf, 5, "the API to notice it no longer listens")
            assert (await client.post("/v1/pos/identify", json=identify)).status_code == 404  # cached again
            await revoke_key(holder, headers["Authorization"].removeprefix("Bearer "))
            took = await _refused_after(client, "/v1/pos/identify", identify, 5)
            assert took < window + 0.8, f"refused after {took:.1f} s"
            assert not keys.listening  # the window did it, not a notice
    finally:
        await admin.execute(f"ALTER DATABASE {DATABASE} ALLOW_CONNECTIONS true")
        await admin.close()
        await holder.close()


async def test_a_late_ping_is_enough_to_stop_trusting_the_key_cache(
    cluster_settings: Settings, serve: Serve, cluster: Cluster, cluster_pool: Pool
) -> None:
    """The listening connection's server process freezes (SIGSTOP): the socket stays open, no notice
    comes and no ping is answered. The cache is trusted for long only until a ping is late (the ping
    interval plus half a second), not until the ping times out a whole interval later."""
    ping = 2.0  # the listener pings every max(1, KARTKA_DB_COMMAND_TIMEOUT_SECONDS), with that timeout
    served = serve(msgspec.structs.replace(cluster_settings, key_cache_seconds=30.0, db_command_timeout_seconds=ping))
    headers = await Keys(cluster_pool).headers(Scope.POS)
    identify = {"code": "+375291110061"}
    async with httpx.AsyncClient(base_url=served.base, headers=headers, timeout=20) as client:
        assert (await client.post("/v1/pos/identify", json=identify)).status_code == 404  # the key is cached
        listener = await _backend(cluster_pool, "kartka-api-listener")

        async def pinged_at() -> object:
            return await cluster_pool.fetchval("SELECT query_start FROM pg_stat_activity WHERE pid = $1", listener)

        first = await pinged_at()

        async def pinged() -> bool:  # freeze right after a ping: the next one is a whole interval away
            return await pinged_at() != first

        await eventually(pinged, ping * 2, "the listener to ping")
        os.kill(listener, signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            async with cluster_pool.acquire() as conn:
                await revoke_key(conn, headers["Authorization"].removeprefix("Bearer "))
            await _refused_after(client, "/v1/pos/identify", identify, ping * 3)
            took = time.monotonic() - frozen
            # Late after ping + LATE (2.5 s); the ping's timeout would have ended at 2 * ping (4 s).
            assert took < ping + 1.2, f"refused {took:.1f} s after the freeze"
        finally:
            os.kill(listener, signal.SIGCONT)
