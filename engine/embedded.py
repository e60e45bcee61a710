"""The embedded rules engine: the program's rules and its promotions, computed in-process.

Promotions never stack: an item discounted by one promotion is out of reach of the next, and items on
sale take no promotion at all (seed 003: the price is already the lowest the store accepts).
"""

from __future__ import annotations

from dataclasses import dataclass

from kartka.texts import format_points, text
from wallet.money import allocate, share_floor, share_round
from wallet.pricing import (
    EngineInfo,
    LinePricing,
    Message,
    Pricing,
    PricingRequest,
)
from wallet.program import BundlePercent, NForM, Program, Promotion


@dataclass(slots=True)
class _Cart:
    """Discounts being worked out for one cart."""

    discounts: list[int]
    applied: list[str | None]
    taken: set[tuple[int, int]]  # (line, unit index) already in a promotion

    def share(self, discount: int, units: tuple[tuple[int, int, int], ...], promotion_id: str) -> None:
        """A promotion's discount spread over every item that earned it, in proportion to price, so that
        returning any one of them later gives back its share of the deal and no more."""
        for (line, unit, _), part in zip(units, allocate(discount, [price for _, _, price in units]), strict=True):
            self.discounts[line] += part
            self.applied[line] = promotion_id
            self.taken.add((line, unit))


class EmbeddedEngine:
    """Prices carts with ``program``. ``degraded=True`` is the fallback of a remote engine that is down:
    base-tier accrual and no promotions, flagged in the answer."""

    remote = False

    def __init__(self, program: Program, *, name: str = "embedded", degraded: bool = False) -> None:
        self.program = program
        self.name = name
        self.degraded = degraded

    async def calculate(self, request: PricingRequest) -> Pricing:
        return self.price(request)

    def price(self, request: PricingRequest) -> Pricing:
        lines = request.lines
        cart = _Cart(discounts=[0] * len(lines), applied=[None] * len(lines), taken=set())
        messages: list[Message] = []
        if not self.degraded:
            for promotion in self.program.promotions:
                if promotion.runs(request.store, request.at):
                    self._apply(promotion, request, cart, messages)
        discounts, applied = cart.discounts, cart.applied

        eligible_after_discount = sum(line.total - discounts[i] for i, line in enumerate(lines) if not line.on_sale)
        cap = share_floor(eligible_after_discount, self.program.redeem_cap_bp)
        max_redeem = max(0, min(request.available_points, cap))
        redeem = max(0, min(request.requested_points, max_redeem))
        rate = self.program.base_tier.rate_bp if self.degraded else request.tier.rate_bp
        accrue = share_floor(eligible_after_discount - redeem, rate)

        to_pay = sum(line.total for line in lines) - sum(discounts) - redeem
        nudge = self._tier_nudge(request, to_pay)
        if nudge is not None:
            messages.append(nudge)
        return Pricing(
            lines=tuple(LinePricing(discount=d, promotion=p) for d, p in zip(discounts, applied, strict=True)),
            max_redeem_points=max_redeem,
            redeem_points=redeem,
            accrue_points=accrue,
            messages=tuple(messages),
            engine=EngineInfo(name=self.name, degraded=self.degraded),
        )

    def _apply(self, promotion: Promotion, request: PricingRequest, cart: _Cart, messages: list[Message]) -> None:
        def units(category: str) -> list[tuple[int, int, int]]:
            """(line, unit index, price) of items in ``category`` a promotion may still touch."""
            return [
                (i, u, line.unit_price)
                for i, line in enumerate(request.lines)
                if line.category == category and not line.on_sale
                for u in range(line.qty)
                if (i, u) not in cart.taken
            ]

        language = request.language
        title = promotion.title(language)
        if isinstance(promotion, BundlePercent):
            # Pairs of one trigger and one target item, dearest first; items on sale take no part.
            targets = sorted(units(promotion.target_category), key=lambda t: -t[2])
            triggers = sorted(units(promotion.trigger_category), key=lambda t: -t[2])
            for target, trigger in zip(targets, triggers, strict=False):
                cart.share(share_round(target[2], promotion.percent_bp), (trigger, target), promotion.id)
            if len(targets) > len(triggers):
                messages.append(_message(promotion.id, language, title, "bundle"))
        elif isinstance(promotion, NForM):
            eligible = sorted(units(promotion.category), key=lambda t: -t[2])
            for start in range(0, len(eligible) - promotion.n + 1, promotion.n):
                group = eligible[start : start + promotion.n]
                free = sum(price for _, _, price in group[promotion.m :])
                cart.share(free, tuple(group), promotion.id)
            if len(eligible) % promotion.n == promotion.n - 1:
                messages.append(_message(promotion.id, language, title, "n_for_m"))

    def _tier_nudge(self, request: PricingRequest, to_pay: int) -> Message | None:
        nxt = request.next_tier
        within = self.program.tier_nudge_within
        if nxt is None or within == 0 or self.degraded:
            return None
        missing = nxt.threshold - (request.spend_365d + to_pay)
        if not 0 < missing <= within:
            return None
        message = text(
            request.language,
            "engine.tier_nudge",
            amount=format_points(missing, request.language),
            currency=request.currency,
            tier=nxt.name,
        )
        return Message(code=f"tier-nudge:{nxt.code}", text=message)

    async def close(self) -> None:
        return None


def _message(promotion_id: str, language: str, title: str, kind: str) -> Message:
    """``kind`` is ``n_for_m`` or ``bundle``: the catalog's ``engine.<kind>``."""
    return Message(code=f"promotion:{promotion_id}", text=text(language, f"engine.{kind}", title=title))
