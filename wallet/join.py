"""Joining from a store's QR poster: a stranger's form, so limited per client address, and the card link
it sends is a text a stranger made the service send, so it spends the SMS budget."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from kartka.clock import Clock
from kartka.db import Pool
from kartka.ratelimit import RateLimiter, TextBudget
from wallet.customers import CustomerService, Origin
from wallet.models import Registration, Source
from wallet.phones import country_of
from wallet.stores import get_store

HOUR: Final = timedelta(hours=1)


class JoinService:
    def __init__(
        self,
        *,
        pool: Pool,
        customers: CustomerService,
        limiter: RateLimiter,
        texts: TextBudget,
        per_ip_per_hour: int,
        clock: Clock,
    ) -> None:
        self.pool = pool
        self.customers = customers
        self.limiter = limiter
        self.texts = texts
        self.per_ip_per_hour = per_ip_per_hour
        self.clock = clock

    async def knows_store(self, code: str) -> bool:
        """Whether ``code`` names one of the program's stores: a poster for any other gets no form."""
        async with self.pool.acquire() as conn:
            return await get_store(conn, code) is not None

    async def join(
        self, phone: str, *, name: str | None, store: str | None, language: str, client: str
    ) -> Registration:
        """Register ``phone`` (idempotent). Raises :class:`kartka.errors.RateLimited` past the address's
        limit or the SMS budget (then nothing is written), and the registration's own errors."""
        now = self.clock.now()
        # Every post counts, whatever it turns out to be: the limit is on what one address may try.
        await self.limiter.hit_now(
            self.pool,
            "join-ip",
            client,
            limit=self.per_ip_per_hour,
            window=HOUR,
            now=now,
            message="too many cards were asked for from this address; try again later",
        )
        async with self.pool.acquire() as conn, conn.transaction():
            registration = await self.customers.register(
                conn, phone=phone, name=name, origin=Origin(source=Source.QR_POSTER, store=store), language=language
            )
            # Every valid post spends the budget, a known phone's too (whose card link is not sent again):
            # with the budget spent, a new phone and a customer's get the same answer, so the page does
            # not tell a stranger who is a customer.
            if registration.customer.phone:
                await self.texts.spend(conn, country_of(registration.customer.phone), now)
        return registration
