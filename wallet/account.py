"""The shopper's own account, as the app sees it: profile, card, tier and balance; edits; closing it.

Closing keeps the books whole and forgets the person: the points still on the account are written off
and any debt forgiven (two ledger adjustments, so the ledger still balances), the card is closed (a
till scanning it is told so) and its page link dies, and every field that names or reaches the person
is erased — phone, name, e-mail, birthday, devices, preferences, pending sign-in codes, the addresses
on past and queued messages — and every session ends. Orders, the ledger and registrations stay,
pointing at an anonymous customer, because the business must still account for them; the phone is
free to join again as a new customer.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from kartka.db import Connection
from kartka.errors import InvalidInput
from kartka.tokens import SubjectKind, revoke_sessions
from wallet import ledger
from wallet.customers import CustomerService
from wallet.errors import CustomerNotFound
from wallet.models import BalanceView, Card, TierView
from wallet.profile import clean_email, clean_name

Language = Literal["ru", "en"]


class Profile(msgspec.Struct, frozen=True):
    id: UUID
    phone: str | None
    name: str | None
    email: str | None
    birthday: date | None
    language: Language | None


class Me(msgspec.Struct, frozen=True):
    """``card``, ``tier`` and ``balance`` are exactly what the till's identify shows."""

    profile: Profile
    card: Card
    tier: TierView
    balance: BalanceView


class ProfileUpdate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Fields left out stay as they are; ``null`` clears ``name``, ``email`` and ``birthday``."""

    name: Annotated[str, msgspec.Meta(max_length=200)] | msgspec.UnsetType | None = msgspec.UNSET
    email: Annotated[str, msgspec.Meta(max_length=254)] | msgspec.UnsetType | None = msgspec.UNSET
    birthday: date | msgspec.UnsetType | None = msgspec.UNSET
    language: Language | msgspec.UnsetType = msgspec.UNSET


_PROFILE = "SELECT id, phone, name, email, birthday, language FROM customers WHERE id = $1 AND closed_at IS NULL"


async def me(conn: Connection, customers: CustomerService, customer_id: UUID, now: datetime) -> Me:
    row = await conn.fetchrow(_PROFILE, customer_id)
    if row is None:
        raise CustomerNotFound("this account no longer exists", field="id")
    who = await customers.identify_customer(conn, customer_id, now)
    return Me(profile=msgspec.convert(dict(row), Profile), card=who.card, tier=who.tier, balance=who.balance)


async def update_profile(
    conn: Connection, customers: CustomerService, customer_id: UUID, change: ProfileUpdate, now: datetime
) -> Me:
    sets: list[str] = []
    values: list[object] = []

    def assign(column: str, value: object) -> None:
        values.append(value)
        sets.append(f"{column} = ${len(values) + 1}")

    if change.name is not msgspec.UNSET:
        assign("name", clean_name(change.name))
    if change.email is not msgspec.UNSET:
        assign("email", clean_email(change.email))
    if change.birthday is not msgspec.UNSET:
        if change.birthday is not None:
            today = now.astimezone(customers.program.zone).date()
            if change.birthday > today or change.birthday.year < 1900:
                raise InvalidInput("a birthday is a date in the past, from 1900 on", field="birthday")
        assign("birthday", change.birthday)
        values.append(now)  # a new date restarts the birthday bonus's notice period (program.birthday_notice_days)
        sets.append(
            f"birthday_set_at = CASE WHEN before.birthday IS DISTINCT FROM ${len(values)} THEN ${len(values) + 1} "
            "ELSE c.birthday_set_at END"
        )
    if change.language is not msgspec.UNSET:
        assign("language", change.language)
    if sets:
        # The passes show the name and speak the language: they change only if either really did.
        row = await conn.fetchrow(
            f"""
            WITH before AS (
                SELECT id, name, language, birthday FROM customers WHERE id = $1 AND closed_at IS NULL FOR UPDATE
            )
            UPDATE customers c SET {", ".join(sets)}, updated_at = now() FROM before WHERE c.id = before.id
            RETURNING before.name IS DISTINCT FROM c.name OR before.language IS DISTINCT FROM c.language AS shown
            """,
            customer_id,
            *values,
        )
        if row is None:
            raise CustomerNotFound("this account no longer exists", field="id")
        if row["shown"]:
            await customers.events.cards_changed(conn, customer_ids=[customer_id], now=now)
    return await me(conn, customers, customer_id, now)


async def close_account(conn: Connection, customers: CustomerService, customer_id: UUID, now: datetime) -> None:
    """Close the account for good (see the module docstring). Idempotent: closing twice is a no-op."""
    account = await ledger.lock_account(conn, customer_id, customers.program)
    row = await conn.fetchrow("SELECT phone, closed_at FROM customers WHERE id = $1 FOR UPDATE", customer_id)
    if row is None:
        raise CustomerNotFound("this account does not exist", field="id")
    if row["closed_at"] is not None:
        return
    phone: str | None = row["phone"]
    actor = f"customer:{customer_id}"
    await ledger.forfeit_all(conn, account, now=now, reason="account closed by its owner", actor=actor)
    numbers = await conn.fetch(
        """
        UPDATE cards SET status = 'closed', status_changed_at = $2, page_token = DEFAULT
         WHERE customer_id = $1 AND status = 'active' RETURNING number
        """,
        customer_id,
        now,
    )
    await conn.execute(
        """
        UPDATE customers SET phone = NULL, name = NULL, email = NULL, birthday = NULL, language = NULL,
                             closed_at = $2, updated_at = $2
         WHERE id = $1
        """,
        customer_id,
        now,
    )
    if phone is not None:
        await conn.execute("DELETE FROM signin_codes WHERE phone = $1", phone)
    await revoke_sessions(conn, SubjectKind.CUSTOMER, customer_id, now, "account closed")
    # Who reaches the shopper (preferences, devices, message addresses) is the notifications' to forget.
    await customers.events.account_closed(conn, customer_id=customer_id, phone=phone, now=now)
    if numbers:
        await customers.events.cards_changed(conn, customer_ids=[], now=now, cards=[r["number"] for r in numbers])
