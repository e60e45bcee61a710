"""OAuth2 access tokens for a Google service account, shared by the FCM and Google Wallet adapters.

Google's APIs take a short-lived access token that the service account obtains from its ``token_uri``
with the JWT-bearer grant (RFC 7523): an RS256 assertion naming the account, the scope and the token
endpoint as audience. A token is cached until shortly before it expires; when an API still answers
401 (revoked early, clock skew) the caller asks again with the refused token as ``stale``, which
replaces it exactly once however many concurrent requests were refused. What goes wrong with the
grant concerns every message, so it raises :class:`ProviderUnavailable`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from kartka.crypto import load_private_key
from notifications.model import ProviderUnavailable

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: What every service-account use needs; an API may need more (FCM: ``project_id``).
REQUIRED = ("client_email", "private_key", "token_uri")
_REFRESH_EARLY = 60.0  # seconds before expiry at which a cached access token is replaced
_ASSERTION_LIFETIME = 3600  # Google's maximum


class _AccessToken(NamedTuple):
    value: str
    expires_at: float  # time.monotonic()


class ServiceAccountTokens:
    """Access tokens for one service account and one scope, fetched over the caller's HTTP client
    (so the token endpoint shares its connection pool and timeout)."""

    def __init__(
        self, service_account: Mapping[str, str], *, scope: str, client: httpx.AsyncClient, timeout: float
    ) -> None:
        self._account = dict(service_account)
        self.scope = scope
        self._client = client
        self._timeout = timeout
        self._token: _AccessToken | None = None
        self._lock = asyncio.Lock()

    async def token(self, *, stale: str | None = None) -> str:
        """A valid access token; ``stale`` is one an API refused, replaced unless another call already did."""
        async with self._lock:
            token = self._token
            if token is None or token.value == stale or time.monotonic() >= token.expires_at - _REFRESH_EARLY:
                self._token = token = await self._fetch()
            return token.value

    async def _fetch(self) -> _AccessToken:
        token_uri = self._account["token_uri"]
        now = int(time.time())
        claims = {
            "iss": self._account["client_email"],
            "scope": self.scope,
            "aud": token_uri,
            "iat": now,
            "exp": now + _ASSERTION_LIFETIME,
        }
        key_id = self._account.get("private_key_id")
        assertion = jwt.encode(
            claims, self._account["private_key"], algorithm="RS256", headers={"kid": key_id} if key_id else None
        )
        started = time.monotonic()
        try:
            response = await self._client.post(token_uri, data={"grant_type": JWT_BEARER, "assertion": assertion})
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(f"the OAuth token endpoint did not answer within {self._timeout:g}s") from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"cannot reach the OAuth token endpoint {token_uri}: {exc}") from exc
        body = json_body(response)
        value, expires_in = body.get("access_token"), body.get("expires_in")
        if response.status_code != 200 or not isinstance(value, str) or not isinstance(expires_in, int | float):
            said = [str(body[key]) for key in ("error", "error_description") if body.get(key)]
            detail = ": ".join(said) or response.text[:200]
            raise ProviderUnavailable(
                f"the OAuth token endpoint refused the service account: {response.status_code} {detail}"
            )
        return _AccessToken(value, started + float(expires_in))


def check_service_account(account: Mapping[str, str], *, required: Sequence[str], label: str) -> None:
    """Fail at start-up, not at the first send, when a service account is incomplete or its key unusable."""
    missing = [key for key in required if not account.get(key)]
    if missing:
        raise ValueError(f"the {label} service account lacks {', '.join(missing)}")
    try:
        key = load_private_key(account["private_key"].encode())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the {label} service account's private_key is not a PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"the {label} service account's private_key must be an RSA key")


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or ``{}``: Google's proxies answer some failures with HTML."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
