"""What counts as "the database is away" (a 503 the client retries), on errors the real server and the
real driver raise: by SQLSTATE (the connection class 08, sessions ended by a crash, a shutdown or an
operator, 57P0x; a cancelled statement; no connection slot), and the driver's own connection errors."""

from __future__ import annotations

import asyncio
import errno
import socket

import asyncpg
import pytest

from api.errors import database_away
from kartka.db import Connection, connect, unreachable
from kartka.settings import Settings


async def _raised(conn: Connection, sqlstate: str) -> asyncpg.PostgresError:
    """The error the server sends for ``sqlstate``, as asyncpg raises it; the session lives on."""
    with pytest.raises(asyncpg.PostgresError) as caught:
        await conn.execute(f"DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '{sqlstate}'; END $$")
    return caught.value


@pytest.mark.parametrize(
    ("sqlstate", "kind"),
    [
        ("08000", asyncpg.PostgresConnectionError),
        ("08003", asyncpg.ConnectionDoesNotExistError),
        ("08006", asyncpg.ConnectionFailureError),
        ("57014", asyncpg.QueryCanceledError),
        ("57P01", asyncpg.AdminShutdownError),
        ("57P02", asyncpg.CrashShutdownError),
        ("57P03", asyncpg.CannotConnectNowError),
        ("57P05", asyncpg.IdleSessionTimeoutError),
        ("53300", asyncpg.TooManyConnectionsError),
    ],
)
async def test_the_server_saying_it_is_going_away_is_unreachable(
    conn: Connection, sqlstate: str, kind: type[asyncpg.PostgresError]
) -> None:
    error = await _raised(conn, sqlstate)
    assert type(error) is kind
    assert unreachable(error)
    assert database_away(error)


@pytest.mark.parametrize("sqlstate", ["23505", "22003", "40001", "42P01", "P0001", "57000", "53200"])
async def test_errors_of_the_request_are_not(conn: Connection, sqlstate: str) -> None:
    error = await _raised(conn, sqlstate)
    assert not unreachable(error)
    assert not database_away(error)


async def test_a_closed_connection_is_unreachable(settings: Settings) -> None:
    conn = await connect(settings)
    await conn.close()
    with pytest.raises(asyncpg.InterfaceError) as closed:
        await conn.fetchval("SELECT 1")
    assert unreachable(closed.value), closed.value


async def test_a_bug_in_using_a_connection_is_not_unreachable(conn: Connection) -> None:
    first = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(0.2)"))
    await asyncio.sleep(0.02)
    with pytest.raises(asyncpg.InterfaceError) as busy:  # two statements at once on one connection
        await conn.fetchval("SELECT 1")
    await first
    assert not unreachable(busy.value)
    with pytest.raises(asyncpg.DataError) as argument:  # the driver refused an argument
        await conn.fetchval("SELECT $1::int8", 2**70)
    assert not unreachable(argument.value)


async def test_network_errors_are_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefusedError) as refused:  # nothing listens there now
        await asyncpg.connect(f"postgresql://kartka@127.0.0.1:{port}/kartka", timeout=5)
    assert unreachable(refused.value)
    assert unreachable(OSError(errno.EHOSTUNREACH, "No route to host"))
    assert not unreachable(FileNotFoundError(errno.ENOENT, "no such file"))
    assert not unreachable(ValueError("connection is closed"))  # only the driver's word counts


def test_database_away_looks_into_groups_and_causes() -> None:
    lost = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    rollback = asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the underlying connection is closed")
    assert database_away(ExceptionGroup("cleanup", [rollback]))
    wrapped = RuntimeError("while registering")
    wrapped.__cause__ = lost
    assert database_away(wrapped)
    bug = RuntimeError("a bug while handling it")
    bug.__context__ = lost  # only causes count: a bug during the handling of a database error is a bug
    assert not database_away(bug)
