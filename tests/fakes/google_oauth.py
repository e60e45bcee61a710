"""A fake of Google's OAuth2 token endpoint for service accounts (the JWT-bearer grant), for one scope.

Both Google fakes (:mod:`tests.fakes.fcm`, :mod:`tests.fakes.google_wallet`) serve it at ``/token`` and
accept on their APIs only the access tokens it issued, as Google's APIs do. It checks what Google checks:
the RS256 assertion against the account's public key (picked by the ``kid`` header, as Google picks
among the account's keys), its audience, scope and lifetime. :class:`Reply` says how any of the Google
fakes' endpoints answers, this one included.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

import jwt

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

Answer = tuple[int, dict[str, Any], dict[str, str]]  # status, JSON body, extra response headers


@dataclass
class Reply:
    """How to answer: a status, Google's error ``status`` and FCM ``errorCode``, a delay, a Retry-After."""

    status: int = 200
    error_code: str | None = None  # FcmError.errorCode: UNREGISTERED, QUOTA_EXCEEDED, ...
    delay: float = 0.0
    retry_after: str | None = None
    arrived: threading.Event | None = None  # set when a call this reply answers reaches the fake
    release: threading.Event | None = None  # when given, the answer waits for it (at most 10 s)


class FakeOAuth:
    """Google's token endpoint for service accounts, issuing opaque access tokens for ``scope``."""

    def __init__(self, token_uri: str, scope: str) -> None:
        self.token_uri = token_uri
        self.scope = scope
        # client_email -> key id -> PEM public key; the key id None: the key verifies whatever ``kid`` says
        self.keys: dict[str, dict[str | None, str]] = {}
        self.expires_in = 3600  # what the endpoint says of the tokens it issues
        self.token_reply = Reply()  # its behaviour once the assertion checks out
        self.grants: list[dict[str, Any]] = []  # verified assertion claims, one per token issued
        self.token_errors: list[str] = []  # why assertions were refused
        self.accept_tokens = True  # False: the APIs refuse every token, even fresh ones (revoked account)
        self._tokens: set[str] = set()

    def trust(self, client_email: str, public_pem: str, key_id: str | None = None) -> None:
        self.keys.setdefault(client_email, {})[key_id] = public_pem

    def public_key(self, token: str) -> tuple[str, str]:
        """The issuer of a JWT and the PEM its ``kid`` names; KeyError when Google knows neither."""
        issuer = str(jwt.decode(token, options={"verify_signature": False}).get("iss", ""))
        keys = self.keys[issuer]
        if None in keys:  # trusted without a key id: the FCM fake does not tell an account's keys apart
            return issuer, keys[None]
        key_id = str(jwt.get_unverified_header(token).get("kid", ""))
        return issuer, keys[key_id]

    def revoke_tokens(self) -> None:
        """Forget every access token issued so far: the next call with one gets a 401."""
        self._tokens.clear()

    def valid(self, headers: dict[str, str]) -> bool:
        """Whether an API call's ``Authorization`` carries a token this endpoint issued and still honours."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return scheme == "Bearer" and token in self._tokens and self.accept_tokens

    def reset(self) -> None:
        self.expires_in = 3600
        self.token_reply = Reply()
        self.grants.clear()
        self.token_errors.clear()
        self.accept_tokens = True
        self._tokens.clear()

    async def grant(self, headers: dict[str, str], body: bytes) -> Answer:
        """Answer one ``POST /token``."""
        form = dict(urllib.parse.parse_qsl(body.decode()))
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return self._refuse("invalid_request", "the token request must be a form")
        if form.get("grant_type") != JWT_BEARER:
            return self._refuse("unsupported_grant_type", f"grant_type {form.get('grant_type')!r}")
        assertion = form.get("assertion", "")
        try:
            issuer, public_pem = self.public_key(assertion)
            claims = jwt.decode(
                assertion,
                public_pem,
                algorithms=["RS256"],
                audience=self.token_uri,
                issuer=issuer,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except (jwt.PyJWTError, KeyError) as exc:
            return self._refuse("invalid_grant", f"Invalid JWT: {type(exc).__name__} {exc}")
        if self.scope not in str(claims["scope"]).split() or claims["exp"] - claims["iat"] > 3600:
            return self._refuse("invalid_scope", "wrong scope or an assertion living over an hour")
        reply = self.token_reply
        await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return reply.status, {"error": "internal_failure"}, {}
        self.grants.append(claims)
        token = f"ya29.fake-{secrets.token_urlsafe(16)}"
        self._tokens.add(token)
        return 200, {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}, {}

    def _refuse(self, error: str, description: str) -> Answer:
        self.token_errors.append(f"{error}: {description}")
        return 400, {"error": error, "error_description": description}, {}
