"""Refund part of an order: in proportion to the value returned, take back the points that part earned
(no more than the order's points could still be used for) and give back the points spent on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
import msgspec

from kartka.db import Connection
from kartka.errors import Forbidden
from kartka.sql import Named
from wallet import ledger, receipts
from wallet.ledger import EntryKind
from wallet.money import allocate, prorate
from wallet.orders.idempotency import encoder, racing_conflict, request_hash, seen_before
from wallet.orders.notices import refund_notice, tell_engine
from wallet.orders.structs import (
    Channel,
    OrderConflict,
    OrderNotFound,
    OrderScope,
    RefundInput,
    RefundResult,
    ReturnLine,
    ReturnShare,
    ReturnTooLarge,
    Stored,
)
from wallet.pricing import AppliedPromotion, CommittedRefund, ReturnedLine, ReturnedPart, ReturnedPromotion

if TYPE_CHECKING:
    from wallet.orders.service import OrderService


async def refund(
    orders: OrderService,
    conn: Connection,
    order_id: str,
    data: RefundInput,
    *,
    idempotency_key: str,
    api_key_id: str | None,
    channel: Channel,
    store: str | None,
) -> Stored:
    program = orders.program
    now = orders.clock.now()
    digest = request_hash(f"refund:{order_id}", data)
    order_scope = order_scope_of(data, channel=channel, store=store)
    order, account = await _lock_order(orders, conn, order_scope, order_id)
    refund_scope = OrderScope(channel=channel, store=store)
    replay = await seen_before(conn, "refund", refund_scope, data.refund_id, digest, api_key_id, idempotency_key)
    if replay is not None:
        return replay

    lines = await conn.fetch(
        """
        SELECT line_no, sku, qty, refunded_qty, paid, redeemed_points, accrued_points, promotions
          FROM order_lines WHERE order_pk = $1 ORDER BY line_no FOR UPDATE
        """,
        order["id"],
    )
    plan = plan_return(order_id, lines, data.lines)
    amount = sum(share.amount for share in plan)
    returned = sum(share.returned for share in plan)
    earned = sum(share.taken_back for share in plan)
    # Points that expired unspent are gone already: a refund takes back only what the order's points
    # could still be (or were) used for, over all its refunds together.
    takeable = await conn.fetchval(TAKEABLE, order["id"], now)
    taken_back = min(earned, max(takeable, 0))
    if taken_back < earned:
        cut = allocate(taken_back, [share.taken_back for share in plan])
        plan = [msgspec.structs.replace(share, taken_back=part) for share, part in zip(plan, cut, strict=True)]
    try:
        refund_pk: int = await conn.fetchval(
            *_INSERT_REFUND.bind(
                refund_id=data.refund_id,
                order_pk=order["id"],
                customer_id=order["customer_id"],
                api_key_id=api_key_id,
                idempotency_key=idempotency_key,
                request_hash=digest,
                amount=amount,
                points_taken_back=taken_back,
                points_returned=returned,
                channel=channel,
                store=store,
                line_nos=[share.line_no for share in plan],
                qtys=[share.qty for share in plan],
                amounts=[share.amount for share in plan],
                taken=[share.taken_back for share in plan],
                returned=[share.returned for share in plan],
            )
        )
    except asyncpg.UniqueViolationError as exc:  # another request took this refund_id or key a moment ago
        raise racing_conflict(exc, "refund", data.refund_id) from exc
    given_back: tuple[ReturnedPromotion, ...] = ()
    if orders.book is not None:
        sold = {row["line_no"]: row for row in lines}
        parts = [
            ReturnedPart(
                line_no=share.line_no,
                before=sold[share.line_no]["refunded_qty"],
                after=sold[share.line_no]["refunded_qty"] + share.qty,
                qty=sold[share.line_no]["qty"],
                promotions=msgspec.convert(sold[share.line_no]["promotions"] or (), tuple[AppliedPromotion, ...]),
            )
            for share in plan
        ]
        returned_now = {p.line_no: p.after for p in parts}
        full = all(returned_now.get(row["line_no"], row["refunded_qty"]) == row["qty"] for row in lines)
        given_back = await orders.book.refunded(
            conn, order_pk=order["id"], parts=parts, full=full, language=program.language
        )
    if taken_back:
        account, _ = await ledger.take_back(
            conn,
            account,
            points=taken_back,
            now=now,
            order_pk=order["id"],
            refund_pk=refund_pk,
            occurred_at=now,
            policy=program.refund_policy,
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
            expires_at=expires_at or program.expires_at(now),
            occurred_at=now,
            order_pk=order["id"],
            refund_pk=refund_pk,
        )
    balance = await ledger.balance(conn, order["customer_id"], now, program)
    events = orders.customers.events
    await events.cards_changed(conn, customer_ids=[order["customer_id"]], now=now)
    if orders.engine_remote:
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
            refund_channel=channel,
        )
        await tell_engine(events, conn, refund_notice(refund_pk, order["id"], refunded), now)
    result = RefundResult(
        refund_id=data.refund_id,
        order_id=order_id,
        amount=amount,
        points_taken_back=taken_back,
        points_returned=returned,
        balance=balance,
        receipt_lines=receipts.refund_lines(
            program.language,
            taken_back=taken_back,
            returned=returned,
            balance=balance,
            promotions=[(p.title, p.discount, p.points) for p in given_back],
            currency=program.currency,
        ),
    )
    body = encoder.encode(result)
    await conn.execute("UPDATE refunds SET response = $2::text::json WHERE id = $1", refund_pk, body.decode())
    return Stored(body=body, replayed=False)


def order_scope_of(data: RefundInput, *, channel: Channel, store: str | None) -> OrderScope:
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


async def _lock_order(
    orders: OrderService, conn: Connection, scope: OrderScope, order_id: str
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
        account = await ledger.lock_live_account(conn, order["customer_id"], orders.program, closed_ok=True)
        owner = await conn.fetchval("SELECT customer_id FROM orders WHERE id = $1", order["id"])
        if account is not None and owner == order["customer_id"]:
            return order, account
    raise OrderConflict(f"order {order_id} is being moved between accounts; retry", field="order_id")


def plan_return(order_id: str, lines: list[asyncpg.Record], returns: tuple[ReturnLine, ...]) -> list[ReturnShare]:
    """Each order line's share of a return.

    A returned quantity of a SKU is taken from that SKU's lines in order. Shares are cumulative: what a
    line has returned so far decides what it returns now, so returning everything in parts adds up to
    exactly what the line earned and spent.
    """
    wanted: dict[str, int] = {}
    for item in returns:
        wanted[item.sku] = wanted.get(item.sku, 0) + item.qty
    plan: list[ReturnShare] = []
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
                ReturnShare(
                    line_no=row["line_no"],
                    qty=take,
                    amount=share(row["paid"]),
                    taken_back=share(row["accrued_points"]),
                    returned=share(row["redeemed_points"]),
                )
            )
    return plan


_INSERT_REFUND = Named("""
WITH r AS (
    INSERT INTO refunds (refund_id, order_pk, customer_id, api_key_id, idempotency_key, request_hash,
                         amount, points_taken_back, points_returned, channel, store)
    VALUES (:refund_id, :order_pk, :customer_id, :api_key_id, :idempotency_key, :request_hash,
            :amount, :points_taken_back, :points_returned, :channel, :store)
    RETURNING id
), rl AS (
    INSERT INTO refund_lines (refund_pk, order_pk, line_no, qty, amount, points_taken_back, points_returned)
    SELECT r.id, :order_pk, l.line_no, l.qty, l.amount, l.taken, l.returned
      FROM r, unnest(:line_nos::int[], :qtys::int[], :amounts::bigint[], :taken::bigint[], :returned::bigint[])
           AS l (line_no, qty, amount, taken, returned)
), ol AS (
    UPDATE order_lines o SET refunded_qty = o.refunded_qty + l.qty
      FROM unnest(:line_nos::int[], :qtys::int[]) AS l (line_no, qty)
     WHERE o.order_pk = :order_pk AND o.line_no = l.line_no
), ot AS (
    UPDATE orders SET refunded_amount = refunded_amount + :amount WHERE id = :order_pk
)
SELECT id FROM r
""")

#: What an order's accrued points may still be taken back: earned minus expired unspent minus what earlier
#: refunds took. ``$1`` the order, ``$2`` now (two parameters: positional reads fine, and the plan test
#: EXPLAINs the text as it is).
TAKEABLE = """
SELECT (coalesce(sum(l.points - l.remaining * (l.expires_at <= $2)::int
                  - coalesce((SELECT -sum(e.points) FROM ledger_entries e
                               WHERE e.lot_id = l.id AND e.kind = 'expiry'), 0)), 0)
        - coalesce((SELECT sum(points_taken_back) FROM refunds WHERE order_pk = $1), 0))::bigint
  FROM lots l WHERE l.order_pk = $1 AND l.kind = 'accrual'
"""
