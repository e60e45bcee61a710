"""Bearer-key authentication: 401 for a missing, unknown or revoked key, 403 for a key of another scope.

It runs as a controller's ``before_request`` hook rather than a Litestar guard: it still runs before
the body is read or a connection taken, and it avoids the copy of the route handler Litestar makes for
every guard call, which showed up in the till's benchmark.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from api.state import PRINCIPAL, services_of
from kartka.errors import Forbidden, Unauthenticated
from kartka.keys import Scope

SECURITY_SCHEME = "ApiKey"
MAX_KEY_LENGTH = 200


def _authorization(scope: Any) -> str | None:
    for name, value in scope["headers"]:  # a plain scan: cheaper than building Headers on every request
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


def bearer_token(request: Request[Any, Any, Any]) -> str:
    header = _authorization(request.scope)
    if not header:
        raise Unauthenticated("Send the key as 'Authorization: Bearer <key>'")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("The Authorization header must be 'Bearer <key>'")
    if len(token) > MAX_KEY_LENGTH:
        raise Unauthenticated("The key is not valid")
    return token


class require_scope:  # noqa: N801 - reads as a declaration: before_request = require_scope(Scope.POS)
    """A ``before_request`` hook admitting keys of one scope; sets ``request.state.principal``."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(self, request: Request[Any, Any, Any]) -> None:
        token = bearer_token(request)
        keys = services_of(request.scope["litestar_app"].state).keys
        principal = keys.cached(token) or await keys.verify(token)
        if principal is None:
            raise Unauthenticated("The key is not valid: unknown or revoked")
        if principal.scope is not self.scope:
            raise Forbidden(f"This is a {principal.scope} key; {request.url.path} needs a {self.scope} key")
        request.scope["state"][PRINCIPAL] = principal
