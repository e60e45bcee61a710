"""Orders: price a cart, commit a purchase, refund part of it. The same handlers serve tills
(``/v1/pos/orders``, pos keys) and the online shop (``/v1/integrations/orders``, integration keys)."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, Response, post
from litestar.datastructures import ResponseHeader, State
from litestar.di import NamedDependency, Provide
from litestar.params import HeaderParameter, JSONBody, PathParameter

from api.auth import SECURITY_SCHEME, require_scope
from api.errors import problems
from api.state import principal_of, provide_conn, provide_tx, services_of
from kartka.db import Connection
from kartka.keys import Principal, Scope
from wallet.orders import (
    CalculateInput,
    Channel,
    CommitInput,
    OrderResult,
    Quote,
    RefundInput,
    RefundResult,
    Stored,
)

IdempotencyKey = Annotated[
    str,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="A new random value per purchase (e.g. a UUID); a retry sends the same one",
    ),
]
OrderId = Annotated[
    str, PathParameter(min_length=1, max_length=64, description="The order id, as the store (or online shop) gave it")
]

_order_decoder = msgspec.json.Decoder(OrderResult)
_refund_decoder = msgspec.json.Decoder(RefundResult)


def _operation(name: str) -> Any:
    """``posCommitOrder`` or ``integrationsCommitOrder``, from the audience in the path."""

    def create(handler: Any, method: Any, components: list[Any]) -> str:
        return f"{components[1]}{name}"

    return create


def _channel(principal: Principal) -> Channel:
    return "online" if principal.scope is Scope.INTEGRATION else "pos"


def _answer(stored: Stored, decoder: msgspec.json.Decoder[Any]) -> Response[Any]:
    """201 with the stored answer; a retry is marked."""
    headers = {"Idempotent-Replayed": "true"} if stored.replayed else {}
    return Response(decoder.decode(stored.body), status_code=201, headers=headers)


#: Commits and refunds say when an answer is a stored one replayed for a retry.
REPLAYED: Final = [
    ResponseHeader(
        name="Idempotent-Replayed",
        description="`true` when this is the stored answer to an earlier request with the same Idempotency-Key",
        documentation_only=True,
        required=False,
    )
]


class _OrderHandlers(Controller):
    security = [{SECURITY_SCHEME: []}]  # noqa: RUF012
    dependencies = {"tx": Provide(provide_tx), "conn": Provide(provide_conn)}  # noqa: RUF012

    @post(
        "/calculate",
        operation_id=_operation("CalculateOrder"),
        summary="Price a cart: discounts, points that may be and will be spent, points it earns (writes nothing)",
        description="`redeem_points` above the maximum is cut to `max_redeem_points`, which is the smaller of "
        "the points available and the program's share (`redeem_cap_bp`, 70 % by default) of the eligible total "
        "after discounts (items on sale are not eligible).",
        status_code=200,
        responses=problems(401, 403, 404, 409, 422),
    )
    async def calculate(
        self,
        data: JSONBody[CalculateInput],
        request: Request[Any, Any, State],
    ) -> Quote:
        principal = principal_of(request)
        services = services_of(request.app.state)
        async with services.pool.acquire() as conn:  # read-only and hot: inline, as identify does
            return await services.orders.calculate(
                conn, data, store=principal.store, terminal=principal.terminal, channel=_channel(principal)
            )

    @post(
        "/",
        operation_id=_operation("CommitOrder"),
        summary="Commit a purchase: spend and earn points (idempotent by Idempotency-Key)",
        description="A retry with the same key and body returns the same answer (header `Idempotent-Replayed`) "
        "and changes nothing; the same key with another body, or the same `order_id` under another key, is 409. "
        "An `order_id` is unique within the store (online: within the online shop); other stores may use it too. "
        "Redeeming more than is available is 409 and writes nothing. `purchased_at` lets an offline till send a "
        "purchase later: pending and expiry run from it; it may not be in the future.",
        status_code=201,
        response_headers=REPLAYED,
        responses=problems(401, 403, 404, 409, 422),
    )
    async def commit(
        self,
        data: JSONBody[CommitInput],
        idempotency_key: IdempotencyKey,
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Response[OrderResult]:
        principal = principal_of(request)
        stored = await services_of(request.app.state).orders.commit(
            tx,
            data,
            idempotency_key=idempotency_key,
            api_key_id=principal.key_id,
            store=principal.store,
            terminal=principal.terminal,
            channel=_channel(principal),
        )
        return _answer(stored, _order_decoder)

    @post(
        "/{order_id:str}/refunds",
        operation_id=_operation("RefundOrder"),
        summary="Refund part or all of a purchase, in proportion to the value returned",
        description="Takes back the points the returned part earned and gives back the points spent on it. "
        "Returning more than was sold is 409. Idempotent by Idempotency-Key like commits. Order ids are the "
        "till's own: `order_id` names an order of this till's store (or, for the online shop, an online order); "
        "a till taking back another store's order names it with `order_store`, an online order with "
        '`order_channel: "online"`.',
        status_code=201,
        response_headers=REPLAYED,
        responses=problems(401, 403, 404, 409, 422),
    )
    async def refund(
        self,
        order_id: OrderId,
        data: JSONBody[RefundInput],
        idempotency_key: IdempotencyKey,
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Response[RefundResult]:
        principal = principal_of(request)
        stored = await services_of(request.app.state).orders.refund(
            tx,
            order_id,
            data,
            idempotency_key=idempotency_key,
            api_key_id=principal.key_id,
            channel=_channel(principal),
            store=principal.store,
        )
        return _answer(stored, _refund_decoder)


class PosOrderController(_OrderHandlers):
    path = "/v1/pos/orders"
    tags = ["pos"]  # noqa: RUF012
    before_request = require_scope(Scope.POS)


class IntegrationOrderController(_OrderHandlers):
    path = "/v1/integrations/orders"
    tags = ["integrations"]  # noqa: RUF012
    before_request = require_scope(Scope.INTEGRATION)
