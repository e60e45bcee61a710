"""The pure core's inputs and outputs (``engine.promotions.evaluate``): plain, frozen msgspec structs.

They live apart from the core so that the core can be compiled (mypyc, ``engine.promotions.native``)
while these stay ordinary Python classes: hashable, comparable and encoded by msgspec as everywhere
else, whichever build of the core made them.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from wallet.pricing import LinePricing, applied_totals

Reason = str
"""Why a promotion did not apply: ``audience``, ``where``, ``when``, ``condition`` or ``limit``."""


class Facts(msgspec.Struct, frozen=True):
    """What the core knows of the shopper and the moment."""

    at: datetime
    tier: str
    rate_bp: int
    """The tier's accrual rate."""
    customer_id: str | None = None
    store: str | None = None
    channel: str = "pos"
    offers: frozenset[str] = frozenset()
    """Promotions this customer holds a personal offer of (still valid at ``at``)."""
    segments: frozenset[str] = frozenset()
    """The customer's segments (empty until analytics provides them)."""
    language: str = "ru"
    currency: str = "BYN"


class Used(msgspec.Struct, frozen=True):
    """What a promotion's limits have counted so far: ``customer`` is this customer's orders in the
    promotion's ``per_customer`` window, the rest are its budget's totals."""

    customer: int = 0
    orders: int = 0
    discount: int = 0
    points: int = 0


NOTHING_USED = Used()


PricedLine = LinePricing
"""A line's discount, the first promotion that took money off it, what each promotion gave on it, and
whether points may pay for it (not on sale, no ``no_redeem`` promotion on it): the port's own shape."""


class Award(msgspec.Struct, frozen=True):
    """Points a promotion gives for the order (with their own expiry when ``expires_in_days``)."""

    id: str
    revision: int
    points: int
    expires_in_days: int | None = None


class Note(msgspec.Struct, frozen=True):
    code: str
    text: str


class NotApplied(msgspec.Struct, frozen=True):
    id: str
    reason: Reason


class Outcome(msgspec.Struct, frozen=True):
    lines: tuple[PricedLine, ...]
    redeem_base: int
    """Money left on lines points may pay for (not on sale, no ``no_redeem``): the cap's base."""
    max_redeem: int
    redeem: int
    accrue: int
    """The tier's accrual on money actually paid."""
    awards: tuple[Award, ...]
    """Points benefits, beyond ``accrue``."""
    messages: tuple[Note, ...]
    not_applied: tuple[NotApplied, ...]
    """The candidates that did not apply and why; empty when evaluated with ``explain=False``."""

    @property
    def discount(self) -> int:
        return sum(line.discount for line in self.lines)

    @property
    def bonus_points(self) -> int:
        return sum(award.points for award in self.awards)

    def applied(self) -> dict[str, tuple[int, int, int]]:
        """Promotion id → (revision, discount, points) over the whole cart: what its limits count."""
        return applied_totals(self.lines)
