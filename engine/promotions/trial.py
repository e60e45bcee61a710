"""Trying promotions before they run: preview (one cart, with drafts) and backtest (the stored orders of
a period, re-priced with one promotion added). Both use the same pure evaluation core the tills price
with, so what staff see here is what a till would do.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Final
from uuid import UUID
from zoneinfo import ZoneInfo

import msgspec

from engine.embedded import limited, priced, request_facts
from engine.promotions.book import held_offers, used_in
from engine.promotions.evaluate import Active, Catalog, evaluate
from engine.promotions.model import Promotion
from engine.promotions.reload import LiveCatalog, LivePromotion, Snapshot
from engine.promotions.shapes import Award, Facts, NotApplied, Outcome, Used
from kartka.bounds import Instant, check_instant
from kartka.db import Connection
from kartka.errors import InvalidInput, NotFound
from wallet.customers import CustomerService
from wallet.orders import OrderService, Quote
from wallet.pricing import NO_SEGMENTS, CartLine, EngineInfo, SaleChannel, SegmentSource
from wallet.program import Program

#: A backtest re-prices at most this many orders (the answer says when it stopped short).
MAX_BACKTEST_ORDERS: Final = 200_000
MAX_BACKTEST_DAYS: Final = 400
_BATCH: Final = 500


class PromotionPreviewInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    lines: Annotated[tuple[CartLine, ...], msgspec.Meta(min_length=1, max_length=500)]
    card: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    """A card or phone, as a till would scan it: the shopper's tier, offers and points. Without one, a
    shopper of the base tier with no offers and no points."""
    store: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    channel: SaleChannel = "pos"
    at: Instant | None = None
    """When the cart is priced (default: now): try a promotion's hours or its first day."""
    codes: Annotated[
        tuple[Annotated[str, msgspec.Meta(min_length=1, max_length=64)], ...], msgspec.Meta(max_length=20)
    ] = ()
    """Promotion codes the shopper entered. No promotion is bound to a code yet, so they change nothing."""
    drafts: Annotated[tuple[Promotion, ...], msgspec.Meta(max_length=50)] = ()
    """Promotion objects to price with as if they ran: one with a stored promotion's id replaces it."""
    redeem_points: Annotated[int, msgspec.Meta(ge=0, le=10_000_000_000)] = 0

    def __post_init__(self) -> None:
        check_instant(self.at, "at")


class PromotionPreview(Quote, frozen=True):
    """The calculate answer for the cart, as the till would get it with the drafts running (every
    promotion applied on each line, revision 0 for a draft of the request), and what preview adds."""

    at: datetime
    tier: str
    bonus_points: int
    """The part of ``accrue_points`` that promotions give (the rest is the tier's)."""
    awards: tuple[Award, ...]
    not_applied: tuple[NotApplied, ...]
    """Promotions that met the cart and did not apply, with why: ``audience``, ``where``, ``when``,
    ``condition`` or ``limit``."""


class BacktestInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    from_: Instant = msgspec.field(name="from")
    to: Instant

    def __post_init__(self) -> None:
        check_instant(self.from_, "from")
        check_instant(self.to, "to")


class Backtest(msgspec.Struct, frozen=True):
    promotion: str
    revision: int
    """The revision tried: the draft when there is one, else the live one."""
    orders: int
    """Orders of the period re-priced."""
    orders_affected: int
    customers_affected: int
    discount: int
    """Money the promotion would have given (minor units), beyond what the others gave."""
    points: int
    """Points it would have given (hundredths), beyond what the others and the tiers gave."""
    truncated: bool
    """True when the period held more than the orders a backtest re-prices; the figures cover the first."""


def _catalog(snapshot: Snapshot, extra: list[LivePromotion], zone: ZoneInfo) -> Catalog:
    replaced = {p.id for p in extra}
    kept = [p for p in snapshot.promotions if p.id not in replaced]
    promotions = [*kept, *extra]
    return Catalog(
        (Active(p.promotion, p.revision, seq) for seq, p in enumerate(promotions)),
        snapshot.groups,
        zone=zone,
    )


