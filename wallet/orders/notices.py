"""What the remote core engine is told about committed orders and refunds, through the outbox.

A notice is written in the transaction of its order or refund (``tell_engine``). Orders committed before
notices went through the outbox (migration 0012) were told by a task after the commit, which an engine
outage or a crash made forget them: ``renotify`` queues what the engine never acknowledged of those.
"""

from __future__ import annotations

import urllib.parse
from datetime import datetime
from typing import Any, Final

import msgspec

from kartka.db import Connection, Pool
from wallet.events import WalletEvents
from wallet.pricing import CartLine, CommittedOrder, CommittedRefund, EngineNotice, ReturnedLine

#: How many order ids ``renotify`` looks through in one statement and transaction.
RENOTIFY_SPAN: Final = 10_000


async def tell_engine(events: WalletEvents, conn: Connection, notice: EngineNotice, now: datetime) -> None:
    """Queue a notice for the remote engine in this transaction: the outbox worker sends it once the
    change has committed (never for one that rolls back, and not while the account is locked) and
    again, with backoff, until the engine acknowledges."""
    await events.engine_notices(conn, notices=[notice], now=now)


def order_notice(order_pk: int, order: CommittedOrder) -> EngineNotice:
    """The notice of an order. Its key names the order's row: one order, one key, on every attempt."""
    return EngineNotice(f"order-{order_pk}", "/orders", builtins(order), order_pk=order_pk)


def refund_notice(refund_pk: int, order_pk: int, refunded: CommittedRefund) -> EngineNotice:
    """The notice of a refund, sent only once its order's is no longer on its way (``after_order``)."""
    path = f"/orders/{urllib.parse.quote(refunded.order_id, safe='')}/refunds"
    return EngineNotice(f"refund-{refund_pk}", path, builtins(refunded), after_order=order_pk)


def builtins(message: CommittedOrder | CommittedRefund) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(message)
    return body


async def unheard(pool: Pool, order_pk: int, *, engine: str) -> bool:
    """Whether the order is one the remote engine ``engine`` priced and never acknowledged. With no
    notice of it in the outbox, it was committed before notices went through the outbox: ``renotify``
    is to queue its notice."""
    found: bool | None = await pool.fetchval(
        "SELECT engine = $2 AND NOT engine_notified FROM orders WHERE id = $1", order_pk, engine
    )
    return bool(found)


async def engine_acknowledged(pool: Pool, order_pk: int) -> None:
    """The remote engine took the notice of this order (``orders.engine_notified``)."""
    await pool.execute("UPDATE orders SET engine_notified = true WHERE id = $1 AND NOT engine_notified", order_pk)


class Renotified(msgspec.Struct, frozen=True):
    """What ``renotify`` found and queued."""

    orders: int
    """Orders of the remote engine it never acknowledged, whose notice was not in the outbox."""
    refunds: int
    """Their refunds, likewise."""


async def renotify(
    pool: Pool, events: WalletEvents, *, engine: str, now: datetime, span: int = RENOTIFY_SPAN
) -> Renotified:
    """Queue the notices the remote engine ``engine`` (its name, as ``orders.engine`` records it) never
    acknowledged and the outbox does not hold: those of orders committed while it priced (degraded ones
    included) before notices went through the outbox, and their refunds, which wait for their order.

    An order priced by the embedded engine is never told (it was not this engine's); one whose notice
    is in the outbox already (queued, sent, or refused) is left to it. Safe to run again, beside a
    running API and worker: a notice is queued once per key. Orders are looked through by ranges of
    ``span`` ids, each range in a transaction of its own, so a long history holds no long transaction.
    """
    bounds = await pool.fetchrow("SELECT min(id) - 1 AS before, max(id) AS last FROM orders")
    orders = refunds = 0
    start, last = (bounds["before"], bounds["last"]) if bounds and bounds["last"] is not None else (0, 0)
    while start < last:
        end = start + span
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_UNHEARD_ORDERS, start, end, engine)
            if rows:
                pks = [row["id"] for row in rows]
                orders += await events.engine_notices(conn, notices=[_order_of(row) for row in rows], now=now)
                refunded = await conn.fetch(_THEIR_REFUNDS, pks)
                refunds += await events.engine_notices(conn, notices=[_refund_of(row) for row in refunded], now=now)
        start = end
    return Renotified(orders=orders, refunds=refunds)


def _order_of(row: Any) -> EngineNotice:
    lines = msgspec.json.decode(row["lines"], type=tuple[CartLine, ...])
    order = CommittedOrder(
        order_id=row["order_id"],
        customer_id=str(row["customer_id"]),
        card=row["card_number"],
        lines=lines,
        discount=row["discount"],
        redeemed_points=row["redeemed_points"],
        accrued_points=row["accrued_points"],
        paid=row["paid"],
        purchased_at=row["purchased_at"],
        store=row["store"],
        terminal=row["terminal"],
        channel=row["channel"],
    )
    return order_notice(row["id"], order)


def _refund_of(row: Any) -> EngineNotice:
    lines = msgspec.json.decode(row["lines"], type=tuple[ReturnedLine, ...])
    refunded = CommittedRefund(
        order_id=row["order_id"],
        refund_id=row["refund_id"],
        lines=lines,
        points_taken_back=row["points_taken_back"],
        points_returned=row["points_returned"],
        amount=row["amount"],
        store=row["order_store"],
        channel=row["order_channel"],
        refund_store=row["store"],
        refund_channel=row["channel"],
    )
    return refund_notice(row["id"], row["order_pk"], refunded)


# The order as its notice told it: the lines as the till sent them, in their order (no brand for a
# line stored before lines kept theirs).
_UNHEARD_ORDERS: Final = """
SELECT o.id, o.order_id, o.customer_id, o.card_number, o.discount, o.redeemed_points, o.accrued_points,
       o.paid, o.purchased_at, o.store, o.terminal, o.channel,
       (SELECT json_agg(json_build_object('sku', l.sku, 'qty', l.qty, 'unit_price', l.unit_price,
                                          'name', l.name, 'category', l.category, 'on_sale', l.on_sale,
                                          'brand', l.brand)
                        ORDER BY l.line_no)
          FROM order_lines l WHERE l.order_pk = o.id)::text AS lines
  FROM orders o
 WHERE o.id > $1 AND o.id <= $2 AND o.engine = $3 AND NOT o.engine_notified
 ORDER BY o.id
"""

# A refund's returned quantities by SKU, as the refund asked for them (spread over the order's lines
# when it was recorded).
_THEIR_REFUNDS: Final = """
SELECT r.id, r.order_pk, r.refund_id, r.amount, r.points_taken_back, r.points_returned, r.store, r.channel,
       o.order_id, o.store AS order_store, o.channel AS order_channel,
       (SELECT json_agg(json_build_object('sku', s.sku, 'qty', s.qty) ORDER BY s.first)
          FROM (SELECT ol.sku, sum(rl.qty) AS qty, min(rl.line_no) AS first
                  FROM refund_lines rl JOIN order_lines ol ON ol.order_pk = rl.order_pk AND ol.line_no = rl.line_no
                 WHERE rl.refund_pk = r.id GROUP BY ol.sku) s)::text AS lines
  FROM refunds r JOIN orders o ON o.id = r.order_pk
 WHERE r.order_pk = ANY($1::bigint[])
 ORDER BY r.id
"""
