"""Staff accounts: admins, marketers and support, signing in to the admin API with a password.

Passwords are hashed with argon2id through libpass (the maintained passlib; import name ``passlib``),
in a worker thread, since one hash takes tens of milliseconds of CPU that the event loop must not
wait on. A failed sign-in costs the same whether the username exists or not (an unknown name is
checked against a dummy hash) and says the same thing, so the endpoint cannot be used to find out
who works here.

Limits keep guessing hopeless without letting a stranger lock a staff member out: every attempt counts
per client address (all accounts); failures count per account *and* address, and past
``KARTKA_STAFF_LOGIN_FAILURES`` each further try from that address waits twice as long as the last
(a minute, doubling to an hour), so someone guessing elsewhere slows only themselves; attempts on one
account from addresses it has never signed in from are capped per hour (guessing spread over many
addresses), while the addresses it signs in from are remembered and not held to that cap. An admin can
lift an account's limits at once (``kartka staff unlock``, ``POST /v1/admin/staff/{username}/unlock``).
"""

from __future__ import annotations

import asyncio
import enum
import os
import re
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

import msgspec
from passlib.context import CryptContext

from kartka.clock import Clock
from kartka.db import Connection, Pool
from kartka.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from kartka.ratelimit import RateLimiter
from kartka.tokens import SubjectKind, Tokens, revoke_sessions

USERNAME: Final = re.compile(r"^[a-z0-9][a-z0-9_.@-]{1,63}$")
MIN_PASSWORD: Final = 12
MAX_PASSWORD: Final = 1024  # argon2 takes any length; a cap keeps a megabyte "password" from costing CPU
MAX_HASHES: Final = max(2, os.cpu_count() or 2)  # argon2 runs at once per process


class Role(enum.StrEnum):
    ADMIN = "admin"
    MARKETER = "marketer"
    SUPPORT = "support"
    STORE_MANAGER = "store_manager"
    """Runs one or more stores: their numbers only (:class:`Reach`), and helps shoppers at the counter."""


class Permission(enum.StrEnum):
    """What an admin endpoint needs; an admin key has every permission."""

    GRANT_POINTS = "grant_points"
    CAMPAIGNS = "campaigns"
    STORES = "stores"
    CARDS = "cards"
    STAFF = "staff"
    REPORTS = "reports"
    PROMOTIONS_READ = "promotions_read"
    """See promotions, their history and usage, preview and backtest them."""
    PROMOTIONS = "promotions"
    """Draft, submit, pause, resume and end promotions; groups and personal offers."""
    PROMOTIONS_APPROVE = "promotions_approve"
    """Approve or reject another's revision (four eyes)."""
    STORE_REPORTS = "store_reports"
    """The KPI and promotion reports of the stores assigned to the staff member (``REPORTS`` is every store's)."""


ROLE_PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    Role.ADMIN: frozenset(Permission),
    Role.MARKETER: frozenset(
        {Permission.CAMPAIGNS, Permission.PROMOTIONS, Permission.PROMOTIONS_READ, Permission.REPORTS}
    ),
    Role.SUPPORT: frozenset({Permission.GRANT_POINTS, Permission.CARDS, Permission.PROMOTIONS_READ}),
    Role.STORE_MANAGER: frozenset(
        {Permission.STORE_REPORTS, Permission.GRANT_POINTS, Permission.CARDS, Permission.PROMOTIONS_READ}
    ),
}


class StaffAccount(msgspec.Struct, frozen=True):
    id: UUID
    username: str
    role: Role
    created_at: datetime
    last_login_at: datetime | None
    disabled_at: datetime | None


class UsernameTaken(Conflict):
    code = "username-taken"


class WrongCredentials(Unauthenticated):
    code = "wrong-credentials"


def clean_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME.match(name):
        raise InvalidInput(
            "a username is 2-64 lowercase letters, digits, '.', '_', '@' or '-', starting with a letter or digit",
            field="username",
        )
    return name


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a staff password has at least {MIN_PASSWORD} characters", field="password")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"a staff password has at most {MAX_PASSWORD} characters", field="password")


