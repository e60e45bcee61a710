"""The online shop and CRM: register customers from any channel and import them in bulk.

An integration key is either chain-wide (made without a store: the CRM, a chain-wide online shop) or
bound to one store. A store-bound key acts for its store only: what it registers or imports is
recorded with its store (naming another is 403), its orders are its store's, and the history it reads
is what happened in its store. Customers themselves are chain-wide (one card per phone), so a
store-bound key still finds any customer by phone, as the store's tills do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, JSONBody, QueryParameter

from api.auth import SECURITY_SCHEME, require_scope
from api.controllers.pos import EXISTING, Name, Phone
from api.errors import problems
from api.state import principal_of, provide_conn, provide_tx, services_of
from kartka.db import Connection
from kartka.errors import Forbidden, InvalidInput, UnsupportedMediaType
from kartka.keys import CODE_PATTERN, Principal, Scope
from wallet import ledger
from wallet.customers import Origin
from wallet.importer import Format, ImportReport
from wallet.ledger import TransactionPage
from wallet.models import Registration, Source

Email = Annotated[str, msgspec.Meta(max_length=254, examples=["anna@example.com"])]
StoreCode = Annotated[str, msgspec.Meta(pattern=CODE_PATTERN)]

_FORMATS = {
    "text/csv": Format.CSV,
    "application/csv": Format.CSV,
    "application/x-ndjson": Format.NDJSON,
    "application/ndjson": Format.NDJSON,
    "application/jsonl": Format.NDJSON,
    "application/jsonlines": Format.NDJSON,
}


class RegisterFromChannel(msgspec.Struct, forbid_unknown_fields=True):
    phone: Phone
    source: Source
    name: Name | None = None
    email: Email | None = None
    store: StoreCode | None = None

    def __post_init__(self) -> None:
        _not_a_till(self.source)


def _not_a_till(source: Source) -> None:
    if source is Source.POS:
        raise ValueError("source 'pos' is recorded by tills themselves (the /v1/pos API); use another source")


@dataclass
class ImportOperation(Operation):
    """The import reads its body as a stream, so Litestar cannot see it: describe it by hand."""

    def __post_init__(self) -> None:
        text = Schema(type=OpenAPIType.STRING)
        self.request_body = RequestBody(
            required=True,
            description="CSV with a header line (phone, and optionally name and email; ',' or ';'), "
            'or NDJSON: one {"phone", "name"?, "email"?} object per line. UTF-8; any size.',
            content={
                "text/csv": OpenAPIMediaType(schema=text, example="phone,name,email\n+375291234567,Анна,\n"),
                "application/x-ndjson": OpenAPIMediaType(schema=text, example='{"phone": "+375291234567"}\n'),
            },
        )


def _store_for(principal: Principal, asked: str | None) -> str | None:
    """The store a registration is recorded with: a store-bound key's own (it may not name another)."""
    if principal.store is None:
        return asked
    if asked is not None and asked != principal.store:
        raise Forbidden(
            f"this key is bound to store {principal.store!r}: it registers customers for that store only",
            field="store",
        )
    return principal.store


class IntegrationCustomerController(Controller):
    """Registration, bulk import and the ledger history of customers."""

    path = "/v1/integrations/customers"
    tags = ["integrations"]  # noqa: RUF012
    before_request = require_scope(Scope.INTEGRATION)
    security = [{SECURITY_SCHEME: []}]  # noqa: RUF012
    dependencies = {  # noqa: RUF012
        "tx": Provide(provide_tx),
        "conn": Provide(provide_conn),
    }

    @post(
        "/",
        operation_id="integrationRegisterCustomer",
        summary="Register a customer from the website, an online order, the CRM, ... (idempotent by phone)",
        description="201 with a new customer and card; 200 with the existing ones and `created: false`. "
        "A name or e-mail fills in a blank on an existing customer and never overwrites one.",
        status_code=201,
        responses=problems(401, 403, 422) | {200: EXISTING},
    )
    async def register(
        self,
        data: JSONBody[RegisterFromChannel],
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Response[Registration]:
        principal = principal_of(request)
        origin = Origin(source=data.source, store=_store_for(principal, data.store), api_key_id=principal.key_id)
        customers = services_of(request.app.state).customers
        result = await customers.register(tx, phone=data.phone, name=data.name, email=data.email, origin=origin)
        return Response(result, status_code=201 if result.created else 200)

    @post(
        "/import",
        operation_id="integrationImportCustomers",
        summary="Bulk import: CSV (header phone,name,email) or NDJSON, streamed, any size",
        description=(
            "Send `Content-Type: text/csv` (comma or semicolon separated, header line required) or "
            "`application/x-ndjson` (one JSON object per line). Rows are written in batches as they "
            "arrive; a bad row is reported with its line number and never stops the good ones."
        ),
        status_code=200,
        request_max_body_size=None,
        operation_class=ImportOperation,
        responses=problems(401, 403, 415, 422),
    )
    async def import_customers(
        self,
        request: Request[Any, Any, State],
        source: Annotated[Source, QueryParameter(required=False)] = Source.CRM_IMPORT,
        store: Annotated[str | None, QueryParameter(required=False, pattern=CODE_PATTERN)] = None,
    ) -> ImportReport:
        if source is Source.POS:
            raise InvalidInput("source 'pos' is recorded by tills themselves; use another source", field="source")
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        fmt = _FORMATS.get(media_type)
        if fmt is None:
            raise UnsupportedMediaType(
                f"Send the file as text/csv or application/x-ndjson, not {media_type or 'no content type'}",
                field="content-type",
            )
        principal = principal_of(request)
        origin = Origin(source=source, store=_store_for(principal, store), api_key_id=principal.key_id)
        return await services_of(request.app.state).importer.run(request.stream(), fmt, origin)

    @get(
        "/{customer_id:uuid}/transactions",
        operation_id="integrationCustomerTransactions",
        summary="The customer's points history, newest first, cursor paginated",
        description="A store-bound key sees what happened in its store: its orders and their refunds.",
        responses=problems(401, 403, 404, 422),
    )
    async def transactions(
        self,
        customer_id: FromPath[UUID],
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
        cursor: Annotated[str | None, QueryParameter(required=False, max_length=64)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> TransactionPage:
        await services_of(request.app.state).customers.get_customer(conn, customer_id)
        store = principal_of(request).store
        return await ledger.transactions(conn, customer_id, cursor=cursor, limit=limit, store=store)
