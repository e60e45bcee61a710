"""A request whose server process goes away under it: killed by an operator (``pg_terminate_backend``),
killed outright (SIGKILL), or taken down with the rest when another server process crashes (the
postmaster ends every session, SQLSTATE 57P02). Each is a 503 with Retry-After the till retries, never a
500, on the read-only path (identify: a connection taken inline, one statement) and the transactional one
(register: the request's transaction), over real HTTP against the throwaway cluster.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import asyncpg
import httpx
import msgspec
import pytest

from kartka.db import Pool
from kartka.keys import Scope
from kartka.settings import Settings
from tests.faults.conftest import DATABASE, eventually
from tests.faults.test_api_faults import assert_unavailable
from tests.helpers import Keys
from tests.pgcluster import Cluster
from tests.served import Served

# One worker runs this group on a throwaway cluster of its own (pytest-xdist --dist loadgroup), beside
# the other half of the fault tests ("pg-cluster-worker") on another worker and cluster.
pytestmark = pytest.mark.xdist_group("pg-cluster-backends")

PATHS = {
    "read-only": ("/v1/pos/identify", {"code": "+375291110050"}),
    "transactional": ("/v1/pos/customers", {"phone": "+375291110051"}),
}


async def _terminate(cluster: Cluster, request_pid: int, blocker_pid: int) -> None:
    conn = await asyncpg.connect(cluster.url(DATABASE), timeout=5)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", request_pid)
    finally:
        await conn.close()


async def _kill_it(cluster: Cluster, request_pid: int, blocker_pid: int) -> None:
    os.kill(request_pid, signal.SIGKILL)


async def _kill_another(cluster: Cluster, request_pid: int, blocker_pid: int) -> None:
    os.kill(blocker_pid, signal.SIGKILL)  # the postmaster then ends every other session: 57P02


KILLS = {"pg_terminate_backend": _terminate, "SIGKILL": _kill_it, "another crashed": _kill_another}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kill", KILLS)
async def test_a_backend_killed_mid_request_is_503(
    path: str,
    kill: str,
    cluster_settings: Settings,
    serve: Callable[[Settings], Served],
    cluster: Cluster,
    cluster_pool: Pool,
) -> None:
    patient = msgspec.structs.replace(cluster_settings, db_command_timeout_seconds=30.0)  # the kill comes first
    served = serve(patient)
    headers = await Keys(cluster_pool).headers(Scope.POS)
    url, body = PATHS[path]
    async with httpx.AsyncClient(base_url=served.base, headers=headers, timeout=20) as client:
        assert (await client.post(url, json=body)).status_code in (200, 201, 404)  # the key is cached now
        blocker = await asyncpg.connect(cluster.url(DATABASE))
        try:
            blocker_pid = blocker.get_server_pid()
            # Hold the request inside its statement: it waits for the lock on the shoppers' tables.
            await blocker.execute("BEGIN; LOCK TABLE customers, cards IN ACCESS EXCLUSIVE MODE")
            request = asyncio.create_task(client.post(url, json=body))
            waiting: list[int] = []

            async def blocked() -> bool:
                waiting[:] = (
                    await cluster_pool.fetchval(
                        "SELECT array_agg(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'kartka-api' AND wait_event_type = 'Lock'"
                    )
                    or []
                )
                return len(waiting) == 1

            await eventually(blocked, 10, "the request to wait for the lock")
            await KILLS[kill](cluster, waiting[0], blocker_pid)
            assert_unavailable(await asyncio.wait_for(request, 20))
        finally:
            blocker.terminate()

        async def answered() -> bool:  # the server is whole again: the same request goes through
            return (await client.post(url, json=body)).status_code in (200, 201, 404)

        await eventually(answered, 20, "the API to answer again")
