"""Staff tools (an admin key, or staff with the right role): bonus grants."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from api.auth import ADMIN_SECURITY, actor_of, require_permission
from api.errors import problems
from api.state import provide_tx, services_of
from kartka.db import Connection
from kartka.staff import Permission
from wallet.grants import Grant, GrantInput, grant


class AdminCustomerController(Controller):
    path = "/v1/admin/customers"
    tags = ["admin"]  # noqa: RUF012
    before_request = require_permission(Permission.GRANT_POINTS)
    security = ADMIN_SECURITY
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
        return await grant(tx, services.program, services.clock, customer_id, data, actor=actor_of(request))
