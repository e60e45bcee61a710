"""Commit a purchase: the order, its lines, ledger entries and lots, written in the caller's transaction
with the customer's account locked, and the events it causes (points earned, tier upgrade, pass update,
the remote engine's notice) queued in the same transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

from kartka import texts
from kartka.db import Connection
from kartka.errors import InvalidInput
from kartka.sql import named
from wallet import ledger, receipts
from wallet.ledger import EntryKind
from wallet.orders.idempotency import encoder, racing_conflict, request_hash, seen_before
from wallet.orders.notices import order_notice, tell_engine
from wallet.orders.structs import CLOCK_SKEW, Channel, CommitInput, OrderResult, OrderScope, Quote, Stored
from wallet.pricing import CartLine, CommittedOrder, Pricing, applied_totals
from wallet.program import Program, Tier
from wallet.tiers import tier_view, upgrade_if_earned

if TYPE_CHECKING:
    from uuid import UUID

    from wallet.orders.service import OrderService


def promotion_totals(
    pricing: Pricing, totals: Mapping[str, tuple[int, int, int]] | None = None
) -> list[tuple[str, int]]:
    """(title, discount) of each promotion applied, in the order they first appear on the lines
    (``totals``: the pricing's :func:`applied_totals`, when the caller has them already)."""
    titles = pricing.promotion_titles
    return [
        (titles.get(pid, pid), discount)
        for pid, (_, discount, _) in (applied_totals(pricing.lines) if totals is None else totals).items()
    ]


def purchase_time(program: Program, data: CommitInput, now: datetime) -> datetime:
    """When the purchase counts as made: the till's time, if it is neither in the future nor too old."""
    purchased_at = (data.purchased_at or now).astimezone(UTC)
    if purchased_at > now + CLOCK_SKEW:
        raise InvalidInput("purchased_at may not be in the future", field="purchased_at")
    purchased_at = min(purchased_at, now)  # a till clock a little ahead is not a future purchase
    oldest = now - timedelta(days=program.offline_days)
    if purchased_at < oldest:
        raise InvalidInput(
            f"purchased_at is more than {program.offline_days} days ago (offline_days); "
            "a purchase that old is settled by staff, not by the till",
            field="purchased_at",
        )
    return purchased_at


async def commit(
    orders: OrderService,
    conn: Connection,
    data: CommitInput,
    *,
    idempotency_key: str,
    api_key_id: str | None,
    store: str | None,
    terminal: str | None,
    channel: Channel,
) -> Stored:
    program = orders.program
    now = orders.clock.now()
    purchased_at = purchase_time(program, data, now)
    digest = request_hash("order", data)
    customer, card, account = await orders.customers.lock_card_owner(conn, data.card)
    customer_id = customer.id

    replay = await seen_before(
        conn, "order", OrderScope(channel, store), data.order_id, digest, api_key_id, idempotency_key
    )
    if replay is not None:
        return replay

    # The book's read of the limits this cart meets (their rows locked) rides on the snapshot: a commit
    # with promotions makes as many round trips as one without. The snapshot's two subqueries are
    # aggregates, so it is always one row and the book's part always runs, its locks with it.
    reading = orders.book.reading(data.lines, customer_id=customer_id, at=purchased_at) if orders.book else None
    book = reading.part if reading is not None else None
    snapshot = await conn.fetchrow(
        *named(_SNAPSHOT + (f", ({book.sql}) AS book" if book else "") + _SNAPSHOT_FROM).bind(
            customer=customer_id,
            now=now,
            soon=program.expiring_soon_until(now),
            since=program.tier_window_start(now),
            **(book.values if book else {}),
        )
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
    tier = program.tier(account.tier_code)
    request = await orders.pricing_request(
        conn,
        customer_id,
        account.tier_code,
        snapshot["spend"],
        data.lines,
        available=available,
        requested=data.redeem_points,
        at=purchased_at,
        store=store,
        terminal=terminal,
        channel=channel,
    )
    # The book re-prices with the limits this cart meets locked and counted: its answer is the truth,
    # even when the calculate before it showed a promotion that another till has used up since.
    if reading is not None:
        pricing = await reading.price(conn, request, snapshot["book"] if book else None)
    else:
        pricing = await orders.engine.calculate(request)
    quote = await orders.quote(request, pricing, receipt=False)  # the order's answer prints its own receipt
    if quote.redeem_points < data.redeem_points:
        raise ledger.InsufficientPoints(
            f"this cart may be paid with at most {texts.points(quote.max_redeem_points, 'en')} "
            f"({texts.format_percent(program.redeem_cap_bp, 'en')}% of the eligible total, and no more than available)",
            field="redeem_points",
            max_redeem_points=quote.max_redeem_points,
        )

    # What the promotions gave (lines, uses, budgets) rides on the order's insert, as the read did.
    totals = applied_totals(pricing.lines)
    given = reading.recording(customer_id=customer_id, at=purchased_at, totals=totals) if reading is not None else None
    try:
        order_pk: int = await conn.fetchval(
            *named(INSERT_ORDER + (f",\n{given.sql}" if given else "") + "\nSELECT id FROM o").bind(
                order_id=data.order_id,
                customer_id=customer_id,
                card_number=card.number,
                api_key_id=api_key_id,
                idempotency_key=idempotency_key,
                request_hash=digest,
                store=store,
                terminal=terminal,
                purchased_at=purchased_at,
                subtotal=quote.subtotal,
                discount=quote.discount,
                redeemed_points=quote.redeem_points,
                paid=quote.to_pay,
                accrued_points=quote.accrue_points,
                tier_code=tier.code,
                rate_bp=tier.rate_bp,
                engine=quote.engine.name,
                degraded=quote.engine.degraded,
                channel=channel,
                engine_notified=not orders.engine_remote,  # the embedded engine needs no telling
                **_line_arrays(quote, data.lines),
                **(given.values if given else {}),
            )
        )
    except asyncpg.UniqueViolationError as exc:  # another request took this order_id or key a moment ago
        raise racing_conflict(exc, "order", data.order_id) from exc

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
    available_at = program.available_at(purchased_at)
    expires_at = program.expires_at(purchased_at)
    # The tier's accrual (and promotion points without an expiry of their own) expire with the program;
    # each promotion's quick-expiring points are a lot of their own, expiring ``expires_in_days`` after
    # the purchase. All are the order's accrual lots: a refund takes back from them alike.
    lots = [(b.points, purchased_at + timedelta(days=b.expires_in_days)) for b in pricing.bonus_points if b.points]
    regular = quote.accrue_points - sum(points for points, _ in lots)
    for points, until in ([(regular, expires_at)] if regular else []) + lots:
        account, _ = await ledger.credit(
            conn,
            account,
            kind=EntryKind.ACCRUAL,
            points=points,
            available_at=available_at,
            expires_at=until,
            occurred_at=purchased_at,
            order_pk=order_pk,
        )
    spend_after = snapshot["spend"] + (quote.to_pay if purchased_at > program.tier_window_start(now) else 0)
    upgraded = await upgrade_if_earned(
        conn,
        program,
        customer_id=customer_id,
        current=account.tier_code,
        spend=spend_after,
        now=now,
        order_pk=order_pk,
    )
    balance = await ledger.balance(conn, customer_id, now, program)
    tier_after = tier_view(program, upgraded.code if upgraded else account.tier_code, spend_after)
    await _tell(
        orders,
        conn,
        data,
        quote,
        customer_id=customer_id,
        card_number=card.number,
        order_pk=order_pk,
        available_at=available_at,
        total_available=balance.available,
        upgraded=upgraded,
        purchased_at=purchased_at,
        store=store,
        terminal=terminal,
        channel=channel,
        now=now,
    )
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
        receipt_lines=receipts.promotion_lines(program.language, promotion_totals(pricing, totals), program.currency)
        + receipts.order_lines(
            program.language,
            program.zone,
            accrued=quote.accrue_points,
            available_at=available_at,
            redeemed=quote.redeem_points,
            balance=balance,
            tier=tier_after,
            upgraded_to=upgraded.name if upgraded else None,
        ),
        engine=quote.engine,
        lines=quote.lines,
    )
    body = encoder.encode(result)
    await conn.execute("UPDATE orders SET response = $2::text::json WHERE id = $1", order_pk, body.decode())
    return Stored(body=body, replayed=False)


async def _tell(
    orders: OrderService,
    conn: Connection,
    data: CommitInput,
    quote: Quote,
    *,
    customer_id: UUID,
    card_number: str,
    order_pk: int,
    available_at: datetime,
    total_available: int,
    upgraded: Tier | None,
    purchased_at: datetime,
    store: str | None,
    terminal: str | None,
    channel: Channel,
    now: datetime,
) -> None:
    """The purchase's events, in its transaction: points earned, a tier upgrade, the cards' passes, and
    (through the outbox: sent once this commits, never for a rollback) the remote engine's notice."""
    events = orders.customers.events
    if quote.accrue_points:
        await events.points_earned(
            conn,
            customer_id=customer_id,
            order_pk=order_pk,
            earned=quote.accrue_points,
            available_at=available_at,
            total_available=total_available,
            now=now,
        )
    if upgraded is not None:
        await events.tier_upgraded(conn, customer_id=customer_id, tier=upgraded, ref=f"order:{order_pk}", now=now)
    await events.cards_changed(conn, customer_ids=[customer_id], now=now)
    if orders.engine_remote:
        order = CommittedOrder(
            order_id=data.order_id,
            customer_id=str(customer_id),
            card=card_number,
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
        await tell_engine(events, conn, order_notice(order_pk, order), now)


def _line_arrays(quote: Quote, cart: Sequence[CartLine]) -> dict[str, list[object]]:
    """The quote's lines (of ``cart``, in its order) as one array per column, for ``unnest`` in
    :data:`INSERT_ORDER`."""
    lines = quote.lines
    return {
        "brands": [line.brand for line in cart],
        "skus": [line.sku for line in lines],
        "names": [line.name for line in lines],
        "categories": [line.category for line in lines],
        "on_sale": [line.on_sale for line in lines],
        "qtys": [line.qty for line in lines],
        "unit_prices": [line.unit_price for line in lines],
        "discounts": [line.discount for line in lines],
        "redeemed": [line.redeem_points for line in lines],
        "accrued": [line.accrue_points for line in lines],
        "first_promotions": [line.promotion for line in lines],
        # As the receipt named them; JSON text, as asyncpg would read nested lists as a 2-D array.
        "promotions": [encoder.encode(line.promotions).decode() if line.promotions else None for line in lines],
    }


#: The order and its lines; a commit adds the promotion book's CTEs and ``SELECT id FROM o``.
INSERT_ORDER = """
WITH o AS (
    INSERT INTO orders (order_id, customer_id, card_number, api_key_id, idempotency_key, request_hash, store,
                        terminal, purchased_at, subtotal, discount, redeemed_points, paid, accrued_points,
                        tier_code, rate_bp, engine, degraded, channel, engine_notified)
    VALUES (:order_id, :customer_id, :card_number, :api_key_id, :idempotency_key, :request_hash, :store,
            :terminal, :purchased_at, :subtotal, :discount, :redeemed_points, :paid, :accrued_points,
            :tier_code, :rate_bp, :engine, :degraded, :channel, :engine_notified)
    RETURNING id
), lines AS (
    INSERT INTO order_lines (order_pk, line_no, sku, name, category, brand, on_sale, qty, unit_price, total,
                             discount, redeemed_points, paid, accrued_points, promotion, promotions)
    SELECT o.id, l.n - 1, l.sku, l.name, l.category, l.brand, l.on_sale, l.qty, l.unit_price,
           l.qty * l.unit_price, l.discount, l.redeemed, l.qty * l.unit_price - l.discount - l.redeemed, l.accrued,
           l.promotion, l.promotions::jsonb
      FROM o, unnest(:skus::text[], :names::text[], :categories::text[], :brands::text[], :on_sale::bool[],
                     :qtys::int[], :unit_prices::bigint[], :discounts::bigint[], :redeemed::bigint[],
                     :accrued::bigint[], :first_promotions::text[], :promotions::text[])
              WITH ORDINALITY AS l (sku, name, category, brand, on_sale, qty, unit_price, discount, redeemed,
                                    accrued, promotion, promotions, n)
)"""

#: The balance and the tier window's spend before the purchase; a commit may add the book's read.
_SNAPSHOT = "SELECT b.*, s.spend"
_SNAPSHOT_FROM = (
    f" FROM ({ledger.BALANCE_SQL.format(now=':now', soon=':soon', customer=':customer')}) b, "
    f"({ledger.SPEND_SQL.format(customer=':customer', since=':since')}) s"
)