class Passwords:
    """argon2id hashing off the event loop, by default at libpass's cost (64 MiB, 3 passes, as OWASP
    recommends; ``KARTKA_ARGON2_MEMORY_KIB`` and ``KARTKA_ARGON2_ROUNDS``, which the tests lower).
    Stored hashes carry their parameters; when the cost changes, a hash is upgraded at the next
    successful sign-in (``verify`` returns the new one)."""

    def __init__(self, concurrency: int = MAX_HASHES, *, memory_kib: int = 65_536, rounds: int = 3) -> None:
        self._context = CryptContext(schemes=["argon2"], argon2__memory_cost=memory_kib, argon2__rounds=rounds)
        # Each hash takes 64 MiB: a burst of sign-ins waits here instead of taking the machine's memory.
        self._slots = asyncio.Semaphore(concurrency)

    async def warm_up(self) -> None:
        """Make the dummy hash now, or the first unknown username would take longer than the rest."""
        async with self._slots:
            await asyncio.to_thread(self._context.dummy_verify)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._context.hash, password)

    async def verify(self, password: str, stored: str | None) -> tuple[bool, str | None]:
        """Whether ``password`` matches, and a re-hash to store if the parameters changed. ``stored`` None
        (no such user) still costs one hash: libpass checks against a dummy, so timing tells nothing."""
        async with self._slots:
            return await asyncio.to_thread(self._context.verify_and_update, password[:MAX_PASSWORD], stored)


async def create_staff(
    conn: Connection, passwords: Passwords, *, username: str, role: Role, password: str
) -> StaffAccount:
    name = clean_username(username)
    check_password(password)
    hashed = await passwords.hash(password)
    row = await conn.fetchrow(
        """
        INSERT INTO staff (username, role, password_hash) VALUES ($1, $2, $3)
        ON CONFLICT (username) DO NOTHING
        RETURNING id, username, role, created_at, last_login_at, disabled_at
        """,
        name,
        role.value,
        hashed,
    )
    if row is None:
        raise UsernameTaken(f"there is already a staff member {name!r}", field="username")
    return msgspec.convert(dict(row), StaffAccount)


async def list_staff(conn: Connection) -> list[StaffAccount]:
    rows = await conn.fetch(
        "SELECT id, username, role, created_at, last_login_at, disabled_at FROM staff ORDER BY username"
    )
    return [msgspec.convert(dict(r), StaffAccount) for r in rows]


class StoreForbidden(Forbidden):
    code = "store-forbidden"


class Reach(msgspec.Struct, frozen=True):
    """Whose numbers a staff member may see: every store's (``stores`` None) or those of the stores assigned
    to them (a store manager). Checked by the reports themselves (``analytics.access``), whoever asks."""

    stores: frozenset[str] | None = None

    @property
    def whole_chain(self) -> bool:
        return self.stores is None

    def check(self, store: str | None) -> None:
        """Refuse a report on ``store`` (``None``: the whole chain) that lies outside the reach."""
        if self.stores is None:
            return
        if store is None:
            raise StoreForbidden("a store manager sees their own stores' numbers: name one of them with `store`")
        if store not in self.stores:
            raise StoreForbidden(f"store {store!r} is not one of yours", field="store")


#: An admin key, an admin, a marketer: every store.
CHAIN: Final = Reach()


async def reach_of(conn: Connection, staff_id: UUID | None) -> Reach:
    """The reach of a staff member (``None``: an admin key, which has the whole chain's), as the database
    says now: a store assigned or taken away counts from the next request."""
    if staff_id is None:
        return CHAIN
    row = await conn.fetchrow(
        """
        SELECT s.role, array(SELECT store FROM staff_stores WHERE staff_id = s.id ORDER BY store) AS stores
          FROM staff s WHERE s.id = $1
        """,
        staff_id,
    )
    if row is None:
        return Reach(frozenset())
    if Permission.REPORTS in ROLE_PERMISSIONS[Role(row["role"])]:
        return CHAIN
    return Reach(frozenset(row["stores"]))


