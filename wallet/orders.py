"""The till flow: price a cart, commit a purchase, refund part of it.

Pricing is the core engine's (``engine``, behind the port ``wallet.pricing``); this module keeps the
books. It spreads the points a cart spends and earns over its lines (so a later refund takes back
exactly a returned part's share),
writes the order, its ledger entries and lots in the caller's transaction with the customer's account
locked, and makes commits and refunds idempotent: the same ``Idempotency-Key`` with the same body
returns the stored answer and changes nothing.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal
from uuid import UUID

import asyncpg
import msgspec

from kartka import texts
from kartka.bounds import Instant, check_instant
from kartka.clock import Clock
from kartka.db import Connection, Pool
from kartka.errors import Conflict, Forbidden, InvalidInput, NotFound
from kartka.keys import CODE_PATTERN
from wallet import ledger, receipts
from wallet.customers import CustomerService
from wallet.ledger import EntryKind
from wallet.models import BalanceView, TierView
from wallet.money import allocate, prorate
from wallet.pricing import (
    CartLine,
    CommittedOrder,
    CommittedRefund,
    Engine,
    EngineInfo,
    EngineNotice,
    Message,
    NextTierInfo,
    PricingRequest,
    ReturnedLine,
    Sku,
    TierInfo,
)
from wallet.program import Program
from wallet.tiers import tier_view, upgrade_if_earned

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


_encoder = msgspec.json.Encoder()


def _request_hash(kind: str, body: msgspec.Struct) -> bytes:
    return hashlib.sha256(kind.encode() + b"\0" + _encoder.encode(body)).digest()


class OrderService:
    def __init__(self, *, program: Program, engine: Engine, customers: CustomerService, clock: Clock) -> None:
        self.program = program
        self.engine = engine
        self.engine_remote = engine.remote
        self.customers = customers
        self.clock = clock

    # -- pricing --------------------------------------------------------------------------------

    def _pricing_request(
        self,
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
    ) -> PricingRequest:
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
            customer_id=str(customer_id),
            store=store,
            terminal=terminal,
        )

    async def _quote(self, request: PricingRequest) -> Quote:
        pricing = await self.engine.calculate(request)
        lines = request.lines
        after_discount = [
            0 if line.on_sale else line.total - priced.discount
            for line, priced in zip(lines, pricing.lines, strict=True)
        ]
        redeem_parts = allocate(pricing.redeem_points, after_discount)
        paid_eligible = [a - r for a, r in zip(after_discount, redeem_parts, strict=True)]
        accrue_parts = allocate(pricing.accrue_points, paid_eligible)
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
            accrue_points=pricing.accrue_points,
            to_pay=subtotal - discount - pricing.redeem_points,
            lines=quote_lines,
            messages=list(pricing.messages),
            receipt_lines=receipts.quote_lines(
                self.program.language,
                discount=discount,
                redeem=pricing.redeem_points,
                max_redeem=pricing.max_redeem_points,
                accrue=pricing.accrue_points,
                currency=self.program.currency,
            ),
            engine=pricing.engine,
        )

    async def calculate(
        self, conn: Connection, data: CalculateInput, *, store: str | None, terminal: str | None
    ) -> Quote:
        """Price a cart for the customer behind ``data.card``; writes nothing. A request for more
        points than may be redeemed is cut to the maximum."""
        now = self.clock.now()
        who = await self.customers.identify(conn, data.card, now)
        request = self._pricing_request(
            who.customer.id,
            who.tier.code,
            who.tier.spend_365d,
            data.lines,
            available=who.balance.available,
            requested=data.redeem_points,
            at=now,
            store=store,
            terminal=terminal,
        )
        return await self._quote(request)

    # -- commit ---------------------------------------------------------------------------------

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
        now = self.clock.now()
        purchased_at = (data.purchased_at or now).astimezone(UTC)
        if purchased_at > now + CLOCK_SKEW:
            raise InvalidInput("purchased_at may not be in the future", field="purchased_at")
        purchased_at = min(purchased_at, now)  # a till clock a little ahead is not a future purchase
        oldest = now - timedelta(days=self.program.offline_days)
        if purchased_at < oldest:
            raise InvalidInput(
                f"purchased_at is more than {self.program.offline_days} days ago (offline_days); "
                "a purchase that old is settled by staff, not by the till",
                field="purchased_at",
            )
        digest = _request_hash("order", data)
        customer, card, account = await self.customers.lock_card_owner(conn, data.card)
        customer_id = customer.id

        replay = await _seen_before(
            conn, "order", OrderScope(channel, store), data.order_id, digest, api_key_id, idempotency_key
        )
        if replay is not None:
            return replay

        snapshot = await conn.fetchrow(
            f"SELECT b.*, s.spend FROM ({ledger.BALANCE_SQL.format(now='$2', soon='$3', customer='$1')}) b, "
            f"({ledger.SPEND_SQL.format(customer='$1', since='$4')}) s",
            customer_id,
            now,
            self.program.expiring_soon_until(now),
            self.program.tier_window_start(now),
        )
        assert snapshot is not None
        lots_available: int = snapshot["lots_available"]
        available = lots_available - account.debt
        if data.redeem_points > max(available, 0):
            raise ledger.InsufficientPoints(
                f"cannot redeem {texts.points(data.redeem_points, 'en')}: "
                f"{texts.format_points(max(available, 0), 'en')} available",
                field="redeem_points",
                available=max(available, 0),
            )
        tier = self.program.tier(account.tier_code)
        request = self._pricing_request(
            customer_id,
            account.tier_code,
            snapshot["spend"],
            data.lines,
            available=available,
            requested=data.redeem_points,
            at=purchased_at,
            store=store,
            terminal=terminal,
        )
        quote = await self._quote(request)
        if quote.redeem_points < data.redeem_points:
            raise ledger.InsufficientPoints(
                f"this cart may be paid with at most {texts.points(quote.max_redeem_points, 'en')} "
                f"({texts.format_percent(self.program.redeem_cap_bp, 'en')}% of the eligible total, "
                "and no more than available)",
                field="redeem_points",
                max_redeem_points=quote.max_redeem_points,
            )

        try:
            order_pk: int = await conn.fetchval(
                _INSERT_ORDER,
                data.order_id,
                customer_id,
                card.number,
                api_key_id,
                idempotency_key,
                digest,
                store,
                terminal,
                purchased_at,
                quote.subtotal,
                quote.discount,
                quote.redeem_points,
                quote.to_pay,
                quote.accrue_points,
                tier.code,
                tier.rate_bp,
                quote.engine.name,
                quote.engine.degraded,
                [line.sku for line in quote.lines],
                [line.name for line in quote.lines],
                [line.category for line in quote.lines],
                [line.on_sale for line in quote.lines],
                [line.qty for line in quote.lines],
                [line.unit_price for line in quote.lines],
                [line.discount for line in quote.lines],
                [line.redeem_points for line in quote.lines],
                [line.accrue_points for line in quote.lines],
                [line.promotion for line in quote.lines],
                channel,
                not self.engine_remote,  # the embedded engine needs no telling
            )
        except asyncpg.UniqueViolationError as exc:  # another request took this order_id or key a moment ago
            raise _racing_conflict(exc, "order", data.order_id) from exc

        if quote.redeem_points:
            await ledger.redeem(
                conn,
                account,
                points=quote.redeem_points,
                now=now,
                order_pk=order_pk,
                occurred_at=purchased_at,
                lots_available=lots_available,
            )
        available_at = self.program.available_at(purchased_at)
        expires_at = self.program.expires_at(purchased_at)
        if quote.accrue_points:
            account, _ = await ledger.credit(
                conn,
                account,
                kind=EntryKind.ACCRUAL,
                points=quote.accrue_points,
                available_at=available_at,
                expires_at=expires_at,
                occurred_at=purchased_at,
                order_pk=order_pk,
            )
        spend_after = snapshot["spend"] + (quote.to_pay if purchased_at > self.program.tier_window_start(now) else 0)
        upgraded = await upgrade_if_earned(
            conn,
            self.program,
            customer_id=customer_id,
            current=account.tier_code,
            spend=spend_after,
            now=now,
            order_pk=order_pk,
        )
        balance = await ledger.balance(conn, customer_id, now, self.program)
        tier_after = tier_view(self.program, upgraded.code if upgraded else account.tier_code, spend_after)
        events = self.customers.events
        if quote.accrue_points:
            await events.points_earned(
                conn,
                customer_id=customer_id,
                order_pk=order_pk,
                earned=quote.accrue_points,
                available_at=available_at,
                total_available=balance.available,
                now=now,
            )
        if upgraded is not None:
            await events.tier_upgraded(conn, customer_id=customer_id, tier=upgraded, ref=f"order:{order_pk}", now=now)
        await events.cards_changed(conn, customer_ids=[customer_id], now=now)
        if self.engine_remote:  # through the outbox: sent once this commits, never for a rollback
            order = CommittedOrder(
                order_id=data.order_id,
                customer_id=str(customer_id),
                card=card.number,
                lines=data.lines,
                discount=quote.discount,
                redeemed_points=quote.redeem_points,
                accrued_points=quote.accrue_points,
                paid=quote.to_pay,
                purchased_at=purchased_at,
                store=store,
                terminal=terminal,
                channel=channel,
            )
            await self._tell_engine(conn, EngineNotice(f"order-{order_pk}", "/orders", _builtins(order), order_pk), now)
        result = OrderResult(
            order_id=data.order_id,
            customer_id=customer_id,
            card=card.number,
            subtotal=quote.subtotal,
            discount=quote.discount,
            to_pay=quote.to_pay,
            accrued_points=quote.accrue_points,
            redeemed_points=quote.redeem_points,
            available_at=available_at,
            expires_at=expires_at,
            purchased_at=purchased_at,
            balance=balance,
            tier=tier_after,
            tier_upgraded=upgraded is not None,
            receipt_lines=receipts.order_lines(
                self.program.language,
                self.program.zone,
                accrued=quote.accrue_points,
                available_at=available_at,
                redeemed=quote.redeem_points,
                balance=balance,
                tier=tier_after,
                upgraded_to=upgraded.name if upgraded else None,
            ),
            engine=quote.engine,
        )
        body = _encoder.encode(result)
        await conn.execute("UPDATE orders SET response = $2::text::json WHERE id = $1", order_pk, body.decode())
        return Stored(body=body, replayed=False)

    # -- refunds --------------------------------------------------------------------------------

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
        another store's order by accident."""
        now = self.clock.now()
        digest = _request_hash(f"refund:{order_id}", data)
        order_scope = _order_scope(data, channel=channel, store=store)
        order, account = await self._lock_order(conn, order_scope, order_id)
        refund_scope = OrderScope(channel=channel, store=store)
        replay = await _seen_before(conn, "refund", refund_scope, data.refund_id, digest, api_key_id, idempotency_key)
        if replay is not None:
            return replay

        lines = await conn.fetch(
            """
            SELECT line_no, sku, qty, refunded_qty, paid, redeemed_points, accrued_points
              FROM order_lines WHERE order_pk = $1 ORDER BY line_no FOR UPDATE
            """,
            order["id"],
        )
        plan = _plan_return(order_id, lines, data.lines)
        amount = sum(p[2] for p in plan)
        returned = sum(p[4] for p in plan)
        # Points that expired unspent are gone already: a refund takes back only what the order's points
        # could still be (or were) used for, over all its refunds together.
        takeable = await conn.fetchval(_TAKEABLE, order["id"], now)
        taken_back = min(sum(p[3] for p in plan), max(takeable, 0))
        if taken_back < sum(p[3] for p in plan):
            shares = allocate(taken_back, [p[3] for p in plan])
            plan = [(p[0], p[1], p[2], share, p[4]) for p, share in zip(plan, shares, strict=True)]
        try:
            refund_pk: int = await conn.fetchval(
                """
                WITH r AS (
                    INSERT INTO refunds (refund_id, order_pk, customer_id, api_key_id, idempotency_key, request_hash,
                                         amount, points_taken_back, points_returned, channel, store)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $15, $16)
                    RETURNING id
                ), rl AS (
                    INSERT INTO refund_lines (refund_pk, order_pk, line_no, qty, amount, points_taken_back,
                                              points_returned)
                    SELECT r.id, $2, l.line_no, l.qty, l.amount, l.taken, l.returned
                      FROM r, unnest($10::int[], $11::int[], $12::bigint[], $13::bigint[], $14::bigint[])
                           AS l (line_no, qty, amount, taken, returned)
                ), ol AS (
                    UPDATE order_lines o SET refunded_qty = o.refunded_qty + l.qty
                      FROM unnest($10::int[], $11::int[]) AS l (line_no, qty)
                     WHERE o.order_pk = $2 AND o.line_no = l.line_no
                ), ot AS (
                    UPDATE orders SET refunded_amount = refunded_amount + $7 WHERE id = $2
                )
                SELECT id FROM r
                """,
                data.refund_id,
                order["id"],
                order["customer_id"],
                api_key_id,
                idempotency_key,
                digest,
                amount,
                taken_back,
                returned,
                [p[0] for p in plan],
                [p[1] for p in plan],
                [p[2] for p in plan],
                [p[3] for p in plan],
                [p[4] for p in plan],
                channel,
                store,
            )
        except asyncpg.UniqueViolationError as exc:  # another request took this refund_id or key a moment ago
            raise _racing_conflict(exc, "refund", data.refund_id) from exc
        if taken_back:
            account, _ = await ledger.take_back(
                conn,
                account,
                points=taken_back,
                now=now,
                order_pk=order["id"],
                refund_pk=refund_pk,
                occurred_at=now,
                policy=self.program.refund_policy,
            )
        if returned:
            # Points spent on the returned part come back with the latest expiry they had.
            expires_at = await conn.fetchval(
                """
                SELECT max(l.expires_at) FROM ledger_entries e
                  JOIN lot_consumptions c ON c.entry_id = e.id JOIN lots l ON l.id = c.lot_id
                 WHERE e.order_pk = $1 AND e.kind = 'redemption'
                """,
                order["id"],
            )
            account, _ = await ledger.credit(
                conn,
                account,
                kind=EntryKind.REFUND_RETURN,
                points=returned,
                available_at=now,
                expires_at=expires_at or self.program.expires_at(now),
                occurred_at=now,
                order_pk=order["id"],
                refund_pk=refund_pk,
            )
        balance = await ledger.balance(conn, order["customer_id"], now, self.program)
        await self.customers.events.cards_changed(conn, customer_ids=[order["customer_id"]], now=now)
        if self.engine_remote:
            refunded = CommittedRefund(
                order_id=order_id,
                refund_id=data.refund_id,
                lines=tuple(ReturnedLine(sku=line.sku, qty=line.qty) for line in data.lines),
                points_taken_back=taken_back,
                points_returned=returned,
                amount=amount,
                store=order_scope.store,
                channel=order_scope.channel,
                refund_store=store,
            )
            path = f"/orders/{urllib.parse.quote(order_id, safe='')}/refunds"
            notice = EngineNotice(f"refund-{refund_pk}", path, _builtins(refunded), after_order=order["id"])
            await self._tell_engine(conn, notice, now)
        result = RefundResult(
            refund_id=data.refund_id,
            order_id=order_id,
            amount=amount,
            points_taken_back=taken_back,
            points_returned=returned,
            balance=balance,
            receipt_lines=receipts.refund_lines(
                self.program.language, taken_back=taken_back, returned=returned, balance=balance
            ),
        )
        body = _encoder.encode(result)
        await conn.execute("UPDATE refunds SET response = $2::text::json WHERE id = $1", refund_pk, body.decode())
        return Stored(body=body, replayed=False)

    async def _tell_engine(self, conn: Connection, notice: EngineNotice, now: datetime) -> None:
        """Queue a notice for the remote engine in this transaction: the outbox worker sends it once the
        change has committed (never for one that rolls back, and not while the account is locked) and
        again, with backoff, until the engine acknowledges."""
        await self.customers.events.engine_notice(conn, notice=notice, now=now)

    async def _lock_order(
        self, conn: Connection, scope: OrderScope, order_id: str
    ) -> tuple[asyncpg.Record, ledger.Account]:
        """The order and its customer's account, locked. A no-name card merged meanwhile moves the order to
        another customer: look again until the lock is on the owner's account."""
        for _ in range(3):
            order = await conn.fetchrow(
                "SELECT id, customer_id, order_id, channel FROM orders "
                "WHERE channel = $1 AND coalesce(store, '') = $2 AND order_id = $3",
                scope.channel,
                scope.key,
                order_id,
            )
            if order is None:
                raise OrderNotFound(f"no order {order_id!r} {scope.describe()}", field="order_id")
            account = await ledger.lock_live_account(conn, order["customer_id"], self.program, closed_ok=True)
            owner = await conn.fetchval("SELECT customer_id FROM orders WHERE id = $1", order["id"])
            if account is not None and owner == order["customer_id"]:
                return order, account
        raise OrderConflict(f"order {order_id} is being moved between accounts; retry", field="order_id")


