"""Numbered, append-only SQL migrations.

Each package keeps its own SQL in ``<package>/migrations/NNNN_name.sql``; numbers are unique across
packages and give the order. Which packages own migrations is the composition root's knowledge
(``boot.schema``), handed in as a ``Schema``: this module knows no package above it. Applied migrations
are recorded with a checksum so that editing one after it shipped is caught instead of silently
diverging. An advisory lock makes concurrent runs (several API replicas starting at once) wait for each
other, so running twice is safe.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from kartka.db import Connection

logger = logging.getLogger(__name__)

#: Arbitrary constant shared by every process that migrates this schema.
ADVISORY_LOCK_KEY = 0x6B61_7274_6B61  # "kartka"

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


#: The oldest PostgreSQL the schema and its queries are tested on (CI's suite runs on it; README,
#: "Deploying"), as ``server_version_num`` gives it: major * 10000 + minor.
MINIMUM_SERVER_VERSION = 15_00_00


class MigrationError(RuntimeError):
    pass


class UnsupportedServer(MigrationError):
    """The database server is older than ``MINIMUM_SERVER_VERSION``."""


def _release(version_num: int) -> str:
    """``server_version_num`` as people write it: 150020 → 15.20, 90624 → 9.6.24."""
    if version_num >= 10_00_00:
        return f"{version_num // 10000}.{version_num % 10000}"
    return f"{version_num // 10000}.{version_num // 100 % 100}.{version_num % 100}"


def check_server_version(version_num: int, minimum: int = MINIMUM_SERVER_VERSION) -> None:
    """Refuse a server older than ``minimum`` (both as ``server_version_num``), naming both releases."""
    if version_num < minimum:
        raise UnsupportedServer(
            f"the database server is PostgreSQL {_release(version_num)}; Kartka needs PostgreSQL "
            f"{_release(minimum).removesuffix('.0')} or newer: upgrade the server or point DATABASE_URL at a newer one"
        )


async def require_supported_server(conn: Connection, minimum: int = MINIMUM_SERVER_VERSION) -> int:
    """The server's ``server_version_num``, once it is known to be ``minimum`` or newer."""
    version_num = int(await conn.fetchval("SELECT current_setting('server_version_num')"))
    check_server_version(version_num, minimum)
    return version_num


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    package: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(packages: Sequence[str]) -> list[Migration]:
    """Every migration of ``packages``, in order; a number used twice is an error."""
    found: dict[int, Migration] = {}
    for package in packages:
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


async def pending(conn: Connection, packages: Sequence[str]) -> list[Migration]:
    done = await applied_versions(conn)
    return [m for m in discover(packages) if m.version not in done]


async def migrate(
    conn: Connection, packages: Sequence[str], *, minimum: int = MINIMUM_SERVER_VERSION
) -> list[Migration]:
    """Apply every migration not yet applied, each in its own transaction; return those applied.

    ``kartka serve``, an API process that migrates on start and ``kartka migrate`` (the release step
    where they do not) come through here before anything is served: on a server older than the oldest
    supported one nothing is applied, and the start fails with a message naming both releases instead
    of a syntax error from some later query."""
    await require_supported_server(conn, minimum)
    migrations = discover(packages)
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


@dataclass(frozen=True, slots=True)
class Schema:
    """The database schema as the migrations of ``packages`` make it (the composition root names them)."""

    packages: tuple[str, ...]

    def discover(self) -> list[Migration]:
        return discover(self.packages)

    async def pending(self, conn: Connection) -> list[Migration]:
        return await pending(conn, self.packages)

    async def migrate(self, conn: Connection) -> list[Migration]:
        return await migrate(conn, self.packages)
