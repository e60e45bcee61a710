"""``GET /v1/me/offers``: the promotions a shopper can use now, in their language.

Read from this process's live catalog (what the tills price with), filtered by what is known of the
shopper here: their tier, their personal offers, the saved segments they are in (asked only when a
promotion is aimed at segments), and the promotion's time (dates, weekdays, hours in the program's time
zone).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from engine.promotions.book import held_offers
from engine.promotions.model import Promotion, text_in
from engine.promotions.reload import LiveCatalog, LivePromotion
from kartka.db import Connection
from wallet.customers import CustomerService
from wallet.pricing import NO_SEGMENTS, SegmentSource
from wallet.program import Program


class ShopperOffer(msgspec.Struct, frozen=True):
    id: str
    title: str
    text: str | None
    """What the promotion gives, as its ``messages.applied`` says it (when it says it)."""
    starts_at: datetime | None
    ends_at: datetime | None
    personal: bool
    valid_until: datetime | None
    """For a personal offer: until when it is the shopper's."""
    stores: tuple[str, ...]
    """Where it runs; empty: everywhere."""
    channels: tuple[str, ...]


def runs_at(promotion: Promotion, at: datetime, program: Program) -> bool:
    """Whether ``promotion``'s ``when`` holds at ``at`` (weekdays and hours in the program's zone)."""
    when = promotion.when
    if when.starts_at is not None and at < when.starts_at:
        return False
    if when.ends_at is not None and at >= when.ends_at:
        return False
    local = at.astimezone(program.zone)
    if when.weekdays and local.isoweekday() not in when.weekdays:
        return False
    if when.hours is not None:
        start, end = when.hours.minutes
        minute = local.hour * 60 + local.minute
        inside = start <= minute < end if start < end else (minute >= start or minute < end)
        if not inside:
            return False
    return True


class ShopperOffers:
    def __init__(
        self,
        *,
        catalog: LiveCatalog | None,
        customers: CustomerService,
        program: Program,
        segments: SegmentSource = NO_SEGMENTS,
    ) -> None:
        self.catalog = catalog
        self.customers = customers
        self.program = program
        self.segments = segments
        """The shopper's saved segments, as calculate asks for them (``SegmentsWhenAimed``: only while a live
        promotion is aimed at segments)."""

    async def of(self, conn: Connection, customer_id: UUID, now: datetime) -> list[ShopperOffer]:
        who = await self.customers.identify_customer(conn, customer_id, now)
        if self.catalog is None:  # a remote engine prices: its promotions are not ours to list
            return []
        language = await conn.fetchval("SELECT language FROM customers WHERE id = $1", customer_id) or (
            self.program.language
        )
        held = await held_offers(conn, customer_id, now)
        mine = await self.segments.segments(conn, str(customer_id))  # (none asked when no promotion aims at any)
        offers: list[ShopperOffer] = []
        for live in self.catalog.current.promotions:
            offer = self._offer(live, who.tier.code, held, mine, language, now)
            if offer is not None:
                offers.append(offer)
        return offers

    def _offer(
        self,
        live: LivePromotion,
        tier: str,
        held: dict[str, datetime],
        segments: frozenset[str],
        language: str,
        now: datetime,
    ) -> ShopperOffer | None:
        promotion = live.promotion
        audience = promotion.audience
        if audience.tiers and tier not in audience.tiers:
            return None
        if audience.personal and live.id not in held:
            return None
        if audience.segments and segments.isdisjoint(audience.segments):  # as the core's audience check
            return None
        if audience.exclude_segments and not segments.isdisjoint(audience.exclude_segments):
            return None
        if not runs_at(promotion, now, self.program):
            return None
        return ShopperOffer(
            id=live.id,
            title=promotion.title_in(language),
            text=text_in(promotion.messages.applied, language),
            starts_at=promotion.when.starts_at,
            ends_at=promotion.when.ends_at,
            personal=audience.personal,
            valid_until=held.get(live.id) if audience.personal else None,
            stores=promotion.where.stores,
            channels=promotion.where.channels,
        )
