"""The staff console's sign-in session and its form tokens.

A console session is a staff sign-in session (``auth_sessions``, started by :class:`kartka.staff.StaffSignIn`
under the same lock-out and rate limits as ``POST /v1/admin/login``); the browser holds a cookie naming
it, signed with a key derived from the secret key, HttpOnly, SameSite=Strict, ``Secure`` when the
service is reached over https or runs in production, and scoped to ``/console``. Every request checks
that the session still lives (signing out, a disabled account or a password change end it at once,
on every replica) and that the person was active within ``KARTKA_CONSOLE_IDLE_MINUTES``; the cookie's
last-seen time moves on as they work.

Forms carry a token derived from the session (``csrf_token``), so a page from another site cannot
post as the person; before sign-in, the sign-in form's token is bound to a random cookie of its own
(a signed double submit, as on the join page). Posts whose ``Origin`` or ``Sec-Fetch-Site`` name
another site are refused as well.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import urllib.parse
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import msgspec
from litestar import Request
from litestar.datastructures import Cookie

from kartka.crypto import derive_key, keyed_hash
from kartka.settings import Environment, Settings
from kartka.staff import ROLE_PERMISSIONS, Permission, Role

COOKIE: Final = "kartka_console"
LOGIN_COOKIE: Final = "kartka_console_signin"
LANG_COOKIE: Final = "kartka_console_lang"
PATH: Final = "/console"
#: The cookie's last-seen time is moved on at most this often (not on every click).
_RENEW_SECONDS: Final = 60


class StaffSession(msgspec.Struct, frozen=True, array_like=True):
    """What the cookie carries (signed, not secret: the session id is worthless without the signature)."""

    session: UUID
    staff: UUID
    username: str
    role: Role
    seen: int
    """Unix time of the person's last request."""

    def may(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


_decode = msgspec.json.Decoder(StaffSession)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ConsoleSessions:
    def __init__(self, settings: Settings) -> None:
        self._key = derive_key(settings.secret_key.reveal(), "console")
        self.idle_seconds = settings.console_idle_minutes * 60
        self.secure = settings.environment is Environment.PRODUCTION or settings.public_url.startswith("https://")
        self._public_host = urllib.parse.urlsplit(settings.public_url).netloc

    def _mac(self, *parts: str) -> str:
        return _b64(keyed_hash(self._key, *parts)[:24])

    # -- the session cookie -----------------------------------------------------------------------

    def encode(self, session: StaffSession) -> str:
        payload = _b64(msgspec.json.encode(session))
        return f"{payload}.{self._mac('session', payload)}"

    def decode(self, value: str | None) -> StaffSession | None:
        """The session a cookie names, if we signed it; liveness and idleness are the caller's to check."""
        if not value or len(value) > 1024:
            return None
        payload, _, mac = value.partition(".")
        if not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        try:
            return _decode.decode(_unb64(payload))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            return None

    def idle(self, session: StaffSession, now: datetime) -> bool:
        return now.timestamp() - session.seen > self.idle_seconds

    def stale(self, session: StaffSession, now: datetime) -> bool:
        """Whether the cookie's last-seen time should be moved on."""
        return now.timestamp() - session.seen >= _RENEW_SECONDS

    def cookie(self, session: StaffSession) -> Cookie:
        # A browser-session cookie: closing the browser ends it, the idle timeout ends it sooner.
        return Cookie(
            key=COOKIE,
            value=self.encode(session),
            path=PATH,
            httponly=True,
            samesite="strict",
            secure=self.secure,
        )

    def gone(self) -> Cookie:
        return Cookie(key=COOKIE, value="", path=PATH, max_age=0, httponly=True, samesite="strict", secure=self.secure)

    # -- form tokens -----------------------------------------------------------------------------

    def csrf(self, session: StaffSession) -> str:
        return self._mac("csrf", str(session.session))

    def login_nonce(self, request: Request[Any, Any, Any]) -> tuple[str, Cookie]:
        """The sign-in form's cookie: the browser's own if it has a good one, else a new one."""
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not (22 <= len(nonce) <= 64 and nonce.replace("-", "").replace("_", "").isalnum()):
            nonce = secrets.token_urlsafe(18)
        cookie = Cookie(key=LOGIN_COOKIE, value=nonce, path=PATH, httponly=True, samesite="strict", secure=self.secure)
        return nonce, cookie

    def login_csrf(self, nonce: str) -> str:
        return self._mac("signin", nonce)

    def accepts(self, request: Request[Any, Any, Any], token: str, session: StaffSession | None) -> bool:
        """Whether a post comes from our own page in this browser: same-site headers, and the form token
        of this session (or, on the sign-in form, of this browser's sign-in cookie)."""
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is not None and urllib.parse.urlsplit(origin).netloc not in (
            self._public_host,
            request.headers.get("host"),
        ):
            return False
        if not token or len(token) > 100:
            return False
        if session is not None:
            return hmac.compare_digest(token, self.csrf(session))
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        return bool(nonce) and hmac.compare_digest(token, self.login_csrf(nonce))
