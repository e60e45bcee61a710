"""Migrations: numbered, recorded, append-only, safe twice and from two processes at once."""

from __future__ import annotations

import asyncio
import secrets
import urllib.parse
from collections.abc import AsyncIterator

import asyncpg
import pytest

from kartka.migrate import MigrationError, discover, migrate, pending


@pytest.fixture
async def empty_database(admin_url: str) -> AsyncIterator[str]:
    name = f"kartka_migrate_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urllib.parse.urlunsplit(urllib.parse.urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def test_migrations_are_numbered_uniquely_and_in_order() -> None:
    found = discover()
    versions = [m.version for m in found]
    assert versions == sorted(set(versions))
    assert versions[0] == 1
    assert {m.package for m in found} >= {"kartka", "wallet"}


async def test_concurrent_and_repeated_runs_apply_each_migration_once(empty_database: str) -> None:
    conns = [await asyncpg.connect(empty_database) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, len(discover())]
        assert await migrate(conns[0]) == []
        assert await pending(conns[0]) == []
        rows = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in discover()]
    finally:
        for conn in conns:
            await conn.close()


async def test_an_edited_migration_is_refused(empty_database: str) -> None:
    conn = await asyncpg.connect(empty_database)
    try:
        await migrate(conn)
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(MigrationError, match="append-only"):
            await migrate(conn)
    finally:
        await conn.close()