_INSERT_ORDER = """
WITH o AS (
    INSERT INTO orders (order_id, customer_id, card_number, api_key_id, idempotency_key, request_hash, store,
                        terminal, purchased_at, subtotal, discount, redeemed_points, paid, accrued_points,
                        tier_code, rate_bp, engine, degraded, channel, engine_notified)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $29, $30)
    RETURNING id
), lines AS (
    INSERT INTO order_lines (order_pk, line_no, sku, name, category, on_sale, qty, unit_price, total, discount,
                             redeemed_points, paid, accrued_points, promotion)
    SELECT o.id, l.n - 1, l.sku, l.name, l.category, l.on_sale, l.qty, l.unit_price, l.qty * l.unit_price,
           l.discount, l.redeemed, l.qty * l.unit_price - l.discount - l.redeemed, l.accrued, l.promotion
      FROM o, unnest($19::text[], $20::text[], $21::text[], $22::bool[], $23::int[], $24::bigint[], $25::bigint[],
                     $26::bigint[], $27::bigint[], $28::text[])
              WITH ORDINALITY AS l (sku, name, category, on_sale, qty, unit_price, discount, redeemed, accrued,
                                    promotion, n)
)
SELECT id FROM o
"""


_TAKEABLE = """
SELECT (coalesce(sum(l.points - l.remaining * (l.expires_at <= $2)::int
                  - coalesce((SELECT -sum(e.points) FROM ledger_entries e
                               WHERE e.lot_id = l.id AND e.kind = 'expiry'), 0)), 0)
        - coalesce((SELECT sum(points_taken_back) FROM refunds WHERE order_pk = $1), 0))::bigint
  FROM lots l WHERE l.order_pk = $1 AND l.kind = 'accrual'
"""


