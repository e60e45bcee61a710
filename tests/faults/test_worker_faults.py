"""The worker when PostgreSQL restarts, and ``kartka serve`` keeping its worker alive: real processes,
real restarts of the throwaway cluster, real SIGKILL and SIGSTOP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from boot.worker import EXIT_STUCK
from kartka.db import Pool
from kartka.settings import Settings
from notifications.model import Category, Channel
from notifications.outbox import Message, enqueue
from tests.faults.conftest import DATABASE, KARTKA, eventually, stopped, worker_env
from tests.pgcluster import Cluster
from tests.served import Served

Serve = Callable[[Settings], Served]

# One worker runs this group on a throwaway cluster of its own (pytest-xdist --dist loadgroup), beside
# the other half of the fault tests ("pg-cluster") on another worker and cluster.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pg-cluster-worker")]


async def send_one(pool: Pool, n: int) -> str:
    """Queue one SMS (the development provider "sends" it into dev_inbox); returns its recipient."""
    phone = f"+37529222{n:04d}"
    message = Message(
        key=f"fault:{n}",
        channel=Channel.SMS,
        recipient=phone,
        category=Category.TRANSACTIONAL,
        template="points_expiring",
        locale="ru",
        params={"points": 1250, "expires_on": "2026-09-02"},
    )
    async with pool.acquire() as conn, conn.transaction():
        assert await enqueue(conn, [message], datetime.now(UTC)) == 1
    return phone


async def delivered(pool: Pool, phone: str) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM dev_inbox WHERE recipient = $1", phone))


def children(pid: int, word: str) -> list[int]:
    """Live child processes of ``pid`` whose command line has ``word``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z" and word in cmdline:
            found.append(int(entry.name))
    return found


async def in_flight(
    cluster: Cluster, pool: Pool, log: Path, tables: tuple[str, ...] = ("lots",), *, seen: bool = True
) -> asyncpg.Connection[Any]:
    """Return once a statement of the worker is running on the server: it waits for a lock on ``tables``
    (the lots: its timed jobs; the outbox: its dispatcher), which the connection returned holds (until
    the caller terminates it or a crash ends it). ``seen=False`` returns once the lock is held, for a
    caller that learns of the wait otherwise."""
    blocker = await asyncpg.connect(cluster.url(DATABASE), timeout=10)
    await blocker.execute(f"BEGIN; LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
    if not seen:
        return blocker

    async def waiting() -> bool:
        return bool(  # (not on the blocker: inside its transaction pg_stat_activity stays as first read)
            await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'kartka-worker%' "
                "AND state = 'active' AND wait_event_type = 'Lock'"
            )
        )

    try:
        await eventually(waiting, 10, "a statement of the worker in flight", log)
    except BaseException:
        blocker.terminate()
        raise
    return blocker


