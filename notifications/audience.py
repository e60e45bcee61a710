"""Who a shopper is to the notifier: where a message can reach them and how they want it.

One query gathers a customer's phone, language, preferences, home store's time zone and app devices;
:func:`route` turns that into the outbox rows for one message, walking the shopper's channels in their
order of preference and taking the first that can reach them. Transactional messages always go out
(falling back to SMS when no preferred channel can carry them); marketing needs consent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final
from uuid import UUID

import msgspec

from kartka.db import Connection
from notifications.model import Category, Channel
from notifications.outbox import Message, Quiet
from wallet.program import Program

AUDIENCE_SQL: Final = """
    SELECT cu.phone, cu.language, p.channels, coalesce(p.marketing, false) AS marketing,
           p.quiet_start, p.quiet_end, s.timezone,
           coalesce((SELECT array_agg(d.platform || ':' || d.token ORDER BY d.last_seen_at DESC)
                       FROM devices d WHERE d.customer_id = cu.id), '{}') AS devices
      FROM customers cu
      LEFT JOIN notification_preferences p ON p.customer_id = cu.id
      LEFT JOIN stores s ON s.code = cu.home_store
     WHERE cu.id = $1 AND cu.merged_into IS NULL
"""


class Device(msgspec.Struct, frozen=True):
    platform: str  # ios | android
    token: str


class Audience(msgspec.Struct, frozen=True, kw_only=True):
    customer_id: UUID
    phone: str | None
    locale: str
    channels: tuple[str, ...]
    marketing: bool
    quiet: Quiet
    devices: tuple[Device, ...]


class Availability(msgspec.Struct, frozen=True, kw_only=True):
    """Which channels this deployment can send on (from settings)."""

    viber: bool
    apns: bool
    fcm: bool


ALL_CHANNELS: Final = Availability(viber=True, apns=True, fcm=True)


async def load_audience(conn: Connection, customer_id: UUID, program: Program) -> Audience | None:
    row = await conn.fetchrow(AUDIENCE_SQL, customer_id)
    if row is None:
        return None
    start, end = program.quiet_minutes
    devices = tuple(Device(*entry.split(":", 1)) for entry in row["devices"])
    return Audience(
        customer_id=customer_id,
        phone=row["phone"],
        locale=row["language"] or program.language,
        channels=tuple(row["channels"] or program.notify_channels),
        marketing=row["marketing"],
        quiet=Quiet(
            tz=row["timezone"] or program.timezone,
            start=row["quiet_start"] if row["quiet_start"] is not None else start,
            end=row["quiet_end"] if row["quiet_end"] is not None else end,
        ),
        devices=devices,
    )


def route(
    audience: Audience,
    available: Availability,
    *,
    key: str,
    category: Category,
    template: str,
    params: dict[str, object],
    due_at: datetime | None = None,
    channels: Sequence[str] | None = None,
) -> list[Message]:
    """The outbox rows that carry one message to this shopper (none if nothing may or can reach them)."""
    if category is Category.MARKETING and not audience.marketing:
        return []
    quiet = audience.quiet if category is Category.MARKETING else None

    def message(channel: Channel, recipient: str, suffix: str = "") -> Message:
        return Message(
            key=f"{key}:{channel.value}{suffix}",
            channel=channel,
            recipient=recipient,
            category=category,
            template=template,
            locale=audience.locale,
            params=dict(params),
            customer_id=audience.customer_id,
            due_at=due_at,
            quiet=quiet,
        )

    for choice in channels if channels is not None else audience.channels:
        if choice == "app":
            pushes = [
                message(Channel.APNS if d.platform == "ios" else Channel.FCM, d.token, f":{d.token[-12:]}")
                for d in audience.devices
                if (available.apns if d.platform == "ios" else available.fcm)
            ]
            if pushes:
                return pushes
        elif choice == "viber" and available.viber and audience.phone:
            return [message(Channel.VIBER, audience.phone)]
        elif choice == "sms" and audience.phone:
            return [message(Channel.SMS, audience.phone)]
    if category is Category.TRANSACTIONAL and audience.phone:
        return [message(Channel.SMS, audience.phone)]
    return []