def _racing_conflict(exc: asyncpg.UniqueViolationError, what: str, external_id: str) -> Conflict:
    """Two requests raced past the replay check; the database let one in. Say which rule the other broke."""
    if "idempotency_key" in (exc.constraint_name or ""):
        return IdempotencyConflict(
            f"this Idempotency-Key is being used for another {what} request; send a new key for a new {what}",
            field="Idempotency-Key",
        )
    return OrderConflict(f"{what} {external_id} is already recorded under another Idempotency-Key", field=f"{what}_id")


# An id is looked for in its scope only (the unique indexes' expression), a key among the caller's own.
_SEEN = """
SELECT api_key_id, idempotency_key, request_hash, response::text AS response FROM {what}s
 WHERE (channel = $4 AND coalesce(store, '') = $5 AND {what}_id = $1) OR (api_key_id = $2 AND idempotency_key = $3)
 LIMIT 1
"""


def _order_scope(data: RefundInput, *, channel: Channel, store: str | None) -> OrderScope:
    """Which order a refund means: the caller's own store and channel unless it names another. The online
    shop refunds only its own orders; a till may take back another store's or an online order, named."""
    order_channel = data.order_channel or channel
    if channel == "online" and order_channel != "online":
        raise Forbidden("an online integration refunds only online orders", field="order_channel")
    if order_channel == "online":
        # An online order carries the store of the key that made it (none for a chain-wide key). The
        # shop's store-bound key refunds its store's; a chain-wide one and a till name the store, if any.
        if channel == "online" and store is not None:
            if data.order_store not in (None, store):
                raise Forbidden(f"this key acts for store {store} only", field="order_store")
            return OrderScope(channel="online", store=store)
        return OrderScope(channel="online", store=data.order_store)
    return OrderScope(channel="pos", store=data.order_store or store)


