"""What support staff see of a shopper: finding them by phone, card number or name, and the file the
console shows (every card they had, orders with their refunds, wallet passes on phones), plus sending
the card link again. Read models only; every change goes through the services that own it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final
from uuid import UUID

import msgspec

from kartka.db import Connection
from kartka.errors import Conflict, InvalidInput
from wallet.account import Profile
from wallet.cards import is_valid_card_number
from wallet.customers import CustomerService
from wallet.errors import CustomerNotFound
from wallet.models import CardStatus, Identification
from wallet.phones import try_normalize_phone
from wallet.profile import has_control_characters

MAX_MATCHES: Final = 25
_SEPARATORS: Final = re.compile(r"[\s\-()]")
_LIKE_SPECIAL: Final = re.compile(r"([\\%_])")


class Match(msgspec.Struct, frozen=True):
    customer_id: UUID
    phone: str | None
    name: str | None
    card_number: str | None
    card_status: CardStatus | None


class CardRecord(msgspec.Struct, frozen=True):
    number: str
    status: CardStatus
    issued_at: datetime
    status_changed_at: datetime | None
    replaced_by: str | None


class RefundRecord(msgspec.Struct, frozen=True):
    refund_id: str
    created_at: datetime
    amount: int
    points_taken_back: int
    points_returned: int


class OrderRecord(msgspec.Struct, frozen=True):
    order_id: str
    store: str | None
    channel: str
    purchased_at: datetime
    subtotal: int
    discount: int
    paid: int
    redeemed_points: int
    accrued_points: int
    refunded_amount: int
    refunds: list[RefundRecord]


class PassRecord(msgspec.Struct, frozen=True):
    card_number: str
    apple_devices: int
    google: bool
    updated_at: datetime


class ShopperFile(msgspec.Struct, frozen=True):
    profile: Profile
    closed: bool
    source: str
    home_store: str | None
    created_at: datetime
    now: Identification | None
    """Card, tier and balance as a till sees them; None for a closed account."""
    cards: list[CardRecord]
    """Every card the shopper had, no-name cards merged into the account included."""
    orders: list[OrderRecord]
    passes: list[PassRecord]


_MATCH_COLUMNS: Final = """
    SELECT cu.id AS customer_id, cu.phone, cu.name, c.number AS card_number, c.status AS card_status
      FROM customers cu
      LEFT JOIN LATERAL (SELECT number, status FROM cards WHERE customer_id = cu.id
                          ORDER BY status = 'active' DESC, issued_at DESC LIMIT 1) c ON true
