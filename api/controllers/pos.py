"""The till: register a shopper by phone, issue and attach no-name cards, identify by scan."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody, PathParameter

from api.auth import SECURITY_SCHEME, require_scope
from api.errors import problems
from api.state import principal_of, provide_conn, provide_tx, services_of
from kartka.db import Connection
from kartka.keys import Scope
from wallet.customers import Origin
from wallet.models import Attachment, Identification, Registration, Source

Phone = Annotated[str, msgspec.Meta(min_length=1, max_length=32, examples=["+375291234567"])]
Name = Annotated[str, msgspec.Meta(max_length=200, examples=["Анна"])]
CardNumber = Annotated[str, PathParameter(pattern=r"^[0-9 -]{13,20}$", description="13-digit card number")]


EXISTING = ResponseSpec(
    data_container=Registration, description="The phone was already registered: its customer and card, created false"
)


class RegisterAtTill(msgspec.Struct, forbid_unknown_fields=True):
    phone: Phone
    name: Name | None = None


class AttachPhone(msgspec.Struct, forbid_unknown_fields=True):
    phone: Phone
    name: Name | None = None


class IdentifyRequest(msgspec.Struct, forbid_unknown_fields=True):
    code: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=512,
            description="What the till scanned or typed: the card QR or barcode content, a card number or a phone",
        ),
    ]


def _origin(request: Request[Any, Any, State]) -> Origin:
    principal = principal_of(request)
    return Origin(source=Source.POS, store=principal.store, terminal=principal.terminal, api_key_id=principal.key_id)


class _PosController(Controller):
    tags = ["pos"]  # noqa: RUF012
    before_request = require_scope(Scope.POS)
    security = [{SECURITY_SCHEME: []}]  # noqa: RUF012
    dependencies = {"tx": Provide(provide_tx), "conn": Provide(provide_conn)}  # noqa: RUF012


class PosCustomerController(_PosController):
    path = "/v1/pos/customers"

    @post(
        "/",
        operation_id="posRegisterCustomer",
        summary="Register a shopper by phone (idempotent: the same phone returns the same card)",
        description="201 with a new customer and card; 200 with the existing ones and `created: false`.",
        status_code=201,
        responses=problems(401, 403, 422) | {200: EXISTING},
    )
    async def register(
        self,
        data: JSONBody[RegisterAtTill],
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Response[Registration]:
        customers = services_of(request.app.state).customers
        result = await customers.register(tx, phone=data.phone, name=data.name, origin=_origin(request))
        return Response(result, status_code=201 if result.created else 200)


class PosCardController(_PosController):
    path = "/v1/pos/cards"

    @post(
        "/anonymous",
        operation_id="posIssueAnonymousCard",
        summary="Issue a no-name card that can be attached to a phone later",
        status_code=201,
        responses=problems(401, 403),
    )
    async def issue_anonymous(
        self,
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Registration:
        customers = services_of(request.app.state).customers
        return await customers.issue_anonymous_card(tx, origin=_origin(request))

    @post(
        "/{number:str}/attach",
        operation_id="posAttachCard",
        summary="Give a no-name card a phone",
        description=(
            "`outcome: attached` when the phone is new: the card's account takes the phone. "
            "`outcome: merged` when the phone already had a card: the no-name account is merged into it, "
            "the no-name card becomes `replaced` (scans of it find the kept card) and `card` is the kept one."
        ),
        status_code=200,
        responses=problems(401, 403, 404, 409, 422),
    )
    async def attach(
        self,
        number: CardNumber,
        data: JSONBody[AttachPhone],
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Attachment:
        services = services_of(request.app.state)
        return await services.customers.attach_card(
            tx, number=number, phone=data.phone, name=data.name, origin=_origin(request), now=services.clock.now()
        )


class PosIdentifyController(_PosController):
    path = "/v1/pos/identify"

    @post(
        "/",
        operation_id="posIdentify",
        summary="Find the shopper behind a scanned or typed card, QR or phone",
        status_code=200,
        responses=problems(401, 403, 404, 409, 422),
    )
    async def identify(
        self,
        data: JSONBody[IdentifyRequest],
        state: State,
    ) -> Identification:
        # The till's hottest read takes its connection inline: a dependency with cleanup costs about
        # a tenth of this request (bench/run.py), and a single statement needs no transaction.
        services = services_of(state)
        async with services.pool.acquire() as conn:
            return await services.customers.identify(conn, data.code, services.clock.now())
