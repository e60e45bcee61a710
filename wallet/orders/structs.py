"""What the till sends and gets back: the order service's inputs, outputs and errors."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Final, Literal
from uuid import UUID

import msgspec

from kartka.bounds import Instant, check_instant
from kartka.errors import Conflict, NotFound
from kartka.keys import CODE_PATTERN
from wallet.models import BalanceView, TierView
from wallet.pricing import CartLine, EngineInfo, Message, Sku

Channel = Literal["pos", "online"]

#: How far ahead of our clock a till's clock may run before its purchase time counts as "future".
CLOCK_SKEW: Final = timedelta(minutes=5)

Points = Annotated[int, msgspec.Meta(ge=0, le=10_000_000_000)]
Lines = Annotated[tuple[CartLine, ...], msgspec.Meta(min_length=1, max_length=500)]
ExternalId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:/-]+$")]
CardCode = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=512, description="Anything identify accepts: card number, scanned QR, phone"),
]
StoreCode = Annotated[str, msgspec.Meta(pattern=CODE_PATTERN, description="A store's code, as on its till keys")]


class OrderConflict(Conflict):
    code = "order-conflict"


class IdempotencyConflict(Conflict):
    code = "idempotency-key-reused"


class OrderNotFound(NotFound):
    code = "order-not-found"


class ReturnTooLarge(Conflict):
    code = "return-exceeds-sale"


# -- inputs -------------------------------------------------------------------------------------


class CalculateInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    card: CardCode
    lines: Lines
    redeem_points: Points = 0


class CommitInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    order_id: ExternalId
    card: CardCode
    lines: Lines
    redeem_points: Points = 0
    purchased_at: Instant | None = None
    """When the purchase happened (RFC 3339 with offset); an offline till sends it later. Default: now."""

    def __post_init__(self) -> None:
        check_instant(self.purchased_at, "purchased_at")


class ReturnLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Sku
    qty: Annotated[int, msgspec.Meta(ge=1, le=10_000)]


class RefundInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    refund_id: ExternalId
    lines: Annotated[tuple[ReturnLine, ...], msgspec.Meta(min_length=1, max_length=500)]
    order_store: StoreCode | None = None
    """The store the order was sold in, when it is not the refunding till's own (a return in another store)."""
    order_channel: Channel | None = None
    """``online`` for an order of the online shop returned at a till; default: the refunding channel."""


class OrderScope(msgspec.Struct, frozen=True):
    """Where an order id means something: order ids are unique within a channel and store only."""

    channel: Channel
    store: str | None

    @property
    def key(self) -> str:
        """The store as the unique indexes see it ('' for none)."""
        return self.store or ""

    def describe(self) -> str:
        return "online" if self.channel == "online" else f"at store {self.store or '(none)'}"


# -- outputs ------------------------------------------------------------------------------------


class QuoteLine(msgspec.Struct, frozen=True):
    sku: str
    name: str | None
    category: str | None
    qty: int
    unit_price: int
    total: int
    discount: int
    redeem_points: int
    to_pay: int
    accrue_points: int
    on_sale: bool
    promotion: str | None


class Quote(msgspec.Struct, frozen=True):
    subtotal: int
    discount: int
    max_redeem_points: int
    redeem_points: int
    accrue_points: int
    to_pay: int
    lines: list[QuoteLine]
    messages: list[Message]
    receipt_lines: list[str]
    engine: EngineInfo


class OrderResult(msgspec.Struct, frozen=True):
    order_id: str
    customer_id: UUID
    card: str
    subtotal: int
    discount: int
    to_pay: int
    accrued_points: int
    redeemed_points: int
    available_at: datetime
    expires_at: datetime
    purchased_at: datetime
    balance: BalanceView
    tier: TierView
    tier_upgraded: bool
    receipt_lines: list[str]
    engine: EngineInfo


class RefundResult(msgspec.Struct, frozen=True):
    refund_id: str
    order_id: str
    amount: int
    """Money to give back (minor units)."""
    points_taken_back: int
    points_returned: int
    balance: BalanceView
    receipt_lines: list[str]


class Stored(msgspec.Struct, frozen=True):
    """A committed answer, as stored; ``replayed`` tells a retry from the first call."""

    body: bytes
    replayed: bool


class ReturnShare(msgspec.Struct, frozen=True):
    """One order line's part in a refund: how much of it comes back, and what that part earned and spent."""

    line_no: int
    qty: int
    amount: int
    """Money to give back for this part (minor units)."""
    taken_back: int
    """Points this part earned, to take back (hundredths)."""
    returned: int
    """Points spent on this part, to give back (hundredths)."""
