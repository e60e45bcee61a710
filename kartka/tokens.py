"""Access tokens and sign-in sessions, for shoppers (the app) and staff (the admin API).

A sign-in starts a session and hands out a pair: a short-lived access token (a JWT, HS256 only, with
audience and issuer checked) and a refresh token (256 random bits, kept as SHA-256). Refreshing spends
the refresh token and hands out a new pair in the same session (rotation); presenting a spent refresh
token again means it was copied, so the whole session is revoked. Access tokens name their session
(``sid``) and are honoured only while it lives and belongs to the subject and kind the token names (a
staff token cannot ride on a shopper's session, nor the reverse), so logging out, closing the account
or reusing a refresh token ends access at once, not when the access token would have expired.

Times are the service clock's, not the machine's, so tests can move time across an expiry.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID

import jwt
import msgspec

from kartka.clock import Clock
from kartka.crypto import verification_keys
from kartka.db import Connection, Pool
from kartka.errors import Unauthenticated

ALGORITHM: Final = "HS256"
#: Tolerated clock difference between API replicas when checking ``exp`` and ``iat``.
LEEWAY: Final = timedelta(seconds=30)
REFRESH_PREFIX: Final = "krt_"
_REFRESH_LENGTH: Final = len(REFRESH_PREFIX) + 43


class Audience(enum.StrEnum):
    APP = "kartka-app"  # shoppers, signed in by phone
    STAFF = "kartka-staff"  # staff, signed in by password


class SubjectKind(enum.StrEnum):
    CUSTOMER = "customer"
    STAFF = "staff"


_AUDIENCE_OF: Final = {SubjectKind.CUSTOMER: Audience.APP, SubjectKind.STAFF: Audience.STAFF}
_KIND_OF: Final = {audience: kind for kind, audience in _AUDIENCE_OF.items()}


class TokenExpired(Unauthenticated):
    code = "token-expired"


class SessionEnded(Unauthenticated):
    code = "session-ended"


class RefreshTokenReused(Unauthenticated):
    code = "refresh-token-reused"


class TokenPair(msgspec.Struct, frozen=True):
    access_token: str
    refresh_token: str
    expires_in: int
    """Seconds the access token is valid for."""
    token_type: str = "Bearer"  # noqa: S105 - the scheme's name, not a secret


class Claims(msgspec.Struct, frozen=True):
    """What a verified access token says."""

    subject: UUID
    session: UUID
    audience: Audience
    kind: SubjectKind
    """Whose token it is, by audience: a session of another kind does not back it."""
    role: str | None
    expires_at: datetime


class Tokens:
    def __init__(self, *, key: bytes, issuer: str, access_seconds: int, refresh_days: int, clock: Clock) -> None:
        self._key = key
        self.issuer = issuer
        self.access_seconds = access_seconds
        self.refresh_lifetime = timedelta(days=refresh_days)
        self.clock = clock

    # -- access tokens --------------------------------------------------------------------------

    def _access_token(self, kind: SubjectKind, subject: UUID, session: UUID, role: str | None, now: datetime) -> str:
        claims: dict[str, object] = {
            "iss": self.issuer,
            "aud": _AUDIENCE_OF[kind].value,
            "sub": str(subject),
            "sid": str(session),
            "iat": int(now.timestamp()),
            "exp": int(now.timestamp()) + self.access_seconds,
            "jti": secrets.token_urlsafe(12),
        }
        if role is not None:
            claims["role"] = role
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str, audience: Audience) -> Claims:
        """The claims of a valid access token for ``audience``; :class:`Unauthenticated` otherwise.

        The algorithm is pinned (a token claiming ``none`` or RS256 is refused before its signature is
        looked at), and audience, issuer, ``exp`` and ``iat`` are all required.
        """
        try:
            claims = self._decode(token, audience)
            subject, session = UUID(str(claims["sub"])), UUID(str(claims["sid"]))
            expires, issued = int(claims["exp"]), int(claims["iat"])
        except jwt.InvalidAudienceError as exc:
            raise Unauthenticated("this token is not for this API") from exc
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise Unauthenticated("the access token is not valid") from exc
        now = self.clock.now().timestamp()
        if expires <= now - LEEWAY.total_seconds():
            raise TokenExpired("the access token has expired; refresh it")
        if issued > now + LEEWAY.total_seconds():
            raise Unauthenticated("the access token is not valid yet")
        role = claims.get("role")
        return Claims(
            subject=subject,
            session=session,
            audience=audience,
            kind=_KIND_OF[audience],
            role=role if isinstance(role, str) else None,
            expires_at=datetime.fromtimestamp(expires, self.clock.now().tzinfo),
        )

    def _decode(self, token: str, audience: Audience) -> dict[str, Any]:
        """The token's claims under the current key or, for a token signed before an upgrade, an
        earlier derivation of it (``kartka.crypto``); the current key's verdict otherwise."""
        options: dict[str, Any] = {
            "algorithms": [ALGORITHM],
            "audience": audience.value,
            "issuer": self.issuer,
            "options": {
                "require": ["exp", "iat", "sub", "sid", "aud", "iss"],
                # checked by the caller against the service clock
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        }
        current, *earlier = verification_keys(self._key)
        for key in earlier:
            with contextlib.suppress(jwt.InvalidSignatureError):
                claims: dict[str, Any] = jwt.decode(token, key, **options)
                return claims
        decoded: dict[str, Any] = jwt.decode(token, current, **options)
        return decoded

    async def session_alive(self, conn: Connection | Pool, claims: Claims) -> bool:
        """Whether the token's session lives and is the session of the subject and kind the token names.

        The session id alone is not enough: a token signed for a staff member but naming a shopper's
        session (or another subject's) must not ride on that session's life.
        """
        alive: bool | None = await conn.fetchval(
            """
            SELECT revoked_at IS NULL AND expires_at > $2 FROM auth_sessions
             WHERE id = $1 AND subject_kind = $3 AND subject_id = $4
            """,
            claims.session,
            self.clock.now(),
            claims.kind.value,
            claims.subject,
        )
        return bool(alive)

    # -- sessions -------------------------------------------------------------------------------

    async def start(self, conn: Connection, kind: SubjectKind, subject: UUID, *, role: str | None = None) -> TokenPair:
        """A new session for ``subject`` and its first token pair, in the caller's transaction."""
        now = self.clock.now()
        session = uuid.uuid4()
        refresh = _new_refresh_token()
        await conn.execute(
            """
            WITH s AS (
                INSERT INTO auth_sessions (id, subject_kind, subject_id, created_at, expires_at)
                VALUES ($1, $2, $3, $4, $5)
            )
            INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES ($6, $1, $4, $5)
            """,
            session,
            kind.value,
            subject,
            now,
            now + self.refresh_lifetime,
            _hash(refresh),
        )
        return TokenPair(self._access_token(kind, subject, session, role, now), refresh, self.access_seconds)

    async def refresh(self, pool: Pool, refresh_token: str) -> TokenPair:
        """Spend ``refresh_token`` for a new pair. A spent token revokes its session (committed before
        the refusal is raised, so the revocation holds)."""
        now = self.clock.now()
        refused: Unauthenticated | None = None
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                SELECT t.used_at, t.expires_at, s.id AS session, s.subject_kind, s.subject_id, s.revoked_at,
                       st.role, st.disabled_at, s.subject_kind = 'staff' AND st.id IS NULL AS staff_gone
                  FROM refresh_tokens t JOIN auth_sessions s ON s.id = t.session_id
                  LEFT JOIN staff st ON s.subject_kind = 'staff' AND st.id = s.subject_id
                 WHERE t.token_hash = $1
                   FOR UPDATE OF t, s
                """,
                _hash(refresh_token) if _plausible(refresh_token) else b"",
            )
            if row is None:
                raise Unauthenticated("the refresh token is not valid")
            if row["revoked_at"] is not None:
                raise SessionEnded("the session has ended; sign in again")
            if row["used_at"] is not None:
                await _revoke(conn, row["session"], now, "a spent refresh token was presented again")
                refused = RefreshTokenReused(
                    "this refresh token was already used, so it may have been copied: the session is ended; "
                    "sign in again"
                )
            elif row["expires_at"] <= now:
                raise SessionEnded("the refresh token has expired; sign in again")
            elif row["disabled_at"] is not None or row["staff_gone"]:
                await _revoke(conn, row["session"], now, "staff account disabled")
                refused = Unauthenticated("this staff account is disabled")
            else:
                kind = SubjectKind(row["subject_kind"])
                fresh = _new_refresh_token()
                await conn.execute(
                    """
                    WITH spent AS (UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1),
                         renewed AS (UPDATE auth_sessions SET refreshed_at = $2, expires_at = $3 WHERE id = $4)
                    INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES ($5, $4, $2, $3)
                    """,
                    _hash(refresh_token),
                    now,
                    now + self.refresh_lifetime,
                    row["session"],
                    _hash(fresh),
                )
                access = self._access_token(kind, row["subject_id"], row["session"], row["role"], now)
                return TokenPair(access, fresh, self.access_seconds)
        raise refused

    async def revoke(self, conn: Connection, refresh_token: str, reason: str = "signed out") -> bool:
        """End the session ``refresh_token`` belongs to; False when it names none (nothing to do)."""
        if not _plausible(refresh_token):
            return False
        session = await conn.fetchval(
            "SELECT session_id FROM refresh_tokens WHERE token_hash = $1", _hash(refresh_token)
        )
        if session is None:
            return False
        await _revoke(conn, session, self.clock.now(), reason)
        return True


async def revoke_sessions(conn: Connection, kind: SubjectKind, subject: UUID, now: datetime, reason: str) -> int:
    """End every session of a subject (an account closed, a staff member disabled)."""
    status = await conn.execute(
        """
        UPDATE auth_sessions SET revoked_at = $3, revoke_reason = $4
         WHERE subject_kind = $1 AND subject_id = $2 AND revoked_at IS NULL
        """,
        kind.value,
        subject,
        now,
        reason,
    )
    return int(status.rsplit(" ", 1)[-1])


async def end_session(conn: Connection, session: UUID, now: datetime, reason: str = "signed out") -> None:
    """End one session by its id (the staff console signs out by the session its cookie names)."""
    await _revoke(conn, session, now, reason)


async def _revoke(conn: Connection, session: UUID, now: datetime, reason: str) -> None:
    await conn.execute(
        "UPDATE auth_sessions SET revoked_at = coalesce(revoked_at, $2), revoke_reason = coalesce(revoke_reason, $3) "
        "WHERE id = $1",
        session,
        now,
        reason,
    )


async def prune(pool: Pool, now: datetime) -> int:
    """Delete sessions that ended more than a day ago (their refresh tokens go with them) and refresh
    tokens past their own expiry (a spent one is kept until then, to catch its reuse)."""
    cutoff = now - timedelta(days=1)
    async with pool.acquire() as conn, conn.transaction():
        sessions = await conn.execute("DELETE FROM auth_sessions WHERE expires_at < $1 OR revoked_at < $1", cutoff)
        await conn.execute("DELETE FROM refresh_tokens WHERE expires_at < $1", cutoff)
    return int(sessions.rsplit(" ", 1)[-1])


def _new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _plausible(token: str) -> bool:
    return len(token) == _REFRESH_LENGTH and token.startswith(REFRESH_PREFIX)
