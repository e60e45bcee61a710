"""The program's stores: a name, the time zone that sets marketing quiet hours for the shoppers who joined
there, and where the store is (wallet passes come up on the lock screen near it).

The wallet owns the ``stores`` table; the admin API and the staff console change it through here.
"""

from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from kartka.db import Connection
from kartka.errors import InvalidInput
from kartka.keys import validate_code


class Location(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Decimal degrees (JSON numbers, read exactly as decimals, never as floats)."""

    latitude: Decimal
    longitude: Decimal

    def __post_init__(self) -> None:
        if not (Decimal(-90) <= self.latitude <= 90 and Decimal(-180) <= self.longitude <= 180):
            raise ValueError("latitude is -90..90 and longitude -180..180 degrees")


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
    if not 1 <= len(store.name) <= 200:
        raise InvalidInput("a store's name is 1-200 characters", field="name")
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


async def get_store(conn: Connection, code: str) -> Store | None:
    row = await conn.fetchrow("SELECT code, name, timezone, latitude, longitude FROM stores WHERE code = $1", code)
    if row is None:
        return None
    located = row["latitude"] is not None and row["longitude"] is not None
    return Store(
        code=row["code"],
        name=row["name"],
        timezone=row["timezone"],
        location=Location(latitude=row["latitude"], longitude=row["longitude"]) if located else None,
    )
