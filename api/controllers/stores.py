"""Stores (admin): their time zone sets marketing quiet hours, their location brings passes up nearby.
The wallet owns the table (``wallet.stores``); this parses the request and answers."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from litestar import Controller, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from api.auth import ADMIN_SECURITY, require_permission
from api.errors import problems
from api.state import provide_tx
from kartka.db import Connection
from kartka.errors import InvalidInput
from kartka.keys import CODE_PATTERN
from kartka.staff import Permission
from wallet import stores


class Location(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Decimal degrees (JSON numbers, read exactly as decimals, never as floats)."""

    latitude: Decimal
    longitude: Decimal

    def __post_init__(self) -> None:
        if not (Decimal(-90) <= self.latitude <= 90 and Decimal(-180) <= self.longitude <= 180):
            raise ValueError("latitude is -90..90 and longitude -180..180 degrees")
        if self.latitude.as_tuple().exponent < -6 or self.longitude.as_tuple().exponent < -6:  # type: ignore[operator]
            raise ValueError("coordinates have at most 6 decimals (about 10 cm)")


class StoreInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    location: Location | None = None
    """Where the store is: wallet passes come up on the lock screen near it."""


class Store(msgspec.Struct, frozen=True):
    code: str
    name: str
    timezone: str
    location: Location | None = None


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
        if not re.fullmatch(CODE_PATTERN, code):
            raise InvalidInput("store codes are 1-64 letters, digits, '.', '_' or '-'", field="code")
        try:
            ZoneInfo(data.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(f"unknown time zone {data.timezone!r} (use an IANA name)", field="timezone") from exc
        location = data.location
        where = stores.Location(location.latitude, location.longitude) if location else None
        await stores.put_store(tx, stores.Store(code=code, name=data.name, timezone=data.timezone, location=where))
        return Store(code=code, name=data.name, timezone=data.timezone, location=location)
