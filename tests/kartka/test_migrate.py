"""Migrations: numbered, recorded, append-only, safe twice and from two processes at once, and only on a
PostgreSQL the schema is tested on."""

from __future__ import annotations

import asyncio
import os
import re

import asyncpg
import pytest

from boot.schema import SCHEMA
from kartka.db import Connection
from kartka.migrate import (
    MINIMUM_SERVER_VERSION,
    MigrationError,
    UnsupportedServer,
    check_server_version,
    migrate,
    require_supported_server,
)


def test_migrations_are_numbered_uniquely_and_in_order() -> None:
    found = SCHEMA.discover()
    versions = [m.version for m in found]
    assert versions == sorted(set(versions))
    assert versions[0] == 1
    assert {m.package for m in found} >= {"kartka", "wallet"}


async def test_concurrent_and_repeated_runs_apply_each_migration_once(fresh_database: str) -> None:
    conns = [await asyncpg.connect(fresh_database) for _ in range(3)]
    try:
        results = await asyncio.gather(*(SCHEMA.migrate(c) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, len(SCHEMA.discover())]
        assert await SCHEMA.migrate(conns[0]) == []
        assert await SCHEMA.pending(conns[0]) == []
        rows = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in SCHEMA.discover()]
    finally:
        for conn in conns:
            await conn.close()


async def test_an_edited_migration_is_refused(fresh_database: str) -> None:
    conn = await asyncpg.connect(fresh_database)
    try:
        await SCHEMA.migrate(conn)
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(MigrationError, match="append-only"):
            await SCHEMA.migrate(conn)
    finally:
        await conn.close()


@pytest.mark.parametrize(("version_num", "release"), [(90624, "9.6.24"), (140010, "14.10"), (149999, "14.9999")])
def test_a_server_older_than_the_minimum_is_refused_naming_both_releases(version_num: int, release: str) -> None:
    needed = re.escape(f"PostgreSQL {release}; Kartka needs PostgreSQL 15 or newer")
    with pytest.raises(UnsupportedServer, match=needed):
        check_server_version(version_num)


@pytest.mark.parametrize("version_num", [MINIMUM_SERVER_VERSION, 150020, 180001])
def test_the_minimum_release_and_newer_ones_are_accepted(version_num: int) -> None:
    check_server_version(version_num)


async def test_migrate_applies_nothing_on_a_server_older_than_the_minimum(fresh_database: str) -> None:
    """The real server, held to a minimum one release above it: migrate stops before its first statement."""
    conn = await asyncpg.connect(fresh_database)
    try:
        version_num = await require_supported_server(conn)
        with pytest.raises(UnsupportedServer, match="Kartka needs PostgreSQL"):
            await migrate(conn, SCHEMA.packages, minimum=version_num + 1)
        assert await conn.fetchval("SELECT to_regclass('schema_migrations')") is None
    finally:
        await conn.close()


async def test_the_suite_runs_on_a_supported_server_of_the_major_ci_names(conn: Connection) -> None:
    """CI sets KARTKA_TEST_POSTGRES_MAJOR (.ci/run): a run that found another server, or none and fell
    back to the embedded one, fails instead of passing on a release the README does not claim it tests."""
    version_num = await require_supported_server(conn)
    wanted = os.environ.get("KARTKA_TEST_POSTGRES_MAJOR")
    if wanted:
        assert version_num // 10000 == int(wanted), (
            f"the tests ran on PostgreSQL {version_num // 10000}, not {wanted}: set KARTKA_TEST_ADMIN_URL"
        )
