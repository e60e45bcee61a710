"""The development provider: every channel's messages are written to ``dev_inbox`` in PostgreSQL.

Nothing leaves the machine; ``GET /dev/inbox?to=<phone or device token>`` shows what a shopper would
have received. The idempotency key is unique there, so a retried send is stored once, like a provider
that honours idempotency keys. Refused in production by the settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from kartka.db import Pool
from notifications.model import Channel, Outbound, Outcome, SendResult

_encoder = msgspec.json.Encoder()

_INSERT: Final = """
    INSERT INTO dev_inbox (idempotency_key, channel, recipient, title, body, data)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]::jsonb[])
    ON CONFLICT (idempotency_key) DO NOTHING
"""


class DevProvider:
    name = "dev"
    max_batch = 1_000

    def __init__(self, pool: Pool, channels: frozenset[Channel] = frozenset(Channel)) -> None:
        self.pool = pool
        self.channels = channels

    async def send(self, messages: Sequence[Outbound]) -> list[SendResult]:
        await self.pool.execute(
            _INSERT,
            [m.key for m in messages],
            [m.channel.value for m in messages],
            [m.recipient for m in messages],
            [m.title for m in messages],
            [m.text for m in messages],
            [_encoder.encode(m.data).decode() for m in messages],
        )
        return [SendResult(id=m.id, outcome=Outcome.DELIVERED, provider_message_id=m.key) for m in messages]

    async def aclose(self) -> None:
        return None


class InboxEntry(msgspec.Struct, frozen=True):
    id: int
    channel: str
    to: str
    title: str | None
    text: str
    data: dict[str, Any]
    created_at: str


async def read_inbox(pool: Pool, recipient: str, *, limit: int = 50) -> list[InboxEntry]:
    """What the development provider stored for one phone or device token, newest first."""
    rows = await pool.fetch(
        """
        SELECT id, channel, recipient, title, body, data, created_at FROM dev_inbox
         WHERE recipient = $1 ORDER BY id DESC LIMIT $2
        """,
        recipient,
        limit,
    )
    return [
        InboxEntry(
            id=r["id"],
            channel=r["channel"],
            to=r["recipient"],
            title=r["title"],
            text=r["body"],
            data=r["data"],
            created_at=r["created_at"].isoformat(),
        )
        for r in rows
    ]
