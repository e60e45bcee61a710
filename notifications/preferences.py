"""A shopper's choices: channels in order of preference, marketing consent, quiet hours; and the
opt-out link every marketing message carries.

The opt-out link needs no stored state: its token is the customer id with a truncated HMAC under the
service's secret key, so it cannot be forged or enumerated, and it keeps working for as long as the
secret does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime
from typing import Annotated, Final, Literal
from uuid import UUID

import msgspec

from kartka.crypto import derive_key, verification_keys
from kartka.db import Connection
from kartka.errors import InvalidInput
from wallet.program import Program

ChannelChoice = Literal["app", "viber", "sms"]
HHMM = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
_MAC_BYTES: Final = 10
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{35}$")


class QuietHours(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    start: HHMM
    end: HHMM


class Preferences(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    channels: tuple[ChannelChoice, ...]
    marketing: bool
    quiet_hours: QuietHours

    def __post_init__(self) -> None:
        if not self.channels or len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must list app, viber or sms at most once each, and at least one")


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


async def get_preferences(conn: Connection, customer_id: UUID, program: Program) -> Preferences:
    row = await conn.fetchrow(
        "SELECT channels, marketing, quiet_start, quiet_end FROM notification_preferences WHERE customer_id = $1",
        customer_id,
    )
    start, end = program.quiet_minutes
    if row is None:
        return Preferences(
            channels=program.notify_channels, marketing=False, quiet_hours=QuietHours(_hhmm(start), _hhmm(end))
        )
    if row["quiet_start"] is not None:
        start, end = row["quiet_start"], row["quiet_end"]
    return Preferences(
        channels=tuple(row["channels"]), marketing=row["marketing"], quiet_hours=QuietHours(_hhmm(start), _hhmm(end))
    )


async def set_preferences(conn: Connection, customer_id: UUID, prefs: Preferences, now: datetime) -> Preferences:
    await conn.execute(
        """
        INSERT INTO notification_preferences (customer_id, channels, marketing, quiet_start, quiet_end, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (customer_id) DO UPDATE
           SET channels = EXCLUDED.channels, marketing = EXCLUDED.marketing, quiet_start = EXCLUDED.quiet_start,
               quiet_end = EXCLUDED.quiet_end, updated_at = EXCLUDED.updated_at
        """,
        customer_id,
        list(prefs.channels),
        prefs.marketing,
        _minutes(prefs.quiet_hours.start),
        _minutes(prefs.quiet_hours.end),
        now,
    )
    return prefs


async def set_marketing(conn: Connection, customer_id: UUID, consent: bool, program: Program, now: datetime) -> None:
    """Record marketing consent (or its withdrawal) without touching the other choices."""
    await conn.execute(
        """
        INSERT INTO notification_preferences (customer_id, channels, marketing, updated_at) VALUES ($1, $2, $3, $4)
        ON CONFLICT (customer_id) DO UPDATE SET marketing = EXCLUDED.marketing, updated_at = EXCLUDED.updated_at
        """,
        customer_id,
        list(program.notify_channels),
        consent,
        now,
    )


class OptOutLinks:
    """``{public URL}/u/{token}``: the unsubscribe link in marketing messages."""

    def __init__(self, *, secret: str, public_base: str) -> None:
        self._key: bytes = derive_key(secret, "opt-out")
        self.public_base = public_base.rstrip("/")

    def token(self, customer_id: UUID) -> str:
        mac = hmac.new(self._key, customer_id.bytes, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(customer_id.bytes + mac).decode().rstrip("=")

    def url(self, customer_id: UUID) -> str:
        return f"{self.public_base}/u/{self.token(customer_id)}"

    def customer(self, token: str) -> UUID:
        """The customer a token names; raises InvalidInput for anything forged or mangled."""
        if not _TOKEN.match(token):
            raise InvalidInput("this unsubscribe link is not valid", field="token")
        raw = base64.urlsafe_b64decode(token + "=")
        customer_id, mac = UUID(bytes=raw[:16]), raw[16:]
        # Links sent before an upgrade of the key derivation (kartka.crypto) keep working.
        if not any(
            hmac.compare_digest(mac, hmac.new(key, customer_id.bytes, hashlib.sha256).digest()[:_MAC_BYTES])
            for key in verification_keys(self._key)
        ):
            raise InvalidInput("this unsubscribe link is not valid", field="token")
        return customer_id
