"""Connections to PostgreSQL: the pool the API and worker share, and single connections for the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from kartka.settings import Settings

if TYPE_CHECKING:
    #: A connection or a pool connection proxy; repositories accept either.
    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]
    Pool: TypeAlias = asyncpg.Pool[Any]
else:  # asyncpg's classes are generic only in its stubs. Litestar resolves handler annotations at
    # run time and checks dependencies against them; handlers only ever get pool connections.
    Connection = PoolConnectionProxy
    Pool = asyncpg.Pool

_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


def _encode_json(value: Any) -> str:
    return _json_encoder.encode(value).decode()


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, schema="pg_catalog", encoder=_encode_json, decoder=_json_decoder.decode, format="text"
        )


def _server_settings(settings: Settings, application: str) -> dict[str, str]:
    return {
        "application_name": application,
        "statement_timeout": str(settings.db_statement_timeout_ms),
        "timezone": "UTC",
    }


def dsn(settings: Settings) -> str:
    if settings.database_url is None:
        raise RuntimeError("no DATABASE_URL: call kartka.embedded.ensure_database() first")
    return settings.database_url.reveal()


async def _keep_session(conn: asyncpg.Connection[Any]) -> None:
    """Release without asyncpg's default ``RESET ALL; UNLISTEN *; ...`` round trip.

    Our sessions carry nothing from one request to the next: no ``SET``, no cursors, LISTEN only on
    dedicated connections, session advisory locks always released in ``finally``. asyncpg still rolls
    back a transaction left open before calling this. Saves one round trip per request.
    """


async def create_pool(settings: Settings, *, application: str = "kartka-api") -> Pool:
    """A pool that connects lazily when ``KARTKA_DB_POOL_MIN`` is 0, so the API can start (and report
    not-ready) while the database is down."""
    return await asyncpg.create_pool(
        dsn(settings),
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        init=_init_connection,
        server_settings=_server_settings(settings, application),
        max_inactive_connection_lifetime=300,
        reset=_keep_session,
    )


async def connect(settings: Settings, *, application: str = "kartka-cli") -> asyncpg.Connection[Any]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(
        dsn(settings), server_settings=_server_settings(settings, application)
    )
    await _init_connection(conn)
    return conn
