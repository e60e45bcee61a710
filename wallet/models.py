"""Read models the wallet returns; the API serialises them as they are."""

from __future__ import annotations

import enum
from datetime import datetime
from uuid import UUID

import msgspec


class Source(enum.StrEnum):
    """Where a registration came from."""

    POS = "pos"
    QR_POSTER = "qr_poster"
    APP = "app"
    WEBSITE = "website"
    ONLINE_ORDER = "online_order"
    CRM_IMPORT = "crm_import"
    MANUAL = "manual"


class CardStatus(enum.StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    REPLACED = "replaced"
    CLOSED = "closed"  # the shopper closed the account


class Outcome(enum.StrEnum):
    CREATED = "created"
    EXISTING = "existing"
    ATTACHED = "attached"
    MERGED = "merged"


class Customer(msgspec.Struct, frozen=True):
    id: UUID
    phone: str | None
    name: str | None


class Card(msgspec.Struct, frozen=True):
    number: str
    status: CardStatus


class Registration(msgspec.Struct, frozen=True):
    customer: Customer
    card: Card
    created: bool


class Attachment(msgspec.Struct, frozen=True):
    """A no-name card given a phone: ``attached`` to a new customer, or ``merged`` into the card the
    phone already had (the no-name card is then ``replaced`` and scans resolve to the kept card)."""

    customer: Customer
    card: Card
    created: bool
    outcome: Outcome
    replaced_card: Card | None = None


class Replacement(msgspec.Struct, frozen=True):
    """A lost or leaked card replaced: ``card`` is the new one; ``replaced_card`` is blocked for good."""

    customer: Customer
    card: Card
    replaced_card: Card


class NextTier(msgspec.Struct, frozen=True):
    code: str
    name: str
    threshold: int


class TierView(msgspec.Struct, frozen=True):
    code: str
    name: str
    rate: int
    """Accrual rate in basis points (500 = 5%)."""
    spend_365d: int
    next: NextTier | None
    to_next: int | None


class Expiring(msgspec.Struct, frozen=True):
    points: int
    at: datetime | None


class BalanceView(msgspec.Struct, frozen=True):
    available: int
    pending: int
    next_available_at: datetime | None
    expiring_soon: Expiring


class Identification(msgspec.Struct, frozen=True):
    customer: Customer
    card: Card
    tier: TierView
    balance: BalanceView
