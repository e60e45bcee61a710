"""Bearer-key guards: 401 for a missing, unknown or revoked key, 403 for a key of another scope."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from api.state import services_of
from kartka.errors import Forbidden, Unauthenticated
from kartka.keys import Scope

SECURITY_SCHEME = "ApiKey"


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    header = connection.headers.get("authorization")
    if not header:
        raise Unauthenticated("Send the key as 'Authorization: Bearer <key>'")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("The Authorization header must be 'Bearer <key>'")
    return token


def require_scope(scope: Scope) -> Guard:
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        token = bearer_token(connection)
        if len(token) > 200:
            raise Unauthenticated("The key is not valid")
        principal = await services_of(connection.app.state).keys.verify(token)
        if principal is None:
            raise Unauthenticated("The key is not valid: unknown or revoked")
        if principal.scope is not scope:
            raise Forbidden(f"This is a {principal.scope} key; {connection.url.path} needs a {scope} key")
        connection.state.principal = principal

    guard.__name__ = f"require_{scope.value}_key"
    return guard
