"""The order service: prices carts through the engine port and hands commits and refunds to their modules."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from kartka.clock import Clock
from kartka.db import Connection, Pool
from wallet import receipts
from wallet.customers import CustomerService
from wallet.money import allocate
from wallet.orders import commit, notices, refund
from wallet.orders.commit import promotion_totals
from wallet.orders.structs import (
    CalculateInput,
    Channel,
    CommitInput,
    Quote,
    QuoteLine,
    RefundInput,
    Stored,
)
from wallet.pricing import (
    NO_SEGMENTS,
    CartLine,
    Engine,
    NextTierInfo,
    Pricing,
    PricingRequest,
    PromotionBook,
    SaleChannel,
    SegmentSource,
    TierInfo,
)
from wallet.program import Program


class OrderService:
    def __init__(
        self,
        *,
        program: Program,
        engine: Engine,
        customers: CustomerService,
        clock: Clock,
        book: PromotionBook | None = None,
        segments: SegmentSource = NO_SEGMENTS,
    ) -> None:
        self.program = program
        self.engine = engine
        self.engine_remote = engine.remote
        self.customers = customers
        self.clock = clock
        self.book = book
        """The embedded engine's book of limits and applied promotions (``None``: a remote engine)."""
        self.segments = segments

    # -- pricing --------------------------------------------------------------------------------

    async def pricing_request(
        self,
        conn: Connection,
        customer_id: UUID,
        tier_code: str,
        spend: int,
        lines: tuple[CartLine, ...],
        *,
        available: int,
        requested: int,
        at: datetime,
        store: str | None,
        terminal: str | None,
        channel: Channel,
    ) -> PricingRequest:
        return self.request_for(
            customer_id,
            tier_code,
            spend,
            lines,
            available=available,
            requested=requested,
            at=at,
            store=store,
            terminal=terminal,
            channel=channel,
            segments=await self.segments.segments(conn, str(customer_id)),
        )

    def request_for(
        self,
        customer_id: UUID | None,
        tier_code: str,
        spend: int,
        lines: tuple[CartLine, ...],
        *,
        available: int,
        requested: int,
        at: datetime,
        store: str | None,
        terminal: str | None,
        channel: SaleChannel,
        segments: frozenset[str] = frozenset(),
        offers: frozenset[str] = frozenset(),
    ) -> PricingRequest:
        """What the engine is asked for a cart of this customer (``None``: nobody in particular), whose
        segments and offers the caller has looked up (:meth:`pricing_request` reads the segments)."""
        tier = self.program.tier(tier_code)
        nxt = self.program.next_tier(tier)
        return PricingRequest(
            lines=lines,
            tier=TierInfo(code=tier.code, name=tier.name, rate_bp=tier.rate_bp),
            next_tier=NextTierInfo(code=nxt.code, name=nxt.name, threshold=nxt.threshold) if nxt else None,
            spend_365d=spend,
            available_points=max(available, 0),
            requested_points=requested,
            at=at,
            language=self.program.language,
            currency=self.program.currency,
            customer_id=str(customer_id) if customer_id is not None else None,
            store=store,
            terminal=terminal,
            channel=channel,
            offers=tuple(sorted(offers)),
            segments=tuple(sorted(segments)),
        )

    async def quote(self, request: PricingRequest, pricing: Pricing | None = None, *, receipt: bool = True) -> Quote:
        """The engine's answer spread over the lines: what each line spends and earns, so a later refund
        takes back exactly a returned part's share. ``receipt=False`` leaves out the receipt's lines (a
        commit prints its own)."""
        if pricing is None:
            pricing = await self.engine.calculate(request)
        lines = request.lines
        after_discount = [
            0 if line.on_sale else line.total - priced.discount
            for line, priced in zip(lines, pricing.lines, strict=True)
        ]
        # Points pay only where they may: a no_redeem promotion's lines take none of them (so a refund of
        # such a line gives back money, not points that paid for another line).
        may_pay = [a if priced.redeemable else 0 for a, priced in zip(after_discount, pricing.lines, strict=True)]
        redeem_parts = allocate(pricing.redeem_points, may_pay)
        paid_eligible = [a - r for a, r in zip(after_discount, redeem_parts, strict=True)]
        accrue_parts = allocate(pricing.accrue_points, paid_eligible)
        # Points a promotion gives with their own expiry are earned on the lines it gave them on: they
        # join each line's accrual, so a refund of a line takes back its share of them as well.
        accrue_total = pricing.accrue_points
        if pricing.bonus_points:
            quick = {b.promotion for b in pricing.bonus_points}
            accrue_parts = [
                part + sum(a.points for a in priced.promotions if a.id in quick)
                for part, priced in zip(accrue_parts, pricing.lines, strict=True)
            ]
            accrue_total += sum(b.points for b in pricing.bonus_points)
        quote_lines = [
            QuoteLine(
                sku=line.sku,
                name=line.name,
                category=line.category,
                qty=line.qty,
                unit_price=line.unit_price,
                total=line.total,
                discount=priced.discount,
                redeem_points=redeem,
                to_pay=line.total - priced.discount - redeem,
                accrue_points=accrue,
                on_sale=line.on_sale,
                promotion=priced.promotion,
                promotions=list(priced.promotions),
            )
            for line, priced, redeem, accrue in zip(lines, pricing.lines, redeem_parts, accrue_parts, strict=True)
        ]
        subtotal = sum(line.total for line in lines)
        discount = sum(line.discount for line in quote_lines)
        return Quote(
            subtotal=subtotal,
            discount=discount,
            max_redeem_points=pricing.max_redeem_points,
            redeem_points=pricing.redeem_points,
            accrue_points=accrue_total,
            to_pay=subtotal - discount - pricing.redeem_points,
            lines=quote_lines,
            messages=list(pricing.messages),
            receipt_lines=receipts.promotion_lines(
                self.program.language, promotion_totals(pricing), self.program.currency
            )
            + receipts.quote_lines(
                self.program.language,
                discount=discount,
                redeem=pricing.redeem_points,
                max_redeem=pricing.max_redeem_points,
                accrue=accrue_total,
                currency=self.program.currency,
            )
            if receipt
            else [],
            engine=pricing.engine,
        )

    async def calculate(
        self, conn: Connection, data: CalculateInput, *, store: str | None, terminal: str | None, channel: Channel
    ) -> Quote:
        """Price a cart for the customer behind ``data.card``, as a commit from the same ``channel`` would;
        writes nothing. A request for more points than may be redeemed is cut to the maximum."""
        now = self.clock.now()
        who = await self.customers.identify(conn, data.card, now)
        request = await self.pricing_request(
            conn,
            who.customer.id,
            who.tier.code,
            who.tier.spend_365d,
            data.lines,
            available=who.balance.available,
            requested=data.redeem_points,
            at=now,
            store=store,
            terminal=terminal,
            channel=channel,
        )
        pricing = await self.book.quote(conn, request) if self.book is not None else None
        return await self.quote(request, pricing)

    # -- writes ---------------------------------------------------------------------------------

    async def commit(
        self,
        conn: Connection,
        data: CommitInput,
        *,
        idempotency_key: str,
        api_key_id: str | None,
        store: str | None,
        terminal: str | None,
        channel: Channel = "pos",
    ) -> Stored:
        """Record a purchase (``wallet.orders.commit``)."""
        return await commit.commit(
            self,
            conn,
            data,
            idempotency_key=idempotency_key,
            api_key_id=api_key_id,
            store=store,
            terminal=terminal,
            channel=channel,
        )

    async def refund(
        self,
        conn: Connection,
        order_id: str,
        data: RefundInput,
        *,
        idempotency_key: str,
        api_key_id: str | None,
        channel: Channel = "pos",
        store: str | None = None,
    ) -> Stored:
        """Refund part of the order ``order_id`` of the caller's own store and channel, or of the store
        and channel the request names (``order_store``, ``order_channel``): an order id never reaches
        another store's order by accident (``wallet.orders.refund``)."""
        return await refund.refund(
            self,
            conn,
            order_id,
            data,
            idempotency_key=idempotency_key,
            api_key_id=api_key_id,
            channel=channel,
            store=store,
        )

    async def renotify(self, pool: Pool) -> notices.Renotified:
        """Queue the notices the remote engine never acknowledged of orders committed before notices went
        through the outbox, and of their refunds (``wallet.orders.notices.renotify``). With the embedded
        engine there is no one to tell: nothing is queued."""
        if not self.engine_remote:
            return notices.Renotified(orders=0, refunds=0)
        return await notices.renotify(pool, self.customers.events, engine=self.engine.name, now=self.clock.now())
