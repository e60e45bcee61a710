"""The engine port: what Kartka asks a core engine and what it expects back.

The engine prices a cart for a customer: per-line discounts (promotions), how many points the cart
may and will redeem, how many it earns, and messages for the shopper. It is told about committed
orders and refunds. Kartka itself keeps the ledger: it checks the engine's answer, spreads points
over lines and never lets a cart spend more than the customer has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID

import msgspec

from kartka.db import Connection
from kartka.sql import Part
from wallet.profile import has_control_characters

Sku = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
UnitPrice = Annotated[int, msgspec.Meta(ge=0, le=100_000_000)]
Category = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class CartLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Sku
    qty: Quantity
    unit_price: UnitPrice
    """Minor units per item."""
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    category: Category | None = None
    on_sale: bool = False
    """Items on sale earn nothing and cannot be paid with points."""
    brand: Category | None = None

    def __post_init__(self) -> None:
        for text in (self.sku, self.name, self.category, self.brand):
            if text is not None and has_control_characters(text):
                raise ValueError("sku, name, category and brand may not contain control characters")

    @property
    def total(self) -> int:
        return self.qty * self.unit_price


class TierInfo(msgspec.Struct, frozen=True):
    code: str
    name: str
    rate_bp: int


class NextTierInfo(msgspec.Struct, frozen=True):
    code: str
    name: str
    threshold: int


SaleChannel = Literal["pos", "online", "app"]
"""Where a cart is priced: the till, the online shop, the app (the promotions' ``where.channels``)."""


class PricingRequest(msgspec.Struct, frozen=True):
    lines: tuple[CartLine, ...]
    tier: TierInfo
    next_tier: NextTierInfo | None
    spend_365d: int
    available_points: int
    requested_points: int
    at: datetime
    language: str
    currency: str
    customer_id: str | None = None
    store: str | None = None
    terminal: str | None = None
    channel: SaleChannel = "pos"
    offers: tuple[str, ...] = ()
    """Promotions the customer holds a personal offer of, when the caller knows them."""
    segments: tuple[str, ...] = ()
    """The customer's segments (:class:`SegmentSource`)."""


class AppliedPromotion(msgspec.Struct, frozen=True):
    """What one promotion revision gave on a line: money off and points."""

    id: str
    revision: int
    discount: int
    points: int


class LinePricing(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    discount: Annotated[int, msgspec.Meta(ge=0)]
    promotion: str | None = None
    """The first promotion applied (what a remote engine reports)."""
    promotions: tuple[AppliedPromotion, ...] = ()
    """Every promotion applied, with its share of the line's discount and points."""
    redeemable: bool = True
    """Points may pay for the line: the embedded engine says no for a ``no_redeem`` promotion's lines
    (lines on sale never are), so the points a cart spends are spread only where they may pay."""


def applied_totals(lines: Sequence[LinePricing]) -> dict[str, tuple[int, int, int]]:
    """Promotion id → (revision, discount, points) over a priced cart's lines, in the order the promotions
    first appear: what a promotion's limits count and its use records."""
    totals: dict[str, tuple[int, int, int]] = {}
    for line in lines:
        for a in line.promotions:
            _, d, p = totals.get(a.id, (a.revision, 0, 0))
            totals[a.id] = (a.revision, d + a.discount, p + a.points)
    return totals


class Message(msgspec.Struct, frozen=True):
    code: str
    text: str


class EngineInfo(msgspec.Struct, frozen=True):
    name: str
    degraded: bool


class BonusPoints(msgspec.Struct, frozen=True):
    """Points a promotion gives that expire on their own schedule (``expires_in_days``), beyond
    ``accrue_points``; they become available after the program's pending period."""

    promotion: str
    revision: int
    points: int
    expires_in_days: int


class Pricing(msgspec.Struct, frozen=True):
    lines: tuple[LinePricing, ...]
    max_redeem_points: int
    redeem_points: int
    accrue_points: int
    """The tier's accrual and promotions' points that expire with the program's expiry."""
    messages: tuple[Message, ...]
    engine: EngineInfo
    bonus_points: tuple[BonusPoints, ...] = ()
    promotion_titles: dict[str, str] = {}
    """Titles of the promotions applied, in the shopper's language, for receipts."""


class CommittedOrder(msgspec.Struct, frozen=True):
    order_id: str
    customer_id: str
    card: str
    lines: tuple[CartLine, ...]
    discount: int
    redeemed_points: int
    accrued_points: int
    paid: int
    purchased_at: datetime
    store: str | None = None
    terminal: str | None = None
    channel: Literal["pos", "online"] = "pos"
    """With ``store``, where ``order_id`` means this order: order ids are unique per channel and store."""


class ReturnedLine(msgspec.Struct, frozen=True):
    sku: str
    qty: int


class CommittedRefund(msgspec.Struct, frozen=True):
    order_id: str
    refund_id: str
    lines: tuple[ReturnedLine, ...]
    points_taken_back: int
    points_returned: int
    amount: int
    store: str | None = None
    """The store and channel of the order refunded (the refund may be made in another store)."""
    channel: Literal["pos", "online"] = "pos"
    refund_store: str | None = None
    refund_channel: Literal["pos", "online"] = "pos"
    """Where the refund was made: refund ids are unique within the refund's own channel and store."""


class EngineNotice(msgspec.Struct, frozen=True):
    """What a remote engine is to be told of a committed order or refund. Written to the outbox in the
    transaction of the change and sent after it commits, again and again until the engine acknowledges;
    ``key`` (its Idempotency-Key) is unique in Kartka, so the engine takes each notice once."""

    key: str
    path: str
    body: dict[str, Any]
    order_pk: int | None = None
    """The order it tells of (``orders.engine_notified`` is set once it is acknowledged)."""
    after_order: int | None = None
    """A refund's order: the engine hears of a refund only once the order's notice is no longer on its
    way (the worker sends notices in parallel; an engine must not meet a refund of an unknown order)."""


class NoticeRejected(Exception):
    """The engine refused a notice (a 4xx other than 408/425/429): sending it again will not help."""


class EngineUnreachable(Exception):
    """The engine could not take a notice now (down, slow, overloaded): send it again later."""


class ReturnedPart(msgspec.Struct, frozen=True):
    """A refund's part of one order line: ``before`` and ``after`` units returned, of ``qty`` sold, and
    the promotions the line was sold with."""

    line_no: int
    before: int
    after: int
    qty: int
    promotions: tuple[AppliedPromotion, ...] = ()


class ReturnedPromotion(msgspec.Struct, frozen=True):
    """A promotion's share of a refund: the discount its returned units carried (given back with them)
    and the points it gave on them (taken back with the rest of their points)."""

    id: str
    title: str
    """In the language asked for: the revision that applied names it, else the catalog in force."""
    discount: int
    points: int


class BookReading(Protocol):
    """What a commit's cart needs counted before it is priced: the limited promotions it meets (their
    budget rows locked, in id order, and read; this customer's uses in each window) and the customer's
    personal offers, as a part of the commit's snapshot statement, so that a commit with promotions
    makes as many round trips as one without."""

    part: Part | None
    """A scalar subquery for the snapshot to carry (``None``: nothing to read)."""

    async def price(self, conn: Connection, request: PricingRequest, read: Any) -> Pricing:
        """Price for the commit with ``read``, the value the snapshot returned for :attr:`part`: the
        truth, even when 20 tills commit against the last use of a budget at once."""
        ...

    def recording(self, *, customer_id: UUID, at: datetime, totals: Mapping[str, tuple[int, int, int]]) -> Part | None:
        """What the pricing gave, its :func:`applied_totals` (the order's use of each promotion, and the
        budgets this reading locked), as common table expressions for the order's own insert to carry:
        they name the new order ``o`` (its key ``o.id``)."""
        ...


class PromotionBook(Protocol):
    """Where the engine counts its promotions' limits and records what applied to which line, in the
    commit's and refund's own transactions (the embedded engine's tables; wallet never reads them)."""

    def reading(self, lines: Sequence[CartLine], *, customer_id: UUID, at: datetime) -> BookReading:
        """What a commit of ``lines`` must lock and read before it is priced, at ``at``."""
        ...

    async def quote(self, conn: Connection, request: PricingRequest) -> Pricing:
        """Price for a calculate, on the caller's connection (no second one from the pool): limits read
        as they stand, without locks; the commit counts again under its locks."""
        ...

    async def refunded(
        self, conn: Connection, *, order_pk: int, parts: Sequence[ReturnedPart], full: bool, language: str
    ) -> tuple[ReturnedPromotion, ...]:
        """Give back each promotion's share of the returned parts; ``full``: the order's uses too. Returns
        the promotions whose share was not nothing, titled in ``language``, for the refund's receipt."""
        ...


class SegmentSource(Protocol):
    """The segments a customer is in, for promotions aimed at segments; wired by the composition
    root (analytics computes them). :data:`NO_SEGMENTS` until then. Read on the caller's connection:
    a commit asks inside its transaction, and a second connection from the same pool there could wait
    for ever once every connection is held by a commit doing the same."""

    async def segments(self, conn: Connection, customer_id: str) -> frozenset[str]: ...

    async def members(self, conn: Connection, customer_ids: Sequence[str]) -> Mapping[str, frozenset[str]]:
        """The segments of many customers at once (a backtest's orders); a customer in none may be left out."""
        ...


class _NoSegments:
    async def segments(self, conn: Connection, customer_id: str) -> frozenset[str]:
        return frozenset()

    async def members(self, conn: Connection, customer_ids: Sequence[str]) -> Mapping[str, frozenset[str]]:
        return {}


NO_SEGMENTS: SegmentSource = _NoSegments()


class Engine(Protocol):
    name: str
    remote: bool
    """A remote engine is told of orders and refunds (through the outbox); the embedded one reads them."""

    async def calculate(self, request: PricingRequest) -> Pricing: ...

    async def close(self) -> None: ...


class NoticeTaker(Protocol):
    """A remote engine that takes notices: ``notify`` returns once it acknowledged, or raises
    :class:`NoticeRejected` or :class:`EngineUnreachable`. ``name`` is what ``orders.engine`` records
    of the orders it priced."""

    name: str

    async def notify(self, notice: EngineNotice) -> None: ...

    async def close(self) -> None: ...