class Trials:
    def __init__(
        self,
        *,
        catalog: LiveCatalog,
        customers: CustomerService,
        orders: OrderService,
        program: Program,
        segments: SegmentSource = NO_SEGMENTS,
    ) -> None:
        self.catalog = catalog
        self.customers = customers
        self.orders = orders
        """Spreads a preview's pricing over its lines and prints its receipt, as for a calculate."""
        self.program = program
        self.segments = segments
        """Saved segments' members, asked only when a promotion tried is aimed at segments: as a cart's
        calculate sees them. A backtest sees each customer's segments as they are now (membership has
        no history)."""

    async def preview(self, conn: Connection, data: PromotionPreviewInput, now: datetime) -> PromotionPreview:
        at = data.at or now
        tier, spend, available = self.program.base_tier.code, 0, 0
        customer_id: UUID | None = None
        offers = frozenset[str]()
        if data.card is not None:
            who = await self.customers.identify(conn, data.card, at)
            tier, spend, available = who.tier.code, who.tier.spend_365d, who.balance.available
            customer_id = who.customer.id
            offers = frozenset(await held_offers(conn, customer_id, at))
        drafts = []
        for index, draft in enumerate(data.drafts):
            draft_id = draft.id or f"draft-{index + 1}"
            drafts.append(
                LivePromotion(
                    id=draft_id, revision=0, promotion=msgspec.structs.replace(draft, id=draft_id), created_at=now
                )
            )
        catalog = _catalog(self.catalog.current, drafts, self.program.zone)
        segments = (
            await self.segments.segments(conn, str(customer_id))
            if customer_id is not None and catalog.needs_segments
            else frozenset[str]()
        )
        request = self.orders.request_for(  # what the till's calculate would ask the engine for this shopper
            customer_id,
            tier,
            spend,
            data.lines,
            available=available,
            requested=data.redeem_points,
            at=at,
            store=data.store,
            terminal=None,
            channel=data.channel,
            segments=segments,
            offers=offers,
        )
        facts = request_facts(request)
        limited_ones = [a for a in catalog.candidates(data.lines) if limited(a)]
        used = await used_in(conn, customer_id, limited_ones, at)
        outcome = evaluate(
            data.lines,
            facts,
            catalog,
            used,
            redeem_cap_bp=self.program.redeem_cap_bp,
            available_points=available,
            requested_points=data.redeem_points,
        )
        engine = EngineInfo(name=self.orders.engine.name, degraded=False)
        quote = await self.orders.quote(request, priced(self.program, request, outcome, catalog, engine, nudge=True))
        return PromotionPreview(
            **msgspec.structs.asdict(quote),
            at=at,
            tier=tier,
            bonus_points=outcome.bonus_points,
            awards=outcome.awards,
            not_applied=outcome.not_applied,
        )

    async def backtest(self, conn: Connection, promotion_id: str, data: BacktestInput) -> Backtest:
        """Re-price the period's stored orders, oldest first, without and with the promotion; its limits
        count as they would have (per customer, per order, budgets), the others' are left out."""
        if data.to <= data.from_:
            raise InvalidInput("to must come after from", field="to")
        if data.to - data.from_ > timedelta(days=MAX_BACKTEST_DAYS):
            raise InvalidInput(f"a backtest covers at most {MAX_BACKTEST_DAYS} days", field="to")
        row = await conn.fetchrow(
            """
            SELECT r.revision, r.body, p.created_at FROM promotions p
              JOIN promotion_revisions r
                ON r.promotion_id = p.id AND r.revision = coalesce(p.draft_revision, p.live_revision)
             WHERE p.id = $1
            """,
            promotion_id,
        )
        if row is None:
            raise NotFound(f"no promotion {promotion_id!r}", field="id")
        tried = LivePromotion(
            id=promotion_id,
            revision=row["revision"],
            promotion=msgspec.convert(row["body"], Promotion),
            created_at=row["created_at"],
        )
        snapshot = self.catalog.current
        zone = self.program.zone
        without = _catalog(snapshot, [], zone)
        without = Catalog((a for a in without.promotions if a.id != promotion_id), snapshot.groups, zone=zone)
        with_it = _catalog(snapshot, [tried], zone)
        limits = tried.promotion.limits
        window = (
            timedelta(days=limits.per_customer.days)
            if limits.per_customer is not None and limits.per_customer.days
            else None
        )
        uses: dict[str, deque[datetime]] = defaultdict(deque)
        totals = Used()
        orders = affected = discount = points = 0
        customers: set[str] = set()
        truncated = False
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            cursor = conn.cursor(
                """
                SELECT o.id, o.customer_id, o.purchased_at, o.tier_code, o.rate_bp, o.store, o.channel
                  FROM orders o
                 WHERE o.purchased_at >= $1 AND o.purchased_at < $2
                 ORDER BY o.purchased_at, o.id
                """,
                data.from_,
                data.to,
            )
            batch: list[object] = []
            async for order in cursor:
                if orders >= MAX_BACKTEST_ORDERS:
                    truncated = True
                    break
                batch.append(order)
                orders += 1
                if len(batch) == _BATCH:
                    result = await self._batch(conn, batch, without, with_it, tried, uses, window, totals)
                    totals, affected, discount, points = _add(result, affected, discount, points, customers)
                    batch = []
                    await asyncio.sleep(0)  # CPU-bound: let the process's other requests through
            if batch:
                result = await self._batch(conn, batch, without, with_it, tried, uses, window, totals)
                totals, affected, discount, points = _add(result, affected, discount, points, customers)
        return Backtest(
            promotion=promotion_id,
            revision=tried.revision,
            orders=orders,
            orders_affected=affected,
            customers_affected=len(customers),
            discount=discount,
            points=points,
            truncated=truncated,
        )

    async def _batch(
        self,
        conn: Connection,
        orders: list[object],
        without: Catalog,
        with_it: Catalog,
        tried: LivePromotion,
        uses: dict[str, deque[datetime]],
        window: timedelta | None,
        totals: Used,
    ) -> _BatchResult:
        ids = [order["id"] for order in orders]  # type: ignore[index]
        lines: dict[int, list[CartLine]] = defaultdict(list)
        for line in await conn.fetch(
            """
            SELECT order_pk, sku, qty, unit_price, category, brand, on_sale FROM order_lines
             WHERE order_pk = ANY($1::bigint[]) ORDER BY order_pk, line_no
            """,
            ids,
        ):
            lines[line["order_pk"]].append(
                CartLine(
                    sku=line["sku"],
                    qty=line["qty"],
                    unit_price=line["unit_price"],
                    category=line["category"],
                    brand=line["brand"],
                    on_sale=line["on_sale"],
                )
            )
        members: Mapping[str, frozenset[str]] = {}
        if with_it.needs_segments or without.needs_segments:
            members = await self.segments.members(conn, sorted({str(o["customer_id"]) for o in orders}))  # type: ignore[index]
        result = _BatchResult(totals=totals)
        for order in orders:
            cart = lines.get(order["id"])  # type: ignore[index]
            if not cart:
                continue
            customer = str(order["customer_id"])  # type: ignore[index]
            at: datetime = order["purchased_at"]  # type: ignore[index]
            recent = uses[customer]
            if window is not None:
                while recent and recent[0] <= at - window:
                    recent.popleft()
            facts = Facts(
                at=at,
                tier=order["tier_code"],  # type: ignore[index]
                rate_bp=order["rate_bp"],  # type: ignore[index]
                customer_id=customer,
                store=order["store"],  # type: ignore[index]
                channel=order["channel"],  # type: ignore[index]
                offers=frozenset({tried.id}),  # a personal promotion is tried as if offered to everyone
                segments=members.get(customer, frozenset()),
            )
            used = {tried.id: msgspec.structs.replace(result.totals, customer=len(recent))}
            before = evaluate(cart, facts, without, explain=False)
            after = evaluate(cart, facts, with_it, used, explain=False)
            gave = _given(after, tried.id)
            if gave is None and after.discount == before.discount and _points(after) == _points(before):
                continue
            result.affected += 1
            result.customers.add(customer)
            result.discount += after.discount - before.discount
            result.points += _points(after) - _points(before)
            if gave is not None:
                recent.append(at)
                d, p = gave
                t = result.totals
                result.totals = Used(orders=t.orders + 1, discount=t.discount + d, points=t.points + p)
        return result


class _BatchResult:
    __slots__ = ("affected", "customers", "discount", "points", "totals")

    def __init__(self, totals: Used) -> None:
        self.totals = totals
        self.affected = 0
        self.customers: set[str] = set()
        self.discount = 0
        self.points = 0


def _add(
    result: _BatchResult, affected: int, discount: int, points: int, customers: set[str]
) -> tuple[Used, int, int, int]:
    customers |= result.customers
    return result.totals, affected + result.affected, discount + result.discount, points + result.points


def _points(outcome: Outcome) -> int:
    return outcome.accrue + outcome.bonus_points


def _given(outcome: Outcome, promotion_id: str) -> tuple[int, int] | None:
    """(discount, points) the promotion gave in ``outcome``, or ``None`` when it gave nothing."""
    applied = outcome.applied().get(promotion_id)
    discount = applied[1] if applied is not None else 0
    points = sum(a.points for a in outcome.awards if a.id == promotion_id)
    return (discount, points) if discount or points else None
