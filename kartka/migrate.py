"""Numbered, append-only SQL migrations.

Each domain package keeps its own SQL in ``<package>/migrations/NNNN_name.sql``; numbers are unique
across packages and give the order. Applied migrations are recorded with a checksum so that editing
one after it shipped is caught instead of silently diverging. An advisory lock makes concurrent runs
(several API replicas starting at once) wait for each other, so running twice is safe.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import re
from dataclasses import dataclass

from kartka.db import Connection

logger = logging.getLogger(__name__)

#: Packages that own migrations, in no particular order (the numbers order them).
PACKAGES = ("kartka", "wallet", "notifications", "analytics")
#: Arbitrary constant shared by every process that migrates this schema.
ADVISORY_LOCK_KEY = 0x6B61_7274_6B61  # "kartka"

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    package: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover() -> list[Migration]:
    found: dict[int, Migration] = {}
    for package in PACKAGES:
        folder = importlib.resources.files(package).joinpath("migrations")
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            match = _NAME.match(entry.name)
            if match is None:
                continue
            migration = Migration(int(match[1]), match[2], package, entry.read_text(encoding="utf-8"))
            if migration.version in found:
                other = found[migration.version]
                raise MigrationError(
                    f"migration number {migration.version:04d} is used twice: "
                    f"{other.package}/{other.name} and {package}/{migration.name}"
                )
            found[migration.version] = migration
    return [found[v] for v in sorted(found)]


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    package text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def applied_versions(conn: Connection) -> dict[int, str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {r["version"]: r["checksum"] for r in rows}


async def pending(conn: Connection) -> list[Migration]:
    done = await applied_versions(conn)
    return [m for m in discover() if m.version not in done]


async def migrate(conn: Connection) -> list[Migration]:
    """Apply every migration not yet applied, each in its own transaction; return those applied."""
    migrations = discover()
    applied: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        done = await applied_versions(conn)
        for migration in migrations:
            checksum = done.get(migration.version)
            if checksum is not None:
                if checksum != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} changed after it was applied; "
                        "migrations are append-only: add a new one instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, package, checksum) VALUES ($1, $2, $3, $4)",
                    migration.version,
                    migration.name,
                    migration.package,
                    migration.checksum,
                )
            logger.info("applied migration %04d_%s", migration.version, migration.name)
            applied.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
    return applied