async def _seen_before(
    conn: Connection,
    what: Literal["order", "refund"],
    scope: OrderScope,
    external_id: str,
    digest: bytes,
    api_key_id: str | None,
    key: str,
) -> Stored | None:
    """The stored answer to a retry; 409 for a reused key or id; ``None`` for a new request."""
    previous = await conn.fetchrow(_SEEN.format(what=what), external_id, api_key_id, key, scope.channel, scope.key)
    return None if previous is None else _replay(previous, external_id, digest, api_key_id, key, what)


def _replay(
    previous: asyncpg.Record, external_id: str, digest: bytes, api_key_id: str | None, key: str, what: str
) -> Stored:
    same_key = previous["api_key_id"] == api_key_id and previous["idempotency_key"] == key
    if same_key and bytes(previous["request_hash"]) == digest:
        if previous["response"] is None:  # pragma: no cover - written in the same transaction
            raise IdempotencyConflict(f"the {what} is still being recorded; retry", field="Idempotency-Key")
        return Stored(body=previous["response"].encode(), replayed=True)
    if same_key:
        raise IdempotencyConflict(
            f"this Idempotency-Key was used for another {what} request; send a new key for a new {what}",
            field="Idempotency-Key",
        )
    raise OrderConflict(
        f"{what} {external_id} is already recorded under another Idempotency-Key",
        field=f"{what}_id",
    )


