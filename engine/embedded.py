"""The embedded rules engine: the program's rules and the promotions in force, computed in-process.

Pricing itself is the pure core (``engine.promotions.evaluate``); this adapter turns the port's
request into customer facts, reads the catalog in force from a holder that live reload swaps whole,
asks the promotion store what a customer's personal offers and limits are only when a cart meets a
promotion that needs them, and turns the outcome into the port's answer.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.promotions.evaluate import Active, Catalog, evaluate
from engine.promotions.legacy import default_catalog
from engine.promotions.live import CatalogHolder
from engine.promotions.shapes import Facts, Outcome, Used
from kartka.texts import format_points, text
from wallet.pricing import (
    BonusPoints,
    EngineInfo,
    Message,
    Pricing,
    PricingRequest,
    TierInfo,
)
from wallet.program import Program, Tier


class EmbeddedEngine:
    """Prices carts with ``program`` and the catalog ``catalog.current``. ``degraded=True`` is the
    fallback of a remote engine that is down: base-tier accrual and no promotions, flagged."""

    remote = False

    def __init__(
        self,
        program: Program,
        *,
        catalog: CatalogHolder | None = None,
        name: str = "embedded",
        degraded: bool = False,
    ) -> None:
        self.program = program
        self.catalog = catalog if catalog is not None else CatalogHolder(default_catalog(program))
        self.name = name
        self.degraded = degraded

    async def calculate(self, request: PricingRequest) -> Pricing:
        """The cart priced as if no limit had counted and no offer were held: the promotion book
        (``engine.promotions.book``) prices calculate and commit with the customer's limits and offers,
        read on the request's own connection."""
        return self.price(request)

    def facts(self, request: PricingRequest, offers: frozenset[str] = frozenset()) -> Facts:
        return request_facts(request, offers, tier=self.program.base_tier if self.degraded else request.tier)

    def outcome(
        self,
        request: PricingRequest,
        *,
        catalog: Catalog | None = None,
        offers: frozenset[str] = frozenset(),
        used: Mapping[str, Used] | None = None,
        explain: bool = True,
    ) -> Outcome:
        """The core's full answer, reasons included (what preview shows)."""
        if self.degraded:
            catalog = Catalog(zone=self.program.zone)
        return evaluate(
            request.lines,
            self.facts(request, offers),
            catalog if catalog is not None else self.catalog.current,
            used,
            redeem_cap_bp=self.program.redeem_cap_bp,
            available_points=request.available_points,
            requested_points=request.requested_points,
            explain=explain,
        )

    def price(
        self,
        request: PricingRequest,
        *,
        catalog: Catalog | None = None,
        offers: frozenset[str] = frozenset(),
        used: Mapping[str, Used] | None = None,
    ) -> Pricing:
        catalog = catalog if catalog is not None else self.catalog.current
        result = evaluate(  # outcome(explain=False), called directly: this is every till's calculate
            request.lines,
            self.facts(request, offers),
            Catalog(zone=self.program.zone) if self.degraded else catalog,
            used,
            redeem_cap_bp=self.program.redeem_cap_bp,
            available_points=request.available_points,
            requested_points=request.requested_points,
            explain=False,
        )
        return priced(
            self.program,
            request,
            result,
            catalog,
            EngineInfo(name=self.name, degraded=self.degraded),
            nudge=not self.degraded,
        )

    async def close(self) -> None:
        return None


_NONE: frozenset[str] = frozenset()


def limited(active: Active) -> bool:
    """Whether a promotion has limits a commit must count."""
    limits = active.promotion.limits
    return limits.per_customer is not None or (limits.budget is not None and limits.budget.limited)


def priced(
    program: Program, request: PricingRequest, result: Outcome, catalog: Catalog, engine: EngineInfo, *, nudge: bool
) -> Pricing:
    """The core's outcome as the engine port answers it (``Pricing``): the points promotions give with an
    expiry of their own booked apart, the tier nudge (``nudge``) among the messages, the promotions named
    in the request's language."""
    # Points with their own expiry are booked apart; the rest expire with the program's.
    bonus = tuple(
        BonusPoints(a.id, a.revision, a.points, a.expires_in_days)
        for a in result.awards
        if a.expires_in_days is not None and a.points
    )
    plain = sum(a.points for a in result.awards if a.expires_in_days is None)
    messages = [Message(code=n.code, text=n.text) for n in result.messages]
    if nudge and program.tier_nudge_within and request.next_tier is not None:
        to_pay = sum(line.qty * line.unit_price for line in request.lines) - result.discount - result.redeem
        said = _tier_nudge(program, request, to_pay)
        if said is not None:
            messages.append(said)
    titles: dict[str, str] = {}
    for line in result.lines:
        for a in line.promotions:
            if a.id not in titles and (title := catalog.title(a.id, request.language)) is not None:
                titles[a.id] = title
    return Pricing(
        lines=result.lines,
        max_redeem_points=result.max_redeem,
        redeem_points=result.redeem,
        accrue_points=result.accrue + plain,
        messages=tuple(messages),
        engine=engine,
        bonus_points=bonus,
        promotion_titles=titles,
    )


def _tier_nudge(program: Program, request: PricingRequest, to_pay: int) -> Message | None:
    nxt = request.next_tier
    within = program.tier_nudge_within
    if nxt is None or within == 0:
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


def request_facts(
    request: PricingRequest, offers: frozenset[str] = frozenset(), *, tier: Tier | TierInfo | None = None
) -> Facts:
    """What the core knows of the shopper and the moment, from a pricing request (``tier``: another than
    the request's, as a degraded engine prices with the base tier); ``offers`` join the request's."""
    if tier is None:
        tier = request.tier
    return Facts(
        at=request.at,
        tier=tier.code,
        rate_bp=tier.rate_bp,
        customer_id=request.customer_id,
        store=request.store,
        channel=request.channel,
        offers=(offers | frozenset(request.offers)) if request.offers else offers,
        segments=frozenset(request.segments) if request.segments else _NONE,
        language=request.language,
        currency=request.currency,
    )
