"""Delivery receipts: a provider's report that a message reached the handset, or never will.

``delivered`` settles a message (and cancels a pending Viber fallback); ``failed`` and ``expired``
mark it failed and, for Viber, make its SMS fallback due now (the worker's upkeep sends it within
seconds). Receipts for messages already settled,
or repeated receipts, change nothing, so providers may resend them freely.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from kartka.db import Connection
from notifications.model import Receipt, ReceiptStatus

_APPLY: Final = """
    UPDATE outbox o
       SET status = CASE WHEN r.status = 'delivered' THEN 'delivered' ELSE 'failed' END,
           delivered_at = CASE WHEN r.status = 'delivered' THEN $4 ELSE o.delivered_at END,
           last_error = CASE WHEN r.status = 'delivered' THEN o.last_error ELSE r.error END,
           fallback_at = CASE WHEN r.status = 'delivered' OR o.channel <> 'viber' THEN NULL ELSE $4 END,
           params = CASE WHEN o.template = 'otp' AND r.status = 'delivered' THEN '{}'::jsonb ELSE o.params END,
           updated_at = $4
      FROM unnest($1::text[], $2::text[], $3::text[]) AS r (pmid, status, error)
     WHERE o.provider_message_id = r.pmid AND o.provider LIKE $5
       AND o.status IN ('sending', 'sent')
"""


async def apply_receipts(conn: Connection, receipts: Sequence[Receipt], now: datetime, provider_prefix: str) -> int:
    """Record receipts from one provider (``provider_prefix`` matches its lane names, e.g. ``infobip``).
    Returns how many messages changed."""
    final = [r for r in receipts if r.status is not ReceiptStatus.PENDING]
    if not final:
        return 0
    status = await conn.execute(
        _APPLY,
        [r.provider_message_id for r in final],
        [r.status.value for r in final],
        [r.error for r in final],
        now,
        provider_prefix + "%",
    )
    return int(status.rsplit(" ", 1)[-1])
