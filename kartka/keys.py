"""API keys for tills, integrations and admin tools.

A key looks like ``kk_pos_3f9a1c0b7d2e_<43 random chars>``: the scope and a public id make a leaked
key easy to recognise and revoke; only the SHA-256 of the whole key is stored. Verification is on
every request, so :class:`KeyVerifier` caches good keys for a short time and drops its cache when a
revocation is announced over ``NOTIFY`` (the TTL bounds staleness if that notice is missed).
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import Final

import msgspec

from kartka.db import Connection, Pool
from kartka.errors import InvalidInput, NotFound

REVOKE_CHANNEL: Final = "kartka_api_keys"
#: Every key starts so; access tokens (JWTs) never do.
KEY_PREFIX: Final = "kk_"
CODE_PATTERN: Final = r"^[A-Za-z0-9_.-]{1,64}$"


class Scope(enum.StrEnum):
    POS = "pos"
    INTEGRATION = "integration"
    ADMIN = "admin"


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: the key's id and what it may do."""

    key_id: str
    scope: Scope
    store: str | None
    terminal: str | None


class ApiKey(msgspec.Struct, frozen=True):
    id: str
    scope: Scope
    store: str | None
    terminal: str | None
    name: str
    created_at: datetime
    revoked_at: datetime | None


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def create_key(
    conn: Connection,
    *,
    scope: Scope,
    store: str | None = None,
    terminal: str | None = None,
    name: str = "",
) -> tuple[str, ApiKey]:
    """Create a key and return it in clear text (shown once) with its stored record."""
    if scope is Scope.POS and (not store or not terminal):
        raise InvalidInput("a pos key belongs to one till: give both --store and --terminal", field="store")
    if terminal and not store:
        raise InvalidInput("a terminal belongs to a store: give --store too", field="store")
    for field, value in (("store", store), ("terminal", terminal)):
        if value is not None:
            validate_code(value, field)
    if len(name) > 200 or not name.isprintable():
        raise InvalidInput("a key's name is at most 200 printable characters", field="name")
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{scope.value}_{key_id}_{secrets.token_urlsafe(32)}"
    row = await conn.fetchrow(
        """
        INSERT INTO api_keys (id, key_hash, scope, store, terminal, name)
        VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING id, scope, store, terminal, name, created_at, revoked_at
        """,
        key_id,
        _hash(key),
        scope.value,
        store,
        terminal,
        name,
    )
    assert row is not None
    return key, msgspec.convert(dict(row), ApiKey)


def validate_code(value: str, field: str) -> None:
    """Store and terminal codes are short slugs: they appear in URLs, logs and receipts."""
    if not re.fullmatch(CODE_PATTERN, value):
        raise InvalidInput(f"{field} must be 1-64 letters, digits, '.', '_' or '-' (got {value!r})", field=field)


async def list_keys(conn: Connection, *, include_revoked: bool = False) -> list[ApiKey]:
    rows = await conn.fetch(
        """
        SELECT id, scope, store, terminal, name, created_at, revoked_at FROM api_keys
        WHERE $1 OR revoked_at IS NULL ORDER BY created_at
        """,
        include_revoked,
    )
    return [msgspec.convert(dict(r), ApiKey) for r in rows]


async def revoke_key(conn: Connection, key_or_id: str) -> ApiKey:
    """Revoke by public id or by the full key; announce it so running APIs drop their cache at once."""
    key_id = key_or_id.split("_")[2] if key_or_id.startswith("kk_") and key_or_id.count("_") >= 3 else key_or_id
    row = await conn.fetchrow(
        """
        UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
        RETURNING id, scope, store, terminal, name, created_at, revoked_at
        """,
        key_id,
    )
    if row is None:
        raise NotFound(f"no API key with id {key_id!r}", field="key")
    await conn.execute("SELECT pg_notify($1, $2)", REVOKE_CHANNEL, key_id)
    return msgspec.convert(dict(row), ApiKey)


async def lookup(conn: Connection, key: str) -> Principal | None:
    row = await conn.fetchrow(
        "SELECT id, scope, store, terminal FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        _hash(key),
    )
    if row is None:
        return None
    return Principal(row["id"], Scope(row["scope"]), row["store"], row["terminal"])


class KeyVerifier:
    """Checks bearer keys against the database with a small in-process cache of good keys.

    A cached key is trusted for ``ttl_seconds`` only while revocation notices are being heard; while the
    listening connection is down (the database restarted, froze, or was never reached) for at most
    ``unlistened_seconds``, since a revocation made meanwhile would go unheard. Heard means the listener
    vouches for its connection now (:meth:`follow`): a ping the server is late to answer is enough to
    fall back to the short window, before the listener gives the connection up.
    """

    def __init__(self, pool: Pool, ttl_seconds: float, *, unlistened_seconds: float = 1.0) -> None:
        self._pool = pool
        self._ttl = ttl_seconds
        self._unlistened = min(unlistened_seconds, ttl_seconds)
        # Keyed by the key itself: it is in this process's memory for every request anyway, and hashing
        # it again on each request showed in the benchmark. Only good keys are kept, for a short while.
        # The value is (when it was verified, monotonic; the principal).
        self._cache: dict[str, tuple[float, Principal]] = {}
        self.listening = False
        self._heard: Callable[[], bool] = lambda: self.listening

    def follow(self, heard: Callable[[], bool]) -> None:
        """Trust the cache for long only while ``heard()`` (``kartka.listen.Listener.heard_lately``)."""
        self._heard = heard

    def cached(self, key: str) -> Principal | None:
        """The principal of a key verified a moment ago, without awaiting anything."""
        hit = self._cache.get(key)
        if hit is not None:
            age = time.monotonic() - hit[0]
            if age < self._unlistened or (age < self._ttl and self.listening and self._heard()):
                return hit[1]
        return None

    async def verify(self, key: str) -> Principal | None:
        hit = self.cached(key)
        if hit is not None:
            return hit
        async with self._pool.acquire() as conn:
            principal = await lookup(conn, key)
        if principal is None:
            self._cache.pop(key, None)
        elif self._ttl > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (time.monotonic(), principal)
        return principal

    def invalidate(self, *_: object) -> None:
        self._cache.clear()

    def listener_changed(self, listening: bool) -> None:
        """Revocations may have been missed while not listening: forget everything either way."""
        self.listening = listening
        self._cache.clear()

    def channels(self) -> dict[str, Callable[..., None]]:
        """What to listen for (see :class:`kartka.listen.Listener`)."""
        return {REVOKE_CHANNEL: self.invalidate}
