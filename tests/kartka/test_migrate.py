"""Migrations: numbered, recorded, append-only, safe twice and from two processes at once."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from kartka.migrate import MigrationError
from main.schema import SCHEMA


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
