"""Receipts without a card, from tills (``/v1/pos/receipts``) and the online shop
(``/v1/integrations/receipts``), their refunds, and the bulk back-fill from the till system."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import JSONBody, PathParameter, QueryParameter

from analytics.receipts import Channel, Receipt, ReceiptInput, ReceiptRefund, ReceiptRefundInput, Scope, Stored
from api.auth import SECURITY_SCHEME, require_scope
from api.controllers.integrations import _FORMATS
from api.controllers.orders import REPLAYED, IdempotencyKey, _operation
from api.errors import problems
from api.state import principal_of, provide_tx, services_of
from kartka.db import Connection
from kartka.errors import UnsupportedMediaType
from kartka.keys import Principal
from kartka.keys import Scope as KeyScope
from wallet.importer import ImportReport

ReceiptId = Annotated[
    str, PathParameter(min_length=1, max_length=64, description="The receipt id, as the store (or online shop) gave it")
]
_receipt = msgspec.json.Decoder(Receipt)
_refund = msgspec.json.Decoder(ReceiptRefund)


@dataclass
class ReceiptImportOperation(Operation):
    """The import reads its body as a stream, so Litestar cannot see it: describe it by hand."""

    def __post_init__(self) -> None:
        text = Schema(type=OpenAPIType.STRING)
        self.request_body = RequestBody(
            required=True,
            description="CSV with a header line (receipt_id, purchased_at, total, and optionally store and "
            'terminal; comma or semicolon separated), or NDJSON: one {"receipt_id", "purchased_at", "total", "store"?, '
            '"terminal"?} object per line. `total` in minor units, `purchased_at` RFC 3339 with an offset. UTF-8.',
            content={
                "text/csv": OpenAPIMediaType(
                    schema=text,
                    example="receipt_id,store,terminal,purchased_at,total\n"
                    "100231,store-1,till-2,2026-03-01T10:15:00+03:00,1250\n",
                ),
                "application/x-ndjson": OpenAPIMediaType(
                    schema=text,
                    example='{"receipt_id": "100231", "store": "store-1", "purchased_at": '
                    '"2026-03-01T10:15:00+03:00", "total": 1250}\n',
                ),
            },
        )


def _scope(principal: Principal) -> Scope:
    channel: Channel = "online" if principal.scope is KeyScope.INTEGRATION else "pos"
    return Scope(channel=channel, store=principal.store, terminal=principal.terminal, api_key_id=principal.key_id)


def _answer(stored: Stored, decoder: msgspec.json.Decoder[Any]) -> Response[Any]:
    headers = {"Idempotent-Replayed": "true"} if stored.replayed else {}
    return Response(decoder.decode(stored.body), status_code=201, headers=headers)


class _ReceiptHandlers(Controller):
    security = [{SECURITY_SCHEME: []}]  # noqa: RUF012
    dependencies = {"tx": Provide(provide_tx)}  # noqa: RUF012

    @post(
        "/",
        operation_id=_operation("RecordReceipt"),
        summary="Record a purchase made without a card (idempotent by Idempotency-Key)",
        description="For the share of identified purchases and the average check without a card: a purchase "
        "with a card is already known from its order. A retry with the same key and body returns the same answer "
        "(header `Idempotent-Replayed`); the same key with another body, or the same `receipt_id` under another "
        "key, is 409. A `receipt_id` is unique within the store (online: within the online shop); a receipt with "
        "the id of an order of the same store is that order's purchase and counts once. `lines`, when sent, must "
        "add up to `total`. `purchased_at` may be up to `offline_days` old, never in the future.",
        status_code=201,
        response_headers=REPLAYED,
        responses=problems(401, 403, 409, 422),
    )
    async def record(
        self,
        data: JSONBody[ReceiptInput],
        idempotency_key: IdempotencyKey,
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Response[Receipt]:
        stored = await services_of(request.app.state).receipts.record(
            tx, data, scope=_scope(principal_of(request)), idempotency_key=idempotency_key
        )
        return _answer(stored, _receipt)

    @post(
        "/{receipt_id:str}/refunds",
        operation_id=_operation("RefundReceipt"),
        summary="Refund part or all of a receipt without a card",
        description="Refunds of a receipt together never exceed its total (409 otherwise); a receipt refunded "
        "in full no longer counts in the KPIs. Idempotent by Idempotency-Key like receipts. `receipt_id` names "
        "a receipt of this key's store (online: of the online shop).",
        status_code=201,
        response_headers=REPLAYED,
        responses=problems(401, 403, 404, 409, 422),
    )
    async def refund(
        self,
        receipt_id: ReceiptId,
        data: JSONBody[ReceiptRefundInput],
        idempotency_key: IdempotencyKey,
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Response[ReceiptRefund]:
        stored = await services_of(request.app.state).receipts.refund(
            tx, receipt_id, data, scope=_scope(principal_of(request)), idempotency_key=idempotency_key
        )
        return _answer(stored, _refund)


class PosReceiptController(_ReceiptHandlers):
    path = "/v1/pos/receipts"
    tags = ["pos"]  # noqa: RUF012
    before_request = require_scope(KeyScope.POS)


class IntegrationReceiptController(_ReceiptHandlers):
    path = "/v1/integrations/receipts"
    tags = ["integrations"]  # noqa: RUF012
    before_request = require_scope(KeyScope.INTEGRATION)

    @post(
        "/import",
        operation_id="integrationImportReceipts",
        summary="Back-fill receipts: CSV (receipt_id,store,terminal,purchased_at,total) or NDJSON, streamed",
        description="History from the till system, any size: `Content-Type: text/csv` (header line required; "
        "`store` and `terminal` may be left out or empty) or `application/x-ndjson` (one object per line). "
        "`channel=pos` (default) for the tills' receipts, which name their store; `channel=online` for the online "
        "shop's. A receipt already recorded is counted as `existing` and left as it is, so a failed import can "
        "be sent again whole; a bad row is reported with its line number and never stops the good ones. "
        "A store-bound key imports for its own store only. The KPIs include the history once the worker has "
        "recomputed the days it touches.",
        status_code=200,
        request_max_body_size=None,
        operation_class=ReceiptImportOperation,
        responses=problems(401, 403, 415, 422),
    )
    async def import_receipts(
        self,
        request: Request[Any, Any, State],
        channel: Annotated[str, QueryParameter(required=False, pattern="^(pos|online)$")] = "pos",
    ) -> ImportReport:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        fmt = _FORMATS.get(media_type)
        if fmt is None:
            raise UnsupportedMediaType(
                f"Send the file as text/csv or application/x-ndjson, not {media_type or 'no content type'}",
                field="content-type",
            )
        principal = principal_of(request)
        return await services_of(request.app.state).receipt_importer.run(
            request.stream(),
            fmt,
            channel="online" if channel == "online" else "pos",
            store=principal.store,
            api_key_id=principal.key_id,
        )
