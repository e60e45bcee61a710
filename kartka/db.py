"""Connections to PostgreSQL: the pool the API and worker share, and single connections for the CLI."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy
from asyncpg.transaction import Transaction

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


#: SQLSTATEs that say the server, not the request, is at fault and a retry may succeed: every
#: connection exception (class 08), a statement cancelled (57014: statement_timeout or an operator),
#: sessions ended by an operator, a crash or a shutdown (57P01-57P05), and no connection slot (53300).
_AWAY_STATES: Final = frozenset({"57014", "57P01", "57P02", "57P03", "57P04", "57P05", "53300"})
#: What asyncpg raises, as an InterfaceError, about a connection the server dropped or one still
#: cancelling a statement that timed out; and about a pool shutting down under a request.
_AWAY_INTERFACE: Final = (
    "connection is closed",
    "another operation is cancelling",
    "pool is closing",
    "pool is closed",
)
#: Network errors that are not ConnectionError: the database host or its network is unreachable.
_AWAY_ERRNOS: Final = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN})


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` itself (not its causes) says the database is away: down, restarting, frozen past
    a deadline, out of connections, or the session was cut. The client should retry, not give up."""
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state.startswith("08") or state in _AWAY_STATES
    if isinstance(exc, asyncpg.InterfaceError):
        return any(text in str(exc) for text in _AWAY_INTERFACE)
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    return isinstance(exc, OSError) and exc.errno in _AWAY_ERRNOS


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


class BoundedPool(asyncpg.Pool):
    """A pool whose every ``acquire`` (and so ``fetch``, ``execute``, ...) gives up after a deadline, and
    that never waits on the server twice for one request.

    asyncpg waits for a free connection, and for a new one to connect, without limit unless each call
    passes a timeout; a frozen database would hold every request for as long as the client waits. So
    each wait has one deadline: the acquire's (waiting for a free connection and connecting a new one,
    together), or a statement's (``command_timeout``).

    A statement that timed out (or whose task was cancelled) leaves its connection cancelling it, and
    asyncpg would then wait, before the transaction's ``ROLLBACK`` and again before giving the
    connection back, for the server that did not answer the statement to confirm the cancellation: a
    second and a third deadline (a frozen database held a till 10 s where the setting said 5). Here
    that connection is dropped at once instead (:class:`BoundedConnection`, :meth:`release`): the
    transaction is not rolled back by hand, the cancel request already sent goes on by itself, the
    server rolls back what a closed session held, and the next acquire connects afresh.
    """

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109 - asyncpg's signature
        con = getattr(connection, "_con", None)
        if con is not None and not con.is_closed() and (cancelling(con) or con.is_in_transaction()):
            drop(con)  # gives the holder back to the pool, without a round trip
            return
        await super().release(connection, timeout=timeout)


class BoundedConnection(asyncpg.Connection):
    """A connection whose transactions do not send ``ROLLBACK`` after a statement the server did not
    answer in time: it would first wait for the cancellation of that statement, another deadline on a
    server that missed the first. The pool drops such a connection instead (:class:`BoundedPool`)."""

    def transaction(self, *, isolation: Any = None, readonly: bool = False, deferrable: bool = False) -> Transaction:
        self._check_open()  # type: ignore[attr-defined]
        return _BoundedTransaction(self, isolation, readonly, deferrable)


class _BoundedTransaction(Transaction):
    async def __aexit__(self, extype: object, ex: object, tb: object) -> None:
        if extype is not None and cancelling(self._connection):  # type: ignore[attr-defined]
            self._managed = False
            return  # the error goes on; the transaction ends with the session (drop)
        await super().__aexit__(extype, ex, tb)


def cancelling(con: Any) -> bool:
    """Whether asyncpg is still cancelling a statement of ``con`` (it timed out or was cancelled)."""
    protocol = getattr(con, "_protocol", None)
    return bool(protocol is not None and protocol._is_cancelling())


#: Cancel requests of dropped connections, still on their way to the server (kept from the collector).
_cancel_requests: set[asyncio.Task[Any]] = set()


def drop(con: Any) -> None:
    """Close ``con`` at once, without a word to the server; a cancel request asyncpg already sent for it
    goes on by itself (terminating would cancel it): a server that is slow rather than frozen stops the
    statement now instead of at its ``statement_timeout``."""
    pending: set[asyncio.Task[Any]] = getattr(con, "_cancellations", set())
    for task in pending:
        if not task.done():
            _cancel_requests.add(task)
            task.add_done_callback(_cancel_requests.discard)
    pending.clear()
    con.terminate()


def command_timeout(settings: Settings, *, background: bool) -> float | None:
    """Seconds the client waits for one statement before giving up on the server.

    Requests wait ``KARTKA_DB_COMMAND_TIMEOUT_SECONDS``; background work (the worker's jobs, the CLI)
    may run statements up to the server's ``statement_timeout``, so it waits that plus the same margin.
    """
    if not background:
        return settings.db_command_timeout_seconds
    if settings.db_statement_timeout_ms == 0:
        return None  # no server-side limit was asked for: do not invent one here
    return settings.db_statement_timeout_ms / 1000 + settings.db_command_timeout_seconds


async def create_pool(settings: Settings, *, application: str = "kartka-api", background: bool = False) -> Pool:
    """A pool that connects lazily when ``KARTKA_DB_POOL_MIN`` is 0, so the API can start (and report
    not-ready) while the database is down. Connecting, waiting for a connection and every statement
    have deadlines (``KARTKA_DB_*_TIMEOUT_SECONDS``): a frozen database costs seconds, not minutes."""
    pool = BoundedPool(
        dsn(settings),
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        max_queries=50_000,
        max_inactive_connection_lifetime=300,
        connect=None,
        setup=None,
        init=_init_connection,
        reset=_keep_session,
        loop=None,
        connection_class=BoundedConnection,
        record_class=asyncpg.Record,
        acquire_timeout=settings.db_acquire_timeout_seconds,
        timeout=settings.db_connect_timeout_seconds,
        command_timeout=command_timeout(settings, background=background),
        server_settings=_server_settings(settings, application),
    )
    await pool
    return pool


async def connect(
    settings: Settings, *, application: str = "kartka-cli", background: bool = True
) -> asyncpg.Connection[Any]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(
        dsn(settings),
        timeout=settings.db_connect_timeout_seconds,
        command_timeout=command_timeout(settings, background=background),
        server_settings=_server_settings(settings, application),
    )
    await _init_connection(conn)
    return conn
