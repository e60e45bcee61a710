"""Staff tools (an admin key, or staff with the right role): bonus grants, blocking and replacing cards,
lifting a staff account's sign-in limits."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, PathParameter

from api.auth import ADMIN_SECURITY, actor_of, require_permission
from api.controllers.pos import CardNumber
from api.errors import problems
from api.state import provide_tx, services_of
from kartka.db import Connection
from kartka.staff import Permission, StaffAccount, unlock_staff
from wallet.grants import Grant, GrantInput, grant
from wallet.models import Card, Replacement


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
        return await grant(
            tx, services.program, services.clock, services.customers.events, customer_id, data, actor=actor_of(request)
        )


class AdminCardController(Controller):
    """Support's card tools: block a card (lost, misused) or replace it with a new number."""

    path = "/v1/admin/cards"
    tags = ["admin"]  # noqa: RUF012
    before_request = require_permission(Permission.CARDS)
    security = ADMIN_SECURITY
    dependencies = {"tx": Provide(provide_tx)}  # noqa: RUF012

    @post(
        "/{number:str}/block",
        operation_id="adminBlockCard",
        summary="Block a card: tills refuse it and its wallet passes are voided on the phones",
        status_code=200,
        responses=problems(401, 403, 404, 409),
    )
    async def block(
        self, number: CardNumber, tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> Card:
        services = services_of(request.app.state)
        return await services.customers.block_card(tx, number, now=services.clock.now())

    @post(
        "/{number:str}/replace",
        operation_id="adminReplaceCard",
        summary="Replace a lost or leaked card: a new number on the same account, the old one blocked for good",
        description="The shopper gets a link to the new card; the old card's wallet passes are voided.",
        status_code=201,
        responses=problems(401, 403, 404, 409),
    )
    async def replace(
        self, number: CardNumber, tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> Replacement:
        services = services_of(request.app.state)
        return await services.customers.replace_card(tx, number, now=services.clock.now())


class AdminStaffController(Controller):
    path = "/v1/admin/staff"
    tags = ["admin"]  # noqa: RUF012
    before_request = require_permission(Permission.STAFF)
    security = ADMIN_SECURITY
    dependencies = {"tx": Provide(provide_tx)}  # noqa: RUF012

    @post(
        "/{username:str}/unlock",
        operation_id="adminUnlockStaff",
        summary="Lift a staff account's sign-in limits (failed passwords, attempts from new addresses) at once",
        description="For a staff member shut out by someone guessing their password. The per-address limit "
        "(all accounts) stays. The same as `kartka staff unlock USERNAME`. `admin` only.",
        status_code=200,
        responses=problems(401, 403, 404),
    )
    async def unlock(
        self,
        username: Annotated[str, PathParameter(max_length=64)],
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> StaffAccount:
        return await unlock_staff(tx, username, services_of(request.app.state).clock.now())
