"""The shopper's phones that take app push: an APNs device token (iOS) or an FCM registration token.

A token belongs to one app install, so registering a token another customer had moves it (the phone
changed hands or someone else signed in on it); a shopper keeps at most ``MAX_DEVICES``, the least
recently seen going first. APNs 410 and FCM UNREGISTERED answers delete tokens (the worker).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Final, Literal
from uuid import UUID

import msgspec

from kartka.db import Connection
from kartka.errors import InvalidInput, NotFound

MAX_DEVICES: Final = 10
_APNS_TOKEN: Final = re.compile(r"^[0-9a-fA-F]{64,2048}$")  # Apple promises no length
_FCM_TOKEN: Final = re.compile(r"^[A-Za-z0-9_:\-]{20,4096}$")


class DeviceInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    platform: Literal["ios", "android"]
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class Device(msgspec.Struct, frozen=True):
    platform: str
    token: str
    created_at: datetime
    last_seen_at: datetime


def _check(device: DeviceInput) -> str:
    token = device.token.strip()
    if device.platform == "ios" and not _APNS_TOKEN.match(token):
        raise InvalidInput("an iOS device token is the APNs token in hex (64 or more hex digits)", field="token")
    if device.platform == "android" and not _FCM_TOKEN.match(token):
        raise InvalidInput(
            "an Android token is the FCM registration token (letters, digits, '_', ':', '-')", field="token"
        )
    return token


async def register_device(
    conn: Connection, customer_id: UUID, device: DeviceInput, now: datetime
) -> tuple[Device, bool]:
    """Add or refresh a device; returns it and whether it is new to this customer."""
    token = _check(device)
    row = await conn.fetchrow(
        """
        WITH before AS (SELECT customer_id FROM devices WHERE token = $1)
        INSERT INTO devices (token, customer_id, platform, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $4)
        ON CONFLICT (token) DO UPDATE
           SET customer_id = EXCLUDED.customer_id, platform = EXCLUDED.platform, last_seen_at = EXCLUDED.last_seen_at,
               created_at = CASE WHEN devices.customer_id = EXCLUDED.customer_id THEN devices.created_at
                                 ELSE EXCLUDED.created_at END
        RETURNING platform, token, created_at, last_seen_at,
                  coalesce((SELECT customer_id FROM before), '00000000-0000-0000-0000-000000000000') <> $2 AS new
        """,
        token,
        customer_id,
        device.platform,
        now,
    )
    assert row is not None
    await conn.execute(
        """
        DELETE FROM devices WHERE customer_id = $1 AND token NOT IN (
            SELECT token FROM devices WHERE customer_id = $1 ORDER BY last_seen_at DESC, created_at DESC LIMIT $2)
        """,
        customer_id,
        MAX_DEVICES,
    )
    return msgspec.convert({k: row[k] for k in ("platform", "token", "created_at", "last_seen_at")}, Device), row["new"]


async def forget_device(conn: Connection, customer_id: UUID, token: str) -> None:
    status = await conn.execute("DELETE FROM devices WHERE customer_id = $1 AND token = $2", customer_id, token.strip())
    if status.endswith(" 0"):
        raise NotFound("this device is not registered for your account", field="token")
