"""The messages a shopper was sent and what became of them, for support: "did my SMS arrive?"."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from kartka.db import Connection


class SentMessage(msgspec.Struct, frozen=True):
    id: int
    channel: str
    category: str
    template: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None


async def messages_for(conn: Connection, customer_id: UUID, *, limit: int = 20) -> list[SentMessage]:
    """The newest messages to the shopper (not the wallet pass pushes, which are the phones' business)."""
    rows = await conn.fetch(
        """
        SELECT id, channel, category, template, status, attempts, created_at, sent_at, delivered_at, last_error
          FROM outbox WHERE customer_id = $1 AND channel IN ('sms', 'viber', 'apns', 'fcm')
         ORDER BY created_at DESC, id DESC LIMIT $2
        """,
        customer_id,
        limit,
    )
    return [msgspec.convert(dict(r), SentMessage) for r in rows]
