"""Hand-built customers and orders for the analytics tests, written straight to the tables (the wallet's
own paths are tested elsewhere; here the point is data whose answers the tests can work out)."""

from __future__ import annotations

import itertools
import uuid
from datetime import date, datetime, timedelta

from kartka.db import Connection

_numbers = itertools.count(1)


def ean(n: int) -> str:
    body = f"2{n:011d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


async def customer(
    conn: Connection,
    now: datetime,
    *,
    registered_days_ago: float = 100,
    source: str = "pos",
    tier: str = "standart",
    home_store: str | None = None,
    birthday: date | None = None,
    consent: bool = False,
    phone: bool = True,
) -> uuid.UUID:
    n = next(_numbers)
    customer_id: uuid.UUID = await conn.fetchval(
        """
        INSERT INTO customers (phone, name, source, home_store, birthday, birthday_set_at, created_at)
        VALUES ($1, $2, $3, $4, $5, CASE WHEN $5::date IS NULL THEN NULL ELSE $6::timestamptz END, $6) RETURNING id
        """,
        f"+37533{n:07d}" if phone else None,
        f"C{n}",
        source,
        home_store,
        birthday,
        now - timedelta(days=registered_days_ago),
    )
    await conn.execute("INSERT INTO cards (number, customer_id) VALUES ($1, $2)", ean(n), customer_id)
    await conn.execute("INSERT INTO accounts (customer_id, tier_code) VALUES ($1, $2)", customer_id, tier)
    if consent:
        await conn.execute(
            "INSERT INTO notification_preferences (customer_id, channels, marketing) VALUES ($1, '{sms}', true)",
            customer_id,
        )
    return customer_id


async def order(
    conn: Connection, customer_id: uuid.UUID, at: datetime, paid: int, *, refunded: int = 0, store: str = "s1"
) -> int:
    n = next(_numbers)
    card = await conn.fetchval(
        "SELECT number FROM cards WHERE customer_id = $1 ORDER BY issued_at LIMIT 1", customer_id
    )
    pk: int = await conn.fetchval(
        """
        INSERT INTO orders (order_id, customer_id, card_number, idempotency_key, request_hash, store, purchased_at,
                            subtotal, discount, redeemed_points, paid, accrued_points, refunded_amount, tier_code,
                            rate_bp, engine, degraded)
        VALUES ($1, $2, $3, $1, '\\x00', $4, $5, $6, 0, 0, $6, 0, $7, 'standart', 500, 'embedded', false)
        RETURNING id
        """,
        f"o-{n}",
        customer_id,
        card,
        store,
        at,
        paid,
        refunded,
    )
    return pk