async def test_the_worker_survives_database_restarts(
    cluster_settings: Settings, cluster: Cluster, cluster_pool: Pool, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    env = worker_env(cluster_settings, KARTKA_JOBS_INTERVAL_SECONDS="0.1", KARTKA_WORKER_HEARTBEAT_SECONDS="0.2")
    with log.open("wb") as out:
        worker = subprocess.Popen([KARTKA, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    try:
        phone = await send_one(cluster_pool, 1)
        await eventually(lambda: delivered(cluster_pool, phone), 15, "the first message", log)
        for _ in range(2):  # crashes while the worker has a statement in flight (and again after one)
            # Whichever of its loops comes round first: the timed jobs or the dispatcher.
            blocker = await in_flight(cluster, cluster_pool, log, ("lots", "outbox"))
            await asyncio.to_thread(cluster.restart)
            blocker.terminate()
            assert worker.poll() is None, f"the worker died:\n{log.read_text()[-3000:]}"
        phone = await send_one(cluster_pool, 2)
        await eventually(lambda: delivered(cluster_pool, phone), 15, "a message queued after the restarts", log)
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


async def test_the_worker_waits_when_the_database_fails_between_its_pools(
    cluster_settings: Settings, cluster: Cluster, cluster_pool: Pool, tmp_path: Path
) -> None:
    """The server has one connection slot left: the worker's main pool takes it, its analytics pool is
    refused (53300, too many clients). The worker retries both, not dies, and works once slots free up."""
    admin = await asyncpg.connect(cluster.url(DATABASE), timeout=10)
    hogs: list[asyncpg.Connection[Any]] = []
    log = tmp_path / "worker.log"
    worker = None
    try:
        slots = int(await admin.fetchval("SHOW max_connections"))
        used = await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
        hogs = list(
            await asyncio.gather(*(asyncpg.connect(cluster.url(DATABASE), timeout=10) for _ in range(slots - used - 1)))
        )
        with log.open("wb") as out:
            worker = subprocess.Popen(  # noqa: ASYNC220 - starting a process takes no time worth awaiting
                [KARTKA, "worker"], env=worker_env(cluster_settings), stdout=out, stderr=subprocess.STDOUT
            )

        async def refused() -> bool:
            return "too many clients" in log.read_text()

        await eventually(refused, 15, "the analytics pool to be refused a connection", log)
        assert worker.poll() is None, f"the worker died:\n{log.read_text()[-3000:]}"
        for hog in hogs[:5]:
            await hog.close()
        phone = await send_one(cluster_pool, 4)
        await eventually(lambda: delivered(cluster_pool, phone), 20, "the worker to send once it could connect", log)
    finally:
        if worker is not None and worker.poll() is None:
            await stopped(worker)
        for hog in hogs:
            hog.terminate()
        await admin.close()


async def test_serve_restarts_its_worker_and_ready_sees_a_stuck_one(
    cluster_settings: Settings, cluster: Cluster, cluster_pool: Pool, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    port = _free_port()
    env = worker_env(
        cluster_settings,
        KARTKA_WORKER_HEARTBEAT_SECONDS="0.2",
        KARTKA_WORKER_STALE_SECONDS="1.5",
        KARTKA_JOBS_INTERVAL_SECONDS="3600",
    )
    with log.open("wb") as out:
        serve = subprocess.Popen(  # noqa: ASYNC220 - starting a process takes no time worth awaiting
            [KARTKA, "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:

            async def ready() -> bool:
                try:
                    return (await client.get("/ready")).status_code == 200
                except httpx.HTTPError:
                    return False

            async def not_ready() -> bool:
                response = await client.get("/ready")
                return response.status_code == 503 and "worker" in response.json()["detail"]

            await eventually(ready, 30, "kartka serve to be ready", log)
            [first] = children(serve.pid, "worker")
            os.kill(first, signal.SIGKILL)  # a crash: serve starts another
            await eventually(  # the killed one may still be listed until serve has reaped it
                lambda: _async(children(serve.pid, "worker") not in ([], [first])), 10, "a new worker", log
            )
            [second] = children(serve.pid, "worker")
            assert second != first
            assert "restarting it" in log.read_text()
            phone = await send_one(cluster_pool, 3)
            await eventually(lambda: delivered(cluster_pool, phone), 15, "the new worker to send", log)

            os.kill(second, signal.SIGSTOP)  # stuck: alive, but its loops no longer come round
            try:
                await eventually(not_ready, 10, "/ready to see the stuck worker", log)
            finally:
                os.kill(second, signal.SIGCONT)
            await eventually(ready, 10, "/ready once the worker goes on", log)
            # The same worker: time it spent stopped is not held against its loops (it is not "stuck").
            assert children(serve.pid, "worker") == [second], log.read_text()[-3000:]
    finally:
        await stopped(serve, 30)
    assert not children(serve.pid, "worker")


async def test_a_hung_jobs_loop_ends_the_worker_and_ready_and_its_health_check_see_it(
    cluster_settings: Settings, cluster: Cluster, cluster_pool: Pool, serve: Serve, tmp_path: Path
) -> None:
    """The timed jobs hang (a statement waits for a lock far longer than a step may take) while the outbox
    goes on: the worker stops beating and exits with status 70, for whatever runs it to start a fresh one;
    ``/ready`` and ``kartka worker --check`` both turn to "not alive"."""
    log = tmp_path / "worker.log"
    env = worker_env(
        cluster_settings,
        KARTKA_JOBS_INTERVAL_SECONDS="0.1",
        KARTKA_WORKER_HEARTBEAT_SECONDS="0.2",
        KARTKA_WORKER_STALE_SECONDS="1.5",
        KARTKA_WORKER_STUCK_SECONDS="3",
        KARTKA_DB_STATEMENT_TIMEOUT_MS="30000",  # the jobs' statement would wait this long for the lock
        KARTKA_WORKER_HEALTH_FILE=str(tmp_path / "worker.alive"),
    )
    served = serve(msgspec.structs.replace(cluster_settings, worker_stale_seconds=1.5, worker_heartbeat_seconds=0.2))

    async def healthy() -> bool:
        done = await asyncio.to_thread(
            subprocess.run, [KARTKA, "worker", "--check"], env=env, capture_output=True, check=False, timeout=30
        )
        return done.returncode == 0

    with log.open("wb") as out:
        worker = subprocess.Popen([KARTKA, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    blocker = None
    try:
        async with httpx.AsyncClient(base_url=served.base, timeout=5) as client:

            async def ready() -> bool:
                return (await client.get("/ready")).status_code == 200

            await eventually(ready, 20, "/ready to see the worker", log)
            await eventually(healthy, 10, "kartka worker --check to pass", log)
            # The timed jobs wait on the lots' lock. The worker gives up on them after 3 s, which polling
            # the server's activity can miss on a loaded machine: its exit and its log say it waited.
            blocker = await in_flight(cluster, cluster_pool, log, seen=False)
            assert await asyncio.to_thread(worker.wait, 15) == EXIT_STUCK, log.read_text()[-3000:]
            assert "stuck (the timed jobs for" in log.read_text()

            async def not_ready() -> bool:
                return (await client.get("/ready")).status_code == 503

            await eventually(not_ready, 5, "/ready to see no worker", log)

            async def unhealthy() -> bool:
                return not await healthy()

            await eventually(unhealthy, 5, "kartka worker --check to fail", log)
    finally:
        if blocker is not None:
            blocker.terminate()
        if worker.poll() is None:
            worker.kill()
            worker.wait()


async def _async(value: bool) -> bool:
    return value


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
