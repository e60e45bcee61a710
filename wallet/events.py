"""What the wallet tells the rest of the system, inside the transaction that made it happen.

The wallet does not know how shoppers are told (SMS, Viber, push, a Wallet pass update); it calls
these hooks on its own connection before committing, and the implementation (``notifications``)
writes its outbox rows there, so an event exists exactly when the change does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID

from kartka.db import Connection
from wallet.program import Tier


class WalletEvents(Protocol):
    async def card_issued(self, conn: Connection, *, customer_id: UUID, card_number: str, now: datetime) -> None:
        """A shopper with a phone got a card (registration, or a no-name card attached to a phone)."""
        ...

    async def points_earned(
        self,
        conn: Connection,
        *,
        customer_id: UUID,
        order_pk: int,
        earned: int,
        available_at: datetime,
        total_available: int,
        now: datetime,
    ) -> None:
        """A purchase accrued ``earned`` points, usable from ``available_at``."""
        ...

    async def tier_upgraded(self, conn: Connection, *, customer_id: UUID, tier: Tier, ref: str, now: datetime) -> None:
        """The shopper reached ``tier``; ``ref`` identifies the change (one message per change)."""
        ...
