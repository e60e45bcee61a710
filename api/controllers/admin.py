"""Staff tools (admin key): bonus grants."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from api.auth import SECURITY_SCHEME, require_scope
from api.errors import problems
from api.state import principal_of, provide_tx, services_of
from kartka.db import Connection
from kartka.keys import Scope
from wallet.grants import Grant, GrantInput, grant


class AdminCustomerController(Controller):
    path = "/v1/admin/customers"
    tags = ["admin"]  # noqa: RUF012
    before_request = require_scope(Scope.ADMIN)
    security = [{SECURITY_SCHEME: []}]  # noqa: RUF012
    dependencies = {"tx": Provide(provide_tx)}  # noqa: RUF012

    @post(
        "/{customer_id:uuid}/grants",
        operation_id="adminGrantPoints",
        summary="Grant bonus points: available at once, expiring after `expires_in_days`",
        status_code=201,
        responses=problems(401, 403, 404, 422),
    )
    async def grant_points(
        self,
        customer_id: FromPath[UUID],
        data: JSONBody[GrantInput],
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Grant:
        services = services_of(request.app.state)
        principal = principal_of(request)
        return await grant(tx, services.program, services.clock, customer_id, data, actor=f"api_key:{principal.key_id}")
