"""The messages the wallet's changes cause, enqueued in the transaction of the change.

:class:`Notifier` implements :class:`wallet.events.WalletEvents` (card link on registration, points
earned, tier upgrade), sends sign-in codes (:meth:`Notifier.send_otp`, for the phone sign-in API) and
runs the "points expiring soon" reminder job: one reminder per lot, ``expiry_reminder_days`` before.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final
from uuid import UUID

import msgspec

from kartka.db import Connection, Pool
from notifications.audience import Audience, Availability, load_audience, route
from notifications.erasure import forget_customer
from notifications.model import Category, Channel
from notifications.outbox import Message, enqueue
from wallet.cards import card_page_url
from wallet.passes import service as passes
from wallet.pricing import EngineNotice
from wallet.program import Program, Tier
from wallet.texts import format_percent

#: The template of pass updates: no text, the channel's provider knows what to send.
UPDATE_TEMPLATE: Final = "pass_update"
#: The template of the engine's notices: the row's params are the notice itself.
ENGINE_TEMPLATE: Final = "engine_notice"
#: The outbox key of an engine notice is this plus the notice's own key (`order-42`, `refund-7`).
NOTICE_KEY_PREFIX: Final = "engine:"

_REMINDER_BATCH: Final = 5_000


class Notifier:
    def __init__(self, *, program: Program, public_base: str, available: Availability) -> None:
        self.program = program
        self.public_base = public_base.rstrip("/")
        self.available = available

    def card_url(self, page_token: str) -> str:
        return card_page_url(self.public_base, page_token)

    async def _audience(self, conn: Connection, customer_id: UUID) -> Audience | None:
        return await load_audience(conn, customer_id, self.program)

    async def _send(
        self,
        conn: Connection,
        customer_id: UUID,
        *,
        key: str,
        template: str,
        params: dict[str, object],
        now: datetime,
    ) -> int:
        audience = await self._audience(conn, customer_id)
        if audience is None:
            return 0
        messages = route(
            audience, self.available, key=key, category=Category.TRANSACTIONAL, template=template, params=params
        )
        return await enqueue(conn, messages, now)

    # -- wallet events --------------------------------------------------------------------------

    async def card_issued(
        self, conn: Connection, *, customer_id: UUID, card_number: str, now: datetime, ref: str | None = None
    ) -> None:
        token = await conn.fetchval("SELECT page_token FROM cards WHERE number = $1", card_number)
        audience = await self._audience(conn, customer_id)
        if audience is None or audience.phone is None:
            return
        # The card link goes by text (SMS or Viber): a shopper who just registered has no app yet.
        messages = route(
            audience,
            self.available,
            key=f"card-link:{card_number}:{audience.phone}" + (f":{ref}" if ref else ""),
            category=Category.TRANSACTIONAL,
            template="card_link",
            params={"url": self.card_url(token), "card": card_number},
            channels=[c for c in audience.channels if c != "app"] or ["sms"],
        )
        await enqueue(conn, messages, now)

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
        local = available_at.astimezone(self.program.zone)
        await self._send(
            conn,
            customer_id,
            key=f"points-earned:{order_pk}",
            template="points_earned",
            params={"earned": earned, "available_on": local.date().isoformat(), "total_available": total_available},
            now=now,
        )

    async def tier_upgraded(self, conn: Connection, *, customer_id: UUID, tier: Tier, ref: str, now: datetime) -> None:
        await self._send(
            conn,
            customer_id,
            key=f"tier-upgrade:{customer_id}:{tier.code}:{ref}",
            template="tier_upgrade",
            params={"tier_name": tier.name, "rate_percent": format_percent(tier.rate_bp, "en")},
            now=now,
        )

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
        local = expires_at.astimezone(self.program.zone)
        await self._send(
            conn,
            customer_id,
            key=f"bonus:{ref}",
            template=f"{kind}_bonus",
            params={"points": points, "expires_on": local.date().isoformat()},
            now=now,
        )

    async def cards_changed(
        self, conn: Connection, *, customer_ids: Sequence[UUID], now: datetime, cards: Sequence[str] = ()
    ) -> None:
        """Move these shoppers' passes on and queue the updates: an empty APNs push to every device that
        registered each pass (the phone then fetches it), and a PATCH of each Google object that a save
        link was given out for. Keys carry the pass's new tag: one update per change."""
        messages: list[Message] = []
        for changed in await passes.touch(conn, customer_ids, now, cards=cards):
            for token in changed.push_tokens:
                messages.append(
                    _pass_update(
                        f"pass:{changed.serial_number}:{changed.update_tag}:{token[-16:]}", Channel.PASSKIT, token
                    )
                )
            if changed.google:
                key = f"gwallet:{changed.serial_number}:{changed.update_tag}"
                messages.append(_pass_update(key, Channel.GWALLET, changed.serial_number))
        await enqueue(conn, messages, now)

    async def engine_notices(self, conn: Connection, *, notices: Sequence[EngineNotice], now: datetime) -> int:
        """Queue notices for the remote core engine. No shopper is named on the rows (closing an account
        must not cancel what the engine is owed); the key makes a producer's retry queue each once."""
        messages = [
            Message(
                key=f"{NOTICE_KEY_PREFIX}{notice.key}",
                channel=Channel.ENGINE,
                recipient="core-engine",
                category=Category.TRANSACTIONAL,
                template=ENGINE_TEMPLATE,
                locale="ru",  # read by no person
                params=msgspec.to_builtins(notice),
            )
            for notice in notices
        ]
        return await enqueue(conn, messages, now)

    async def account_closed(self, conn: Connection, *, customer_id: UUID, phone: str | None, now: datetime) -> None:
        await forget_customer(conn, customer_id=customer_id, phone=phone, now=now)

    # -- sign-in codes --------------------------------------------------------------------------

    async def send_otp(
        self, conn: Connection, *, phone: str, code: str, ttl_seconds: int, key: str, now: datetime, locale: str
    ) -> None:
        """Send a sign-in code by Viber where configured (falling back to SMS) or SMS. ``key`` must be
        unique per code sent. The code is scrubbed from the outbox once the provider has it."""
        channel = Channel.VIBER if self.available.viber else Channel.SMS
        message = Message(
            key=f"otp:{key}",
            channel=channel,
            recipient=phone,
            category=Category.TRANSACTIONAL,
            template="otp",
            locale=locale,
            params={"code": code, "minutes": max(1, ttl_seconds // 60)},
            due_at=now,
        )
        await enqueue(conn, [message], now)

    # -- reminders ------------------------------------------------------------------------------

    async def remind_expiring(self, pool: Pool, now: datetime) -> int:
        """Enqueue "points expiring soon" for lots expiring within ``expiry_reminder_days`` that have not
        been reminded of; one message per customer and expiry day. Returns how many lots were covered."""
        days = self.program.expiry_reminder_days
        if days == 0:
            return 0
        covered = 0
        while True:
            async with pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    """
                    WITH due AS (
                        SELECT l.id, l.customer_id, l.remaining, l.expires_at FROM lots l
                         WHERE l.expired_at IS NULL AND l.remaining > 0 AND l.available_at <= $1
                           AND l.expires_at > $1 AND l.expires_at <= $1 + make_interval(days => $2)
                           AND NOT EXISTS (SELECT 1 FROM expiry_reminders r WHERE r.lot_id = l.id)
                         ORDER BY l.id LIMIT $3
                           FOR UPDATE OF l SKIP LOCKED
                    ), marked AS (
                        INSERT INTO expiry_reminders (lot_id, reminded_at) SELECT id, $1 FROM due
                        ON CONFLICT DO NOTHING RETURNING lot_id
                    )
                    SELECT d.customer_id, d.expires_at, sum(d.remaining)::bigint AS points, min(d.id) AS first_lot,
                           count(*) AS lots
                      FROM due d JOIN marked m ON m.lot_id = d.id
                     GROUP BY d.customer_id, d.expires_at
                    """,
                    now,
                    days,
                    _REMINDER_BATCH,
                )
                if not rows:
                    return covered
                messages: list[Message] = []
                for row in rows:
                    audience = await self._audience(conn, row["customer_id"])
                    if audience is None:
                        continue
                    expires_on = row["expires_at"].astimezone(self.program.zone).date()
                    messages += route(
                        audience,
                        self.available,
                        key=f"expiring:{row['first_lot']}",
                        category=Category.TRANSACTIONAL,
                        template="points_expiring",
                        params={"points": row["points"], "expires_on": expires_on.isoformat()},
                    )
                    covered += row["lots"]
                await enqueue(conn, messages, now)


def _pass_update(key: str, channel: Channel, recipient: str) -> Message:
    return Message(
        key=key,
        channel=channel,
        recipient=recipient,
        category=Category.TRANSACTIONAL,
        template=UPDATE_TEMPLATE,
        locale="ru",  # nothing is read by a person: the phone renders the pass
    )
