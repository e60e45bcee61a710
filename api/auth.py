"""Who may call what: bearer keys (tills, integrations, admin tools), shopper tokens (the app) and
staff tokens (the admin API). 401 for a missing, unknown, expired or revoked credential, 403 for one
that is valid but does not cover the endpoint.

These run as controllers' ``before_request`` hooks rather than Litestar guards: they still run before
the body is read or a connection taken, and they avoid the copy of the route handler Litestar makes for
every guard call, which showed up in the till's benchmark.
"""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID

from litestar import Request

from api.state import ACTOR, PRINCIPAL, SHOPPER, services_of
from kartka.errors import Forbidden, Unauthenticated
from kartka.keys import KEY_PREFIX, Principal, Scope
from kartka.staff import ROLE_PERMISSIONS, Permission, Role
from kartka.tokens import Audience, Claims, SessionEnded

SECURITY_SCHEME: Final = "ApiKey"
SHOPPER_SCHEME: Final = "ShopperToken"
STAFF_SCHEME: Final = "StaffToken"
#: The PassKit web service's own scheme (``Authorization: ApplePass <pass's authenticationToken>``) and
#: the providers' webhooks (Infobip: HTTP Basic; Twilio: a signature header).
APPLE_PASS_SCHEME: Final = "ApplePass"  # noqa: S105 - a scheme name, not a secret
INFOBIP_SCHEME: Final = "InfobipBasic"
TWILIO_SCHEME: Final = "TwilioSignature"
GOOGLE_WALLET_SCHEME: Final = "GoogleWalletSignature"
MAX_KEY_LENGTH: Final = 200
MAX_TOKEN_LENGTH: Final = 4096

#: What admin endpoints declare: an admin key, or a staff token whose role has the permission.
ADMIN_SECURITY: Final[list[dict[str, list[str]]]] = [{SECURITY_SCHEME: []}, {STAFF_SCHEME: []}]


def _authorization(scope: Any) -> str | None:
    for name, value in scope["headers"]:  # a plain scan: cheaper than building Headers on every request
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


def bearer_token(request: Request[Any, Any, Any], *, max_length: int = MAX_KEY_LENGTH) -> str:
    header = _authorization(request.scope)
    if not header:
        raise Unauthenticated("Send the credential as 'Authorization: Bearer <key or token>'")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("The Authorization header must be 'Bearer <key or token>'")
    if len(token) > max_length:
        raise Unauthenticated("The credential is not valid")
    return token


async def _key(request: Request[Any, Any, Any], token: str) -> Principal:
    keys = services_of(request.scope["litestar_app"].state).keys
    principal = keys.cached(token) or await keys.verify(token)
    if principal is None:
        raise Unauthenticated("The key is not valid: unknown or revoked")
    return principal


async def _other_kind(request: Request[Any, Any, Any], token: str, wanted: str) -> None:
    """Raise 403 when ``token``, refused as ``wanted``, is a valid credential of another kind (a till key
    on the app's endpoints, a shopper's token on a till's): it is valid, it just does not cover this
    endpoint. Anything else stays a 401."""
    if token.startswith(KEY_PREFIX):
        keys = services_of(request.scope["litestar_app"].state).keys
        principal = keys.cached(token) or await keys.verify(token)
        if principal is not None:
            raise Forbidden(f"This is a {principal.scope} key; {request.url.path} needs {wanted}")
        return
    for audience, kind in ((Audience.APP, "a shopper's access token"), (Audience.STAFF, "a staff access token")):
        try:
            await _token(request, token, audience)
        except Unauthenticated:
            continue
        raise Forbidden(f"This is {kind}; {request.url.path} needs {wanted}")


class require_scope:  # noqa: N801 - reads as a declaration: before_request = require_scope(Scope.POS)
    """A ``before_request`` hook admitting keys of one scope; sets ``request.state.principal``."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(self, request: Request[Any, Any, Any]) -> None:
        token = bearer_token(request, max_length=MAX_TOKEN_LENGTH)
        if not token.startswith(KEY_PREFIX):
            await _other_kind(request, token, f"a {self.scope} key")
        principal = await _key(request, token)
        if principal.scope is not self.scope:
            raise Forbidden(f"This is a {principal.scope} key; {request.url.path} needs a {self.scope} key")
        request.scope["state"][PRINCIPAL] = principal


async def _token(request: Request[Any, Any, Any], token: str, audience: Audience) -> Claims:
    services = services_of(request.scope["litestar_app"].state)
    claims = services.tokens.verify(token, audience)
    if not await services.tokens.session_alive(services.pool, claims):
        raise SessionEnded("the session has ended (signed out, or the account was closed); sign in again")
    return claims


class _RequireShopper:
    """A ``before_request`` hook admitting a signed-in shopper's access token (``/v1/auth/token``)."""

    async def __call__(self, request: Request[Any, Any, Any]) -> None:
        token = bearer_token(request, max_length=MAX_TOKEN_LENGTH)
        try:
            request.scope["state"][SHOPPER] = await _token(request, token, Audience.APP)
        except Unauthenticated:
            await _other_kind(request, token, "a shopper's access token")
            raise


require_shopper: Final = _RequireShopper()


class require_permission:  # noqa: N801 - before_request = require_permission(Permission.CAMPAIGNS)
    """Admin endpoints: an admin key (every permission) or a staff token whose role has ``permission`` (or
    one of ``more``). Sets ``request.state`` to who acted, for the records (``api_key:<id>`` or ``staff:<id>``)."""

    def __init__(self, permission: Permission, *more: Permission) -> None:
        self.permission = permission
        self.permissions = frozenset((permission, *more))

    async def __call__(self, request: Request[Any, Any, Any]) -> None:
        token = bearer_token(request, max_length=MAX_TOKEN_LENGTH)
        if token.startswith(KEY_PREFIX):
            principal = await _key(request, token)
            if principal.scope is not Scope.ADMIN:
                raise Forbidden(f"This is a {principal.scope} key; {request.url.path} needs an admin key or staff")
            request.scope["state"][ACTOR] = f"api_key:{principal.key_id}"
            return
        try:
            claims = await _token(request, token, Audience.STAFF)
        except Unauthenticated:
            await _other_kind(request, token, "an admin key or a staff access token")
            raise
        try:
            role = Role(claims.role or "")
        except ValueError as exc:
            raise Unauthenticated("the staff token carries no known role") from exc
        if not self.permissions & ROLE_PERMISSIONS[role]:
            raise Forbidden(f"a {role} may not use {request.url.path} (it needs the {self.permission} permission)")
        request.scope["state"][ACTOR] = f"staff:{claims.subject}"


def shopper_of(request: Request[Any, Any, Any]) -> Claims:
    """The signed-in shopper, as :func:`require_shopper` found them."""
    claims: Claims = request.scope["state"][SHOPPER]
    return claims


def actor_of(request: Request[Any, Any, Any]) -> str:
    """Who is acting on an admin endpoint, as :class:`require_permission` found them."""
    actor: str = request.scope["state"][ACTOR]
    return actor


def staff_of(request: Request[Any, Any, Any]) -> UUID | None:
    """The staff member acting on an admin endpoint (``None`` for an admin key)."""
    kind, _, subject = actor_of(request).partition(":")
    return UUID(subject) if kind == "staff" else None
