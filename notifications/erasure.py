"""Forgetting a shopper who closed their account, in the notifications' own tables.

The wallet closes the account and tells us (``WalletEvents.account_closed``) in the same transaction:
their preferences and app devices go, the addresses and texts on their past and queued messages are
erased (queued ones are cancelled, never sent), and the development inbox forgets their phone. The
rows stay, anonymous, so the delivery counts still add up.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from kartka.db import Connection


async def forget_customer(conn: Connection, *, customer_id: UUID, phone: str | None, now: datetime) -> None:
    await conn.execute("DELETE FROM notification_preferences WHERE customer_id = $1", customer_id)
    await conn.execute("DELETE FROM devices WHERE customer_id = $1", customer_id)
    # Messages to the phone with no customer on the row (a sign-in code before the first sign-in) too.
    await conn.execute(
        """
        UPDATE outbox SET recipient = 'erased', params = '{}'::jsonb,
                          status = CASE WHEN status IN ('queued', 'sending') THEN 'cancelled' ELSE status END,
                          last_error = CASE WHEN status IN ('queued', 'sending') THEN 'account closed'
                                            ELSE last_error END,
                          fallback_at = NULL, updated_at = $2
         WHERE customer_id = $1 OR ($3::text IS NOT NULL AND customer_id IS NULL AND recipient = $3)
        """,
        customer_id,
        now,
        phone,
    )
    if phone is not None:
        await conn.execute("DELETE FROM dev_inbox WHERE recipient = $1", phone)