"""


async def find_customers(conn: Connection, customers: CustomerService, query: str) -> list[Match]:
    """Shoppers matching what an agent typed: a card number (any status: a blocked card's owner is who
    calls support), a phone, or the start of a name. Merged-away and closed accounts are not listed; a
    merged no-name card leads to the account it was merged into."""
    text = query.strip()[:200]
    if not text or has_control_characters(text):  # nobody's phone, card or name holds a NUL or an escape
        return []
    digits = _SEPARATORS.sub("", text)
    if len(digits) == 13 and digits.isdigit() and is_valid_card_number(digits):
        rows = await conn.fetch(
            _MATCH_COLUMNS
            + """
             WHERE cu.id = (SELECT coalesce(o.merged_into, o.id) FROM cards k JOIN customers o ON o.id = k.customer_id
                             WHERE k.number = $1)
               AND cu.merged_into IS NULL AND cu.closed_at IS NULL
            """,
            digits,
        )
        if rows:
            return [msgspec.convert(dict(r), Match) for r in rows]
    phone = try_normalize_phone(text, customers.region)
    if phone is not None:
        rows = await conn.fetch(_MATCH_COLUMNS + " WHERE cu.phone = $1", phone)
        if rows:
            return [msgspec.convert(dict(r), Match) for r in rows]
    if any(ch.isalpha() for ch in text):
        pattern = _LIKE_SPECIAL.sub(r"\\\1", text.lower()) + "%"
        rows = await conn.fetch(
            _MATCH_COLUMNS
            + """
             WHERE lower(cu.name) LIKE $1 AND cu.merged_into IS NULL AND cu.closed_at IS NULL
             ORDER BY lower(cu.name), cu.id LIMIT $2
            """,
            pattern,
            MAX_MATCHES,
        )
        return [msgspec.convert(dict(r), Match) for r in rows]
    return []


async def shopper_file(
    conn: Connection, customers: CustomerService, customer_id: UUID, now: datetime, *, orders: int = 20
) -> ShopperFile:
    row = await conn.fetchrow(
        """
        SELECT id, phone, name, email, birthday, language, source, home_store, created_at,
               closed_at IS NOT NULL AS closed, merged_into
          FROM customers WHERE id = $1
        """,
        customer_id,
    )
    if row is None:
        raise CustomerNotFound(f"no customer with id {customer_id}", field="id")
    if row["merged_into"] is not None:
        raise CustomerNotFound(
            f"customer {customer_id} was merged into {row['merged_into']}",
            field="id",
            merged_into=str(row["merged_into"]),
        )
    profile = msgspec.convert({k: row[k] for k in ("id", "phone", "name", "email", "birthday", "language")}, Profile)
    cards = await conn.fetch(
        """
        SELECT number, status, issued_at, status_changed_at, replaced_by FROM cards
         WHERE customer_id = $1 OR customer_id IN (SELECT id FROM customers WHERE merged_into = $1)
         ORDER BY issued_at DESC, number
        """,
        customer_id,
    )
    order_rows = await conn.fetch(
        """
        SELECT o.id, o.order_id, o.store, o.channel, o.purchased_at, o.subtotal, o.discount, o.paid,
               o.redeemed_points, o.accrued_points, o.refunded_amount,
               coalesce((SELECT json_agg(json_build_object(
                            'refund_id', r.refund_id, 'created_at', r.created_at, 'amount', r.amount,
                            'points_taken_back', r.points_taken_back, 'points_returned', r.points_returned)
                          ORDER BY r.id)
                           FROM refunds r WHERE r.order_pk = o.id), '[]') AS refunds
          FROM orders o WHERE o.customer_id = $1
         ORDER BY o.purchased_at DESC, o.id DESC LIMIT $2
        """,
        customer_id,
        orders,
    )
    passes = await conn.fetch(
        """
        SELECT p.serial_number AS card_number, p.updated_at, p.google_linked_at IS NOT NULL AS google,
               (SELECT count(*) FROM pass_registrations r WHERE r.serial_number = p.serial_number) AS apple_devices
          FROM passes p JOIN cards c ON c.number = p.serial_number
         WHERE c.customer_id = $1 ORDER BY p.updated_at DESC
        """,
        customer_id,
    )
    return ShopperFile(
        profile=profile,
        closed=row["closed"],
        source=row["source"],
        home_store=row["home_store"],
        created_at=row["created_at"],
        now=None if row["closed"] else await customers.identify_customer(conn, customer_id, now),
        cards=[msgspec.convert(dict(r), CardRecord) for r in cards],
        orders=[
            OrderRecord(
                order_id=r["order_id"],
                store=r["store"],
                channel=r["channel"],
                purchased_at=r["purchased_at"],
                subtotal=r["subtotal"],
                discount=r["discount"],
                paid=r["paid"],
                redeemed_points=r["redeemed_points"],
                accrued_points=r["accrued_points"],
                refunded_amount=r["refunded_amount"],
                refunds=msgspec.json.decode(
                    r["refunds"] if isinstance(r["refunds"], str | bytes) else msgspec.json.encode(r["refunds"]),
                    type=list[RefundRecord],
                ),
            )
            for r in order_rows
        ],
        passes=[msgspec.convert(dict(r), PassRecord) for r in passes],
    )


async def resend_card_link(conn: Connection, customers: CustomerService, customer_id: UUID, now: datetime) -> str:
    """Send the shopper the link to their card again (a lost SMS, a new phone); returns the card number.
    Repeats within the same minute send one message (a double click), later ones another."""
    row = await conn.fetchrow(
        """
        SELECT cu.phone, c.number FROM customers cu
          JOIN cards c ON c.customer_id = cu.id AND c.status = 'active'
         WHERE cu.id = $1 AND cu.merged_into IS NULL AND cu.closed_at IS NULL
        """,
        customer_id,
    )
    if row is None:
        raise Conflict(f"customer {customer_id} has no active card to send", field="id")
    if row["phone"] is None:
        raise InvalidInput("a no-name card has no phone to send its link to", field="phone")
    minute = int(now.timestamp()) // 60
    await customers.events.card_issued(
        conn, customer_id=customer_id, card_number=row["number"], now=now, ref=f"resend:{minute}"
    )
    number: str = row["number"]
    return number