async def staff_stores(conn: Connection) -> dict[UUID, list[str]]:
    """The stores assigned to each store manager (those with none are missing)."""
    rows = await conn.fetch("SELECT staff_id, store FROM staff_stores ORDER BY staff_id, store")
    out: dict[UUID, list[str]] = {}
    for r in rows:
        out.setdefault(r["staff_id"], []).append(r["store"])
    return out


async def assign_stores(
    conn: Connection, username: str, stores: Collection[str], *, known: Collection[str]
) -> list[str]:
    """Make ``stores`` the stores a store manager runs (replacing the earlier list). ``known`` are the
    stores that exist (the wallet's, read by the caller): naming another is refused."""
    unknown = sorted(set(stores) - set(known))
    if unknown:
        raise InvalidInput(f"no such store: {', '.join(unknown)}", field="stores")
    row = await conn.fetchrow("SELECT id, role FROM staff WHERE username = $1", clean_username(username))
    if row is None:
        raise NotFound(f"no staff member {username!r}", field="username")
    if row["role"] != Role.STORE_MANAGER:
        raise InvalidInput("only a store manager is limited to stores; the other roles see every store", field="stores")
    chosen = sorted(set(stores))
    await conn.execute("DELETE FROM staff_stores WHERE staff_id = $1", row["id"])
    await conn.executemany(
        "INSERT INTO staff_stores (staff_id, store) VALUES ($1, $2)", [(row["id"], store) for store in chosen]
    )
    return chosen


async def set_password(conn: Connection, passwords: Passwords, username: str, password: str, now: datetime) -> None:
    """A new password; every session signed in with the old one ends (a reset after a leak must lock
    the intruder out, refresh tokens included)."""
    check_password(password)
    hashed = await passwords.hash(password)
    staff_id = await conn.fetchval(
        "UPDATE staff SET password_hash = $2, password_changed_at = $3 WHERE username = $1 RETURNING id",
        clean_username(username),
        hashed,
        now,
    )
    if staff_id is None:
        raise NotFound(f"no staff member {username!r}", field="username")
    await revoke_sessions(conn, SubjectKind.STAFF, staff_id, now, "password changed")


async def disable_staff(conn: Connection, username: str, now: datetime) -> StaffAccount:
    """Disable an account and end its sessions at once (its access tokens stop working too)."""
    row = await conn.fetchrow(
        """
        UPDATE staff SET disabled_at = coalesce(disabled_at, now()) WHERE username = $1
        RETURNING id, username, role, created_at, last_login_at, disabled_at
        """,
        clean_username(username),
    )
    if row is None:
        raise NotFound(f"no staff member {username!r}", field="username")
    await revoke_sessions(conn, SubjectKind.STAFF, row["id"], now, "staff account disabled")
    return msgspec.convert(dict(row), StaffAccount)


async def unlock_staff(conn: Connection, username: str, now: datetime) -> StaffAccount:
    """Lift an account's sign-in limits: the failures counted so far, on every address, stop counting."""
    row = await conn.fetchrow(
        """
        UPDATE staff SET unlocked_at = $2 WHERE username = $1
        RETURNING id, username, role, created_at, last_login_at, disabled_at
        """,
        clean_username(username),
        now,
    )
    if row is None:
        raise NotFound(f"no staff member {username!r}", field="username")
    return msgspec.convert(dict(row), StaffAccount)


async def authenticate(
    conn: Connection, passwords: Passwords, username: str, password: str, now: datetime
) -> StaffAccount:
    """The account ``username``/``password`` names, or :class:`WrongCredentials` — the same for an
    unknown name, a wrong password and a disabled account, after the same amount of work."""
    name = username.strip().lower()
    row = await conn.fetchrow(
        "SELECT id, username, role, created_at, last_login_at, disabled_at, password_hash FROM staff "
        "WHERE username = $1",
        name if USERNAME.match(name) else "",
    )
    ok, rehashed = await passwords.verify(password, row["password_hash"] if row is not None else None)
    if row is None or not ok or row["disabled_at"] is not None:
        raise WrongCredentials("wrong username or password")
    await conn.execute(
        "UPDATE staff SET last_login_at = $2, password_hash = coalesce($3, password_hash) WHERE id = $1",
        row["id"],
        now,
        rehashed,
    )
    return msgspec.convert({k: v for k, v in row.items() if k != "password_hash"}, StaffAccount)


