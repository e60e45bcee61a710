"""Stores: a code the tills and keys name, a display name, a time zone (marketing quiet hours are kept in
the shopper's store's local time) and where it is (wallet passes come up on the lock screen near it).

The admin API (``PUT /v1/admin/stores/{code}``) and the staff console both write them through here.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from kartka.db import Connection
from kartka.errors import InvalidInput
from kartka.keys import CODE_PATTERN
from wallet.profile import has_control_characters


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


async def put_store(conn: Connection, code: str, data: StoreInput) -> Store:
    """Create or update a store."""
    if not re.fullmatch(CODE_PATTERN, code):
        raise InvalidInput("store codes are 1-64 letters, digits, '.', '_' or '-'", field="code")
    name = data.name.strip()
    if not name or has_control_characters(name):
        raise InvalidInput("a store needs a name, in printable characters", field="name")
    try:
        ZoneInfo(data.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown time zone {data.timezone!r} (use an IANA name)", field="timezone") from exc
    location = data.location
    await conn.execute(
        """
        INSERT INTO stores (code, name, timezone, latitude, longitude) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, timezone = EXCLUDED.timezone,
               latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude, updated_at = now()
        """,
        code,
        name,
        data.timezone,
        location.latitude if location else None,
        location.longitude if location else None,
    )
    return Store(code=code, name=name, timezone=data.timezone, location=location)


async def list_stores(conn: Connection) -> list[Store]:
    rows = await conn.fetch("SELECT code, name, timezone, latitude, longitude FROM stores ORDER BY code")
    return [
        Store(
            code=r["code"],
            name=r["name"],
            timezone=r["timezone"],
            location=Location(r["latitude"], r["longitude"]) if r["latitude"] is not None else None,
        )
        for r in rows
    ]
