"""The program's stores: a name, the time zone that sets marketing quiet hours for the shoppers who joined
there, and where the store is (wallet passes come up on the lock screen near it).

The wallet owns the ``stores`` table; the admin API and the staff console change it through here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import msgspec

from kartka.db import Connection
from kartka.errors import InvalidInput
from kartka.keys import validate_code
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
    """A store as the admin API's ``PUT /v1/admin/stores/{code}`` takes it (the code is in the path)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    location: Location | None = None
    """Where the store is: wallet passes come up on the lock screen near it."""

    def at(self, code: str) -> Store:
        return Store(code=code, name=self.name, timezone=self.timezone, location=self.location)


class Store(msgspec.Struct, frozen=True):
    code: str
    name: str
    timezone: str
    location: Location | None = None


async def put_store(conn: Connection, store: Store) -> Store:
    """Create the store or replace what is known of it; the same call twice is one store."""
    validate_code(store.code, "code")
    try:
        ZoneInfo(store.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown time zone {store.timezone!r} (use an IANA name)", field="timezone") from exc
    if not 1 <= len(store.name) <= 200 or not store.name.strip() or has_control_characters(store.name):
        raise InvalidInput("a store's name is 1-200 printable characters", field="name")
    location = store.location
    await conn.execute(
        """
        INSERT INTO stores (code, name, timezone, latitude, longitude) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, timezone = EXCLUDED.timezone,
               latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude, updated_at = now()
        """,
        store.code,
        store.name,
        store.timezone,
        location.latitude if location else None,
        location.longitude if location else None,
    )
    return store


def _store(row: asyncpg.Record) -> Store:
    located = row["latitude"] is not None and row["longitude"] is not None
    return Store(
        code=row["code"],
        name=row["name"],
        timezone=row["timezone"],
        location=Location(latitude=row["latitude"], longitude=row["longitude"]) if located else None,
    )


async def get_store(conn: Connection, code: str) -> Store | None:
    row = await conn.fetchrow("SELECT code, name, timezone, latitude, longitude FROM stores WHERE code = $1", code)
    return None if row is None else _store(row)


async def list_stores(conn: Connection) -> list[Store]:
    rows = await conn.fetch("SELECT code, name, timezone, latitude, longitude FROM stores ORDER BY code")
    return [_store(row) for row in rows]