class StaffSession(msgspec.Struct, frozen=True):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    role: Role
    username: str


_HOUR: Final = timedelta(hours=1)
#: Failures from one address on one account are remembered this long; the delays grow within it.
_FAILURE_WINDOW: Final = timedelta(hours=24)
_FIRST_DELAY: Final = timedelta(minutes=1)
_MAX_DELAY: Final = timedelta(hours=1)
#: An address an account signed in from stays known (exempt from the per-account cap) this long.
KNOWN_FOR: Final = timedelta(days=90)


class StaffSignIn:
    """``POST /v1/admin/login``: a password for a token pair, under the limits the module describes."""

    def __init__(
        self,
        *,
        pool: Pool,
        passwords: Passwords,
        tokens: Tokens,
        limiter: RateLimiter,
        clock: Clock,
        per_ip_per_hour: int,
        failures: int,
        per_account_per_hour: int = 50,
    ) -> None:
        self.pool = pool
        self.passwords = passwords
        self.tokens = tokens
        self.limiter = limiter
        self.clock = clock
        self.per_ip_per_hour = per_ip_per_hour
        self.failures = failures
        self.per_account_per_hour = per_account_per_hour

    async def login(self, username: str, password: str, *, client: str) -> StaffSession:
        now = self.clock.now()
        await self.limiter.hit_now(
            self.pool,
            "login-ip",
            client,
            limit=self.per_ip_per_hour,
            window=_HOUR,
            now=now,
            message="too many sign-in attempts from this address; try again later",
        )
        name = username.strip().lower()
        here = f"{name}\n{client}"  # one account, from one address
        known_client = self.limiter.bucket("staff-known", client)
        async with self.pool.acquire() as conn:
            # The attempt counts as a failure before the password is checked, and stops counting only when
            # it succeeds: attempts made at the same moment cannot all slip under the limit.
            async with conn.transaction():
                row = await conn.fetchrow(
                    """
                    SELECT s.unlocked_at, EXISTS (
                               SELECT FROM staff_known_clients k
                                WHERE k.staff_id = s.id AND k.client = $2 AND k.last_success_at > $3
                           ) AS known
                      FROM staff s WHERE s.username = $1
                    """,
                    name,
                    known_client,
                    now - KNOWN_FOR,
                )
                since = row["unlocked_at"] if row is not None else None
                if row is None or not row["known"]:
                    await self.limiter.hit(
                        conn,
                        "login-account",
                        name,
                        limit=self.per_account_per_hour,
                        window=_HOUR,
                        now=now,
                        since=since,
                        message="too many sign-in attempts on this username from new addresses; try again "
                        "later, from an address you signed in from before, or ask an admin to unlock it",
                    )
                await self.limiter.backoff(
                    conn,
                    "login-failures",
                    here,
                    free=self.failures,
                    first_delay=_FIRST_DELAY,
                    max_delay=_MAX_DELAY,
                    window=_FAILURE_WINDOW,
                    now=now,
                    since=since,
                    message="too many failed sign-ins for this username; wait before trying again",
                )
            async with conn.transaction():
                account = await authenticate(conn, self.passwords, name, password, now)
                pair = await self.tokens.start(conn, SubjectKind.STAFF, account.id, role=account.role.value)
                await self.limiter.clear(conn, "login-failures", here)
                await conn.execute(
                    """
                    INSERT INTO staff_known_clients (staff_id, client, last_success_at) VALUES ($1, $2, $3)
                    ON CONFLICT (staff_id, client) DO UPDATE SET last_success_at = EXCLUDED.last_success_at
                    """,
                    account.id,
                    known_client,
                    now,
                )
        return StaffSession(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            token_type=pair.token_type,
            expires_in=pair.expires_in,
            role=account.role,
            username=account.username,
        )
