"""What the remote core engine is told about committed orders and refunds, through the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from kartka.db import Connection, Pool
from wallet.events import WalletEvents
from wallet.pricing import CommittedOrder, CommittedRefund, EngineNotice


async def tell_engine(events: WalletEvents, conn: Connection, notice: EngineNotice, now: datetime) -> None:
    """Queue a notice for the remote engine in this transaction: the outbox worker sends it once the
    change has committed (never for one that rolls back, and not while the account is locked) and
    again, with backoff, until the engine acknowledges."""
    await events.engine_notice(conn, notice=notice, now=now)


def builtins(message: CommittedOrder | CommittedRefund) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(message)
    return body


async def engine_acknowledged(pool: Pool, order_pk: int) -> None:
    """The remote engine took the notice of this order (``orders.engine_notified``)."""
    await pool.execute("UPDATE orders SET engine_notified = true WHERE id = $1 AND NOT engine_notified", order_pk)
