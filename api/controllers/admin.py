"""Staff tools (an admin key, or staff with the right role): finding a shopper and reading their file,
bonus grants, blocking, replacing and attaching cards, sending the card link again, lifting a staff
account's sign-in limits. The staff console (``api/console``) calls the same services."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter

from analytics import access
from api.auth import ADMIN_SECURITY, actor_of, require_permission
from api.controllers.pos import CardNumber, Phone
from api.errors import problems
from api.state import provide_conn, provide_tx, services_of
from kartka.db import Connection
from kartka.staff import Permission, StaffAccount, unlock_staff
from notifications.history import SentMessage, messages_for
from wallet import ledger, support
from wallet.customers import Origin
from wallet.grants import Grant, GrantInput, grant
from wallet.ledger import TransactionPage
from wallet.models import Attachment, Card, Replacement, Source
from wallet.support import Match, ShopperFile


class ShopperView(msgspec.Struct, frozen=True):
    """What support sees of a shopper: their file and the newest messages sent to them."""

    file: ShopperFile
    messages: list[SentMessage]


class LinkSent(msgspec.Struct, frozen=True):
    card_number: str


class AttachInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    phone: Phone


class AdminCustomerController(Controller):
    path = "/v1/admin/customers"
    tags = ["admin"]  # noqa: RUF012
    before_request = require_permission(Permission.GRANT_POINTS)
    security = ADMIN_SECURITY
    dependencies = {"tx": Provide(provide_tx)}  # noqa: RUF012

    @get(
        "/",
        operation_id="adminFindCustomers",
        summary="Find shoppers by phone, card number (any status) or the start of their name",
        before_request=require_permission(Permission.CARDS),
        dependencies={"conn": Provide(provide_conn)},
        responses=problems(401, 403),
    )
    async def find(
        self,
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
        q: Annotated[str, QueryParameter(min_length=1, max_length=200)],
    ) -> list[Match]:
        return await support.find_customers(conn, services_of(request.app.state).customers, q)

    @get(
        "/{customer_id:uuid}",
        operation_id="adminGetCustomer",
        summary="A shopper's file: card, balance, tier, cards, purchases and refunds, wallet passes, messages",
        description="The points history is `GET /v1/admin/customers/{id}/transactions`; the newest messages "
        "come here with their delivery status.",
        before_request=require_permission(Permission.CARDS),
        dependencies={"conn": Provide(provide_conn)},
        responses=problems(401, 403, 404),
    )
    async def show(
        self, customer_id: FromPath[UUID], conn: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> ShopperView:
        services = services_of(request.app.state)
        file = await support.shopper_file(conn, services.customers, customer_id, services.clock.now())
        return ShopperView(file=file, messages=await messages_for(conn, customer_id))

    @get(
        "/{customer_id:uuid}/transactions",
        operation_id="adminCustomerTransactions",
        summary="A shopper's points history, newest first (as the app shows it to them)",
        before_request=require_permission(Permission.CARDS),
        dependencies={"conn": Provide(provide_conn)},
        responses=problems(401, 403, 422),
    )
    async def transactions(
        self,
        customer_id: FromPath[UUID],
        conn: NamedDependency[Connection],
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=40)] = None,
    ) -> TransactionPage:
        return await ledger.transactions(conn, customer_id, cursor=cursor, limit=limit)

    @post(
        "/{customer_id:uuid}/card-link",
        operation_id="adminResendCardLink",
        summary="Send the shopper the link to their card again (one message per minute at most)",
        status_code=202,
        before_request=require_permission(Permission.CARDS),
        responses=problems(401, 403, 404, 409, 422),
    )
    async def resend_link(
        self, customer_id: FromPath[UUID], tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> LinkSent:
        services = services_of(request.app.state)
        number = await support.resend_card_link(tx, services.customers, customer_id, services.clock.now())
        return LinkSent(card_number=number)

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

    @post(
        "/{number:str}/attach",
        operation_id="adminAttachCard",
        summary="Give a no-name card a phone: a new shopper takes it, or it merges into the phone's account",
        description="Points, purchases and history of the no-name card move over; nothing is lost.",
        status_code=200,
        responses=problems(401, 403, 404, 409, 422),
    )
    async def attach(
        self,
        number: CardNumber,
        data: JSONBody[AttachInput],
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Attachment:
        services = services_of(request.app.state)
        return await services.customers.attach_card(
            tx,
            number=number,
            phone=data.phone,
            origin=Origin(source=Source.MANUAL, actor=actor_of(request)),
            now=services.clock.now(),
        )


logger = logging.getLogger("kartka.admin")


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

    @put(
        "/{username:str}/stores",
        operation_id="adminAssignStaffStores",
        summary="Set the stores a store manager reads the numbers of",
        description="Replaces the list: a store manager (`store_manager`) reads the KPI and promotion "
        "reports of these stores and of no other. 422 for a store the chain does not have or for another "
        "role (they see every store); 404 for an unknown username. The console's staff page does the same. "
        "`admin` only.",
        status_code=200,
        responses=problems(401, 403, 404, 422),
    )
    async def assign_stores(
        self,
        username: Annotated[str, PathParameter(max_length=64)],
        data: JSONBody[StoreAssignment],
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> StoreAssignment:
        chosen = await access.assign_manager_stores(tx, username, list(data.stores))
        logger.info("%s assigned stores %s to %s", actor_of(request), ",".join(chosen), username)
        return StoreAssignment(stores=chosen)


class StoreAssignment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    stores: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]], msgspec.Meta(max_length=1000)]
    """Store codes; an empty list leaves the manager no store."""
