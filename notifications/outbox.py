"""Writing to the outbox: always inside the producer's transaction.

A registration, an order or a tier change calls :func:`enqueue` on its own connection before it
commits, so the message exists exactly when the change does: a rolled-back change sends nothing. The
idempotency key is unique, so a producer's retry (or a job run twice) never doubles a message. A
``pg_notify`` in the same transaction wakes the workers at commit; they poll as well, so a lost
notification only delays a message by the poll interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import msgspec

from kartka.db import Connection
from notifications.model import Category, Channel

#: The channel workers LISTEN on.
WAKE_CHANNEL: Final = "kartka_outbox"

_encoder = msgspec.json.Encoder()


class Quiet(msgspec.Struct, frozen=True):
    """Quiet hours for a marketing message: local minutes after midnight in ``tz``."""

    tz: str
    start: int
    end: int


class Message(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    channel: Channel
    recipient: str
    category: Category
    template: str
    locale: str
    params: dict[str, Any] = {}
    customer_id: UUID | None = None
    due_at: datetime | None = None  # None: now
    quiet: Quiet | None = None


# The insert and the wake-up in one round trip: NOTIFY only when something was added.
_INSERT: Final = f"""
    WITH added AS (
        INSERT INTO outbox (idempotency_key, channel, recipient, category, template, locale, params, customer_id,
                            due_at, quiet_tz, quiet_start, quiet_end, created_at)
        SELECT k, ch, r, cat, t, l, p::jsonb, c, coalesce(d, $13), qt, qs, qe, $13
          FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::uuid[],
                      $9::timestamptz[], $10::text[], $11::smallint[], $12::smallint[])
               AS m (k, ch, r, cat, t, l, p, c, d, qt, qs, qe)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) AS added, CASE WHEN count(*) > 0 THEN pg_notify('{WAKE_CHANNEL}', '') END AS woke FROM added
"""


async def enqueue(conn: Connection, messages: Sequence[Message], now: datetime) -> int:
    """Add messages to the outbox in the caller's transaction; returns how many were new."""
    if not messages:
        return 0
    added: int = await conn.fetchval(
        _INSERT,
        [m.key for m in messages],
        [m.channel.value for m in messages],
        [m.recipient for m in messages],
        [m.category.value for m in messages],
        [m.template for m in messages],
        [m.locale for m in messages],
        [_encoder.encode(m.params).decode() for m in messages],
        [m.customer_id for m in messages],
        [m.due_at for m in messages],
        [m.quiet.tz if m.quiet else None for m in messages],
        [m.quiet.start if m.quiet else None for m in messages],
        [m.quiet.end if m.quiet else None for m in messages],
        now,
    )
    return added


async def wake(conn: Connection) -> None:
    """Wake the workers when the caller's transaction commits (PostgreSQL holds NOTIFY until then)."""
    await conn.execute(f"NOTIFY {WAKE_CHANNEL}")
