"""Stores (admin): their time zone sets marketing quiet hours, their location brings passes up nearby.
The wallet owns the table and its rules (``wallet.stores``); this parses the request and answers."""

from __future__ import annotations

from litestar import Controller, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from api.auth import ADMIN_SECURITY, require_permission
from api.errors import problems
from api.state import provide_tx
from kartka.db import Connection
from kartka.staff import Permission
from wallet import stores
from wallet.stores import Store, StoreInput


class AdminStoreController(Controller):
    path = "/v1/admin/stores"
    tags = ["admin"]  # noqa: RUF012
    before_request = require_permission(Permission.STORES)
    security = ADMIN_SECURITY

    @put(
        "/{code:str}",
        operation_id="adminPutStore",
        summary="Create or update a store; its time zone sets marketing quiet hours for its shoppers",
        responses=problems(401, 403),
        dependencies={"tx": Provide(provide_tx)},
    )
    async def put_store(
        self, code: FromPath[str], data: JSONBody[StoreInput], tx: NamedDependency[Connection]
    ) -> Store:
        return await stores.put_store(tx, data.at(code))
