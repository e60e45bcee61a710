"""The vocabulary of notifications: channels, categories, statuses, and the provider port.

A provider adapter turns :class:`Outbound` messages into calls of one real provider API and answers,
per message, one :class:`SendResult`. Failures of the whole call (the provider is down, times out, is
rate limiting us, refuses our credentials) are raised as :class:`ProviderUnavailable`, which the worker
retries with backoff and counts against that provider's circuit breaker.
"""

from __future__ import annotations

import email.utils
import enum
import time
from collections.abc import Sequence
from datetime import UTC
from typing import Protocol

import msgspec


class Channel(enum.StrEnum):
    SMS = "sms"
    VIBER = "viber"
    APNS = "apns"  # app push to iOS
    FCM = "fcm"  # app push to Android
    PASSKIT = "passkit"  # "this Wallet pass changed": an empty APNs push, the pass type as topic
    GWALLET = "gwallet"  # Google Wallet: a PATCH of the card's loyalty object
    ENGINE = "engine"  # the remote core engine: a committed order or refund (docs/engine-contract.md)


#: Channels that update a card in a phone's wallet rather than tell the shopper something.
PASS_CHANNELS = frozenset({Channel.PASSKIT, Channel.GWALLET})


class Category(enum.StrEnum):
    TRANSACTIONAL = "transactional"  # always on: card link, OTP, points earned, tier, expiry
    MARKETING = "marketing"  # opt-in, quiet hours apply


class Status(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"  # the provider accepted it
    DELIVERED = "delivered"  # the provider's receipt says the handset has it
    FAILED = "failed"  # permanently: bad number, unregistered device, undeliverable
    DEAD = "dead"  # gave up after the configured number of attempts
    CANCELLED = "cancelled"  # no longer wanted (opt-out before sending, fallback made redundant)


class Outbound(msgspec.Struct, frozen=True, kw_only=True):
    """One message, rendered, on its way to one recipient."""

    id: int  # outbox row id
    key: str  # idempotency key; providers that accept a client message id get this one
    channel: Channel
    recipient: str  # E.164 phone for SMS/Viber, device token for push
    text: str
    title: str | None = None
    data: dict[str, str] = {}
    #: Viber: drop the message at the provider if it is not delivered within this many seconds, so a
    #: fallback SMS sent after that time is the only message the shopper gets.
    validity_seconds: int | None = None
    #: The engine channel: the notice (``wallet.pricing.EngineNotice``) as JSON; nothing is rendered.
    payload: bytes = b""


class Outcome(enum.StrEnum):
    SENT = "sent"  # accepted by the provider
    DELIVERED = "delivered"  # the provider knows at once that it arrived (the development inbox)
    RETRY = "retry"  # this message failed transiently; try again later
    FAILED = "failed"  # this message can never be sent as is
    UNREGISTERED = "unregistered"  # the device token is gone: forget it


class SendResult(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    outcome: Outcome
    provider_message_id: str | None = None
    error: str | None = None
    retry_after: float | None = None  # seconds, when the provider said so


class ProviderUnavailable(Exception):
    """The whole call failed: timeout, connection refused, 5xx, 429, bad credentials.

    ``retry_after`` carries the provider's Retry-After (seconds) when it sent one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header (seconds, or an HTTP date) as seconds from now; None if absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


class Provider(Protocol):
    """An adapter over one provider's API for one or more channels."""

    name: str
    channels: frozenset[Channel]
    max_batch: int  # how many messages one ``send`` may carry

    async def send(self, messages: Sequence[Outbound]) -> list[SendResult]:
        """Send up to ``max_batch`` messages; one result per message, in any order."""
        ...

    async def aclose(self) -> None: ...


class ReceiptStatus(enum.StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"  # undeliverable (for Viber: triggers the SMS fallback)
    EXPIRED = "expired"  # validity period passed undelivered (Viber: fallback)
    PENDING = "pending"  # still on its way; no change


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery report a provider posted back, already authenticated and parsed."""

    provider: str
    provider_message_id: str
    status: ReceiptStatus
    error: str | None = None