def _plan_return(
    order_id: str, lines: list[asyncpg.Record], returns: tuple[ReturnLine, ...]
) -> list[tuple[int, int, int, int, int]]:
    """(line_no, qty, money, points to take back, points to give back) per order line touched.

    A returned quantity of a SKU is taken from that SKU's lines in order. Shares are cumulative: what a
    line has returned so far decides what it returns now, so returning everything in parts adds up to
    exactly what the line earned and spent.
    """
    wanted: dict[str, int] = {}
    for item in returns:
        wanted[item.sku] = wanted.get(item.sku, 0) + item.qty
    plan: list[tuple[int, int, int, int, int]] = []
    for sku, asked in wanted.items():
        qty = asked
        rows = [r for r in lines if r["sku"] == sku]
        returnable = sum(r["qty"] - r["refunded_qty"] for r in rows)
        if qty > returnable:
            sold = sum(r["qty"] for r in rows)
            raise ReturnTooLarge(
                f"cannot return {qty} of {sku!r} on order {order_id}: sold {sold}, returnable {returnable}",
                field="lines",
                sku=sku,
                returnable=returnable,
            )
        for row in rows:
            if qty == 0:
                break
            take = min(qty, row["qty"] - row["refunded_qty"])
            if take == 0:
                continue
            qty -= take
            before, after = row["refunded_qty"], row["refunded_qty"] + take

            def share(total: int, before: int = before, after: int = after, of: int = row["qty"]) -> int:
                return prorate(total, after, of) - prorate(total, before, of)

            plan.append(
                (row["line_no"], take, share(row["paid"]), share(row["accrued_points"]), share(row["redeemed_points"]))
            )
    return plan


async def engine_acknowledged(pool: Pool, order_pk: int) -> None:
    """The remote engine took the notice of this order (``orders.engine_notified``)."""
    await pool.execute("UPDATE orders SET engine_notified = true WHERE id = $1 AND NOT engine_notified", order_pk)


def _builtins(message: CommittedOrder | CommittedRefund) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(message)
    return body


def stored_json(stored: Stored) -> Any:
    return msgspec.json.decode(stored.body)
