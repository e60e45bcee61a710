"""What the wallet tells the rest of the system, inside the transaction that made it happen.

The wallet does not know how shoppers are told (SMS, Viber, push, a Wallet pass update); it calls
these hooks on its own connection before committing, and the implementation (``notifications``)
writes its outbox rows there, so an event exists exactly when the change does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from kartka.db import Connection
from wallet.pricing import EngineNotice
from wallet.program import Tier


class WalletEvents(Protocol):
    async def card_issued(
        self, conn: Connection, *, customer_id: UUID, card_number: str, now: datetime, ref: str | None = None
    ) -> None:
        """A shopper with a phone got a card (registration, or a no-name card attached to a phone); with
        ``ref``, staff asked to send the link again (one message per ``ref``)."""
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

    async def cards_changed(
        self, conn: Connection, *, customer_ids: Sequence[UUID], now: datetime, cards: Sequence[str] = ()
    ) -> None:
        """Something the wallet passes of these shoppers' active cards show changed (balance, tier, pending
        points becoming available, expiry, name, the card page link), or ``cards`` changed status (their
        passes go void): the passes are to be updated on the phones."""
        ...

    async def send_otp(
        self, conn: Connection, *, phone: str, code: str, ttl_seconds: int, key: str, now: datetime, locale: str
    ) -> None:
        """Send a sign-in code to ``phone``; ``key`` is unique per code sent."""
        ...

    async def bonus_granted(
        self,
        conn: Connection,
        *,
        customer_id: UUID,
        points: int,
        expires_at: datetime,
        kind: str,
        ref: str,
        now: datetime,
    ) -> None:
        """The program gave the shopper bonus points (``kind``: ``birthday``); ``ref`` makes it one message."""
        ...

    async def account_closed(self, conn: Connection, *, customer_id: UUID, phone: str | None, now: datetime) -> None:
        """The shopper closed their account: forget everything that reaches them (``phone`` was theirs
        until now; messages to it before they had an account are theirs too). Nothing queued for them
        is to be sent any more."""
        ...

    async def engine_notices(self, conn: Connection, *, notices: Sequence[EngineNotice], now: datetime) -> int:
        """The remote core engine is to be told of committed orders or refunds: after the commit, again
        and again until it acknowledges, once per ``notice.key``. Returns how many were new (a notice
        under a key queued before is not queued again)."""
        ...
