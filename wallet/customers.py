"""Customers and their cards: registration on every path, no-name cards and merging them into a phone's
card, identification at the till, blocking and replacing a card.

Registration is idempotent by phone: ``INSERT ... ON CONFLICT (phone) DO NOTHING`` lets PostgreSQL
settle races (a second transaction waits for the first and then sees its row), so twenty tills
registering one phone at once still make one customer and one card.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import asyncpg
import msgspec

from kartka.clock import Clock
from kartka.db import Connection
from wallet.cards import generate_card_number, is_valid_card_number
from wallet.errors import CardBlocked, CardClosed, CardNotFound, CardOwnedElsewhere, CustomerNotFound
from wallet.events import WalletEvents
from wallet.ledger import (
    BALANCE_SQL,
    SPEND_SQL,
    Account,
    balance_from,
    drop_dead_account,
    lock_account,
    merge_accounts,
    spend,
)
from wallet.models import (
    Attachment,
    Card,
    CardStatus,
    Customer,
    Identification,
    Outcome,
    Registration,
    Replacement,
    Source,
)
from wallet.phones import normalize_phone, try_normalize_phone
from wallet.profile import clean_email, clean_name
from wallet.program import Program
from wallet.qrtokens import QrTokens, looks_like_token
from wallet.tiers import tier_view, upgrade_if_earned

_CARD_ATTEMPTS: Final = 20
_MAX_REPLACEMENT_HOPS: Final = 8
_OWNER_ATTEMPTS: Final = 3
_SEPARATORS = re.compile(r"[\s\-]")


class Origin(msgspec.Struct, frozen=True):
    """Who registered the customer and where: recorded with every registration."""

    source: Source
    store: str | None = None
    terminal: str | None = None
    api_key_id: str | None = None
    actor: str | None = None
    """Staff acting by hand (``staff:<id>``, ``api_key:<id>``)."""


def _identify_sql(program: Program) -> tuple[str, str, str]:
    """The identify queries (by card number, by phone, by customer id): the card, its customer, tier and
    balance in one round trip. Parameters: $1 the card number, phone or id, $2 now. The program's periods
    are validated integers, written into the SQL so each request sends two parameters instead of four."""
    soon = f"($2 + interval '{int(program.expiring_soon_days)} days')"
    since = f"($2 - interval '{int(program.tier_window_days)} days')"
    view = f"""
        a.tier_code, coalesce(a.debt, 0) AS debt, b.*, s.spend
          FROM {{source}}
          LEFT JOIN accounts a ON a.customer_id = cu.id
         CROSS JOIN LATERAL ({BALANCE_SQL.format(now="$2", soon=soon, customer="cu.id")}) b
         CROSS JOIN LATERAL ({SPEND_SQL.format(customer="cu.id", since=since)}) s
    """
    by_card = (
        "SELECT cu.id, cu.phone, cu.name, c.number, c.status, c.replaced_by,"
        + view.format(source="cards c JOIN customers cu ON cu.id = c.customer_id")
        + " WHERE c.number = $1"
    )
    by_customer = "SELECT cu.id, cu.phone, cu.name, c.number, c.status," + view.format(
        source="customers cu JOIN LATERAL (SELECT number, status FROM cards WHERE customer_id = cu.id "
        "ORDER BY status = 'active' DESC, issued_at DESC LIMIT 1) c ON true"
    )
    return by_card, by_customer + " WHERE cu.phone = $1", by_customer + " WHERE cu.id = $1"


_RESOLVE_BY_CARD = """
    SELECT cu.id, cu.phone, cu.name, c.number, c.status, c.replaced_by
      FROM cards c JOIN customers cu ON cu.id = c.customer_id WHERE c.number = $1
"""
_RESOLVE_BY_PHONE = """
    SELECT cu.id, cu.phone, cu.name, c.number, c.status
      FROM customers cu JOIN LATERAL (SELECT number, status FROM cards WHERE customer_id = cu.id
                                      ORDER BY status = 'active' DESC, issued_at DESC LIMIT 1) c ON true
     WHERE cu.phone = $1
"""

_CURRENT_CARD = """
    SELECT number, status FROM cards WHERE customer_id = $1
    ORDER BY status = 'active' DESC, issued_at DESC LIMIT 1
"""


class CustomerService:
    """Registration, identification, attaching (merging) no-name cards, blocking and replacing cards.
    Methods take the caller's connection (and transaction)."""

    def __init__(
        self,
        *,
        region: str,
        card_prefix: str,
        program: Program,
        events: WalletEvents,
        clock: Clock,
        qr_tokens: QrTokens | None = None,
    ) -> None:
        self.region = region
        self.card_prefix = card_prefix
        self.program = program
        self.events = events
        self.clock = clock
        self.qr_tokens = qr_tokens
        self._by_card_sql, self._by_phone_sql, self._by_customer_sql = _identify_sql(program)

    # -- registration -------------------------------------------------------------------------

    async def register(
        self,
        conn: Connection,
        *,
        phone: str,
        origin: Origin,
        name: str | None = None,
        email: str | None = None,
        language: str | None = None,
    ) -> Registration:
        """``language`` (``ru``/``en``), when known, is what the shopper's messages are written in."""
        e164 = normalize_phone(phone, self.region)
        name = clean_name(name)
        email = clean_email(email)
        row = await conn.fetchrow(
            """
            INSERT INTO customers (phone, name, email, source, home_store, language) VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (phone) DO NOTHING
            RETURNING id, phone, name
            """,
            e164,
            name,
            email,
            origin.source.value,
            origin.store,
            language if language in ("ru", "en") else None,
        )
        if row is not None:
            customer = _customer(row)
            card = await self._issue_card(conn, customer.id)
            await _record(conn, customer.id, card.number, origin, Outcome.CREATED)
            await self.events.card_issued(conn, customer_id=customer.id, card_number=card.number, now=self.clock.now())
            return Registration(customer=customer, card=card, created=True)

        # Known phone: fill in what we did not know yet, never overwrite what the customer told us.
        row = await conn.fetchrow(
            """
            WITH before AS (SELECT id, name FROM customers WHERE phone = $1 FOR UPDATE)
            UPDATE customers c
               SET name = coalesce(c.name, $2), email = coalesce(c.email, $3),
                   updated_at = CASE WHEN (c.name IS NULL AND $2::text IS NOT NULL)
                                       OR (c.email IS NULL AND $3::text IS NOT NULL)
                                     THEN now() ELSE c.updated_at END
              FROM before WHERE c.id = before.id
            RETURNING c.id, c.phone, c.name, before.name IS NULL AND c.name IS NOT NULL AS named
            """,
            e164,
            name,
            email,
        )
        assert row is not None, "a phone that conflicted on insert exists"
        customer = _customer(row)
        card = await self._current_card(conn, customer.id)
        await _record(conn, customer.id, card.number, origin, Outcome.EXISTING)
        if row["named"]:  # the passes show the holder's name
            await self.events.cards_changed(conn, customer_ids=[customer.id], now=self.clock.now())
        return Registration(customer=customer, card=card, created=False)

    async def issue_anonymous_card(self, conn: Connection, *, origin: Origin) -> Registration:
        row = await conn.fetchrow(
            "INSERT INTO customers (source, home_store) VALUES ($1, $2) RETURNING id, phone, name",
            origin.source.value,
            origin.store,
        )
        assert row is not None
        customer = _customer(row)
        card = await self._issue_card(conn, customer.id)
        await _record(conn, customer.id, card.number, origin, Outcome.CREATED)
        return Registration(customer=customer, card=card, created=True)

    async def attach_card(
        self,
        conn: Connection,
        *,
        number: str,
        phone: str,
        origin: Origin,
        now: datetime,
        name: str | None = None,
    ) -> Attachment:
        """Give a no-name card a phone.

        If the phone is new, the card's customer takes it (``attached``). If the phone already has a
        customer, the no-name customer is merged into it (``merged``): its points, orders and history
        move over, and nothing is lost. The phone's active card stays and the no-name card becomes
        ``replaced`` by it (scans of either find one account); if the phone has no active card (its
        card was blocked), the no-name card becomes its card. Repeating an attach answers the same.
        """
        e164 = normalize_phone(phone, self.region)
        name = clean_name(name)
        number = _card_digits(number)
        owner_id = await conn.fetchval("SELECT customer_id FROM cards WHERE number = $1", number)
        if owner_id is None:
            raise CardNotFound(f"no card with number {number}", field="number")
        # The account first, as a purchase takes it first: the same lock order everywhere, no deadlock.
        await lock_account(conn, owner_id, self.program)
        card_row = await conn.fetchrow(
            """
            SELECT c.number, c.status, c.customer_id, cu.phone
              FROM cards c JOIN customers cu ON cu.id = c.customer_id
             WHERE c.number = $1
               FOR UPDATE OF c, cu
            """,
            number,
        )
        if card_row is None or card_row["customer_id"] != owner_id:
            raise CardOwnedElsewhere(f"card {number} changed hands meanwhile; retry", field="number")
        if card_row["status"] == CardStatus.REPLACED:
            return await self._merged_already(conn, number, e164)
        if card_row["status"] != CardStatus.ACTIVE:
            raise CardBlocked(f"card {number} is {card_row['status']} and cannot be attached", field="number")
        if card_row["phone"] is not None:
            if card_row["phone"] != e164:
                raise CardOwnedElsewhere(f"card {number} already belongs to another customer", field="number")
            row = await conn.fetchrow("SELECT id, phone, name FROM customers WHERE id = $1", card_row["customer_id"])
            assert row is not None
            card = Card(number=number, status=CardStatus.ACTIVE)
            return Attachment(customer=_customer(row), card=card, created=False, outcome=Outcome.ATTACHED)

        anonymous_id: UUID = card_row["customer_id"]
        try:
            async with conn.transaction():  # a savepoint: a concurrent registration may take the phone
                row = await conn.fetchrow(
                    """
                    UPDATE customers SET phone = $2, name = coalesce(name, $3), updated_at = now()
                     WHERE id = $1 RETURNING id, phone, name
                    """,
                    anonymous_id,
                    e164,
                    name,
                )
        except asyncpg.UniqueViolationError:
            row = None
        if row is not None:
            customer = _customer(row)
            card = Card(number=number, status=CardStatus.ACTIVE)
            await _record(conn, customer.id, number, origin, Outcome.ATTACHED)
            await self.events.card_issued(conn, customer_id=customer.id, card_number=number, now=now)
            await self.events.cards_changed(conn, customer_ids=[customer.id], now=now)
            return Attachment(customer=customer, card=card, created=False, outcome=Outcome.ATTACHED)

        owner = await conn.fetchrow(
            """
            UPDATE customers SET name = coalesce(name, $2), updated_at = now() WHERE phone = $1
            RETURNING id, phone, name
            """,
            e164,
            name,
        )
        assert owner is not None, "the phone that conflicted exists"
        customer = _customer(owner)
        kept = await self._current_card(conn, customer.id)
        await conn.execute(
            "UPDATE customers SET merged_into = $2, updated_at = now() WHERE id = $1",
            anonymous_id,
            customer.id,
        )
        await merge_accounts(conn, self.program, source=anonymous_id, target=customer.id)
        # The no-name card's purchases count towards the kept account's tier from now on.
        account = await lock_account(conn, customer.id, self.program)
        upgraded = await upgrade_if_earned(
            conn,
            self.program,
            customer_id=customer.id,
            current=account.tier_code,
            spend=await spend(conn, customer.id, self.program.tier_window_start(now)),
            now=now,
            order_pk=None,
        )
        if upgraded is not None:
            await self.events.tier_upgraded(
                conn, customer_id=customer.id, tier=upgraded, ref=f"merge:{number}", now=now
            )
        # The kept account's passes show the merged points; the no-name card's own pass goes void.
        await self.events.cards_changed(conn, customer_ids=[customer.id], now=now, cards=[number])
        if kept.status != CardStatus.ACTIVE:  # the phone's card was blocked: the no-name card takes over
            await conn.execute("UPDATE cards SET customer_id = $2 WHERE number = $1", number, customer.id)
            await _record(conn, customer.id, number, origin, Outcome.MERGED)
            card = Card(number=number, status=CardStatus.ACTIVE)
            return Attachment(customer=customer, card=card, created=False, outcome=Outcome.MERGED)
        await conn.execute(
            """
            UPDATE cards SET status = 'replaced', replaced_by = $2, status_changed_at = $3
             WHERE number = $1
            """,
            number,
            kept.number,
            now,
        )
        await _record(conn, customer.id, number, origin, Outcome.MERGED)
        return _merged(customer, kept, number)

    async def block_card(self, conn: Connection, number: str, *, now: datetime) -> Card:
        """Block a card (lost, misused): tills refuse it and its wallet passes go void. Blocking twice is
        a no-op; a replaced or closed card cannot be blocked."""
        number = _card_digits(number)
        await self._lock_owner(conn, number)
        status = await conn.fetchval("SELECT status FROM cards WHERE number = $1 FOR UPDATE", number)
        if status == CardStatus.ACTIVE:
            await conn.execute(
                "UPDATE cards SET status = 'blocked', status_changed_at = $2 WHERE number = $1", number, now
            )
            await self.events.cards_changed(conn, customer_ids=[], now=now, cards=[number])
        elif status != CardStatus.BLOCKED:
            raise CardBlocked(f"card {number} is {status} and cannot be blocked", field="number")
        return Card(number=number, status=CardStatus.BLOCKED)

    async def replace_card(self, conn: Connection, number: str, *, now: datetime) -> Replacement:
        """A new card for the same account (a lost or leaked one): the old number is blocked for good and
        its passes go void; the shopper gets a link to the new card. Repeating it answers the same."""
        number = _card_digits(number)
        owner = await self._lock_owner(conn, number)
        old = await conn.fetchrow("SELECT status, replaced_by FROM cards WHERE number = $1 FOR UPDATE", number)
        assert old is not None
        customer_row = await conn.fetchrow("SELECT id, phone, name FROM customers WHERE id = $1", owner)
        assert customer_row is not None
        customer = _customer(customer_row)
        if old["status"] == CardStatus.BLOCKED and old["replaced_by"] is not None:
            current = await self._current_card(conn, owner)
            return Replacement(customer=customer, card=current, replaced_card=Card(number, CardStatus.BLOCKED))
        if old["status"] not in (CardStatus.ACTIVE, CardStatus.BLOCKED):
            raise CardBlocked(f"card {number} is {old['status']} and cannot be replaced", field="number")
        await conn.execute(
            "UPDATE cards SET status = 'blocked', status_changed_at = coalesce(status_changed_at, $2) "
            "WHERE number = $1 AND status = 'active'",
            number,
            now,
        )
        card = await self._issue_card(conn, owner)
        await conn.execute("UPDATE cards SET replaced_by = $2 WHERE number = $1", number, card.number)
        await _record(conn, owner, card.number, Origin(source=Source.MANUAL), Outcome.CREATED)
        await self.events.card_issued(conn, customer_id=owner, card_number=card.number, now=now)
        await self.events.cards_changed(conn, customer_ids=[], now=now, cards=[number])
        return Replacement(customer=customer, card=card, replaced_card=Card(number, CardStatus.BLOCKED))

    async def _lock_owner(self, conn: Connection, number: str) -> UUID:
        owner: UUID | None = await conn.fetchval("SELECT customer_id FROM cards WHERE number = $1", number)
        if owner is None:
            raise CardNotFound(f"no card with number {number}", field="number")
        await lock_account(conn, owner, self.program)
        if await conn.fetchval("SELECT customer_id FROM cards WHERE number = $1", number) != owner:
            raise CardOwnedElsewhere(f"card {number} changed hands meanwhile; retry", field="number")
        return owner

    async def _merged_already(self, conn: Connection, number: str, e164: str) -> Attachment:
        """A retry of an attach that merged this card: the same answer, if it was this phone."""
        row = await conn.fetchrow(
            """
            SELECT cu.id, cu.phone, cu.name FROM cards c JOIN customers anon ON anon.id = c.customer_id
              JOIN customers cu ON cu.id = anon.merged_into
             WHERE c.number = $1
            """,
            number,
        )
        if row is None or row["phone"] != e164:
            raise CardOwnedElsewhere(f"card {number} was replaced and belongs to another customer now", field="number")
        customer = _customer(row)
        return _merged(customer, await self._current_card(conn, customer.id), number)

    # -- identification -----------------------------------------------------------------------

    async def identify(self, conn: Connection, code: str, now: datetime) -> Identification:
        """Find the account behind what a till scanned or typed: a card number or a phone.

        One round trip: the card, its customer, the tier and the balance at ``now``.
        """
        row = await self._find(conn, code, self._by_card_sql, self._by_phone_sql, now)
        return self._identification(row)

    async def identify_customer(self, conn: Connection, customer_id: UUID, now: datetime) -> Identification:
        """What identify shows, for a customer known by id (the app's signed-in shopper)."""
        row = await conn.fetchrow(self._by_customer_sql, customer_id, now)
        if row is None:
            raise CustomerNotFound(f"no customer with id {customer_id}", field="id")
        return self._identification(row)

    async def resolve(self, conn: Connection, code: str) -> tuple[Customer, Card]:
        """Who a card or phone belongs to, without the balance: for writes, which read the balance
        themselves once the account is locked."""
        row = await self._find(conn, code, _RESOLVE_BY_CARD, _RESOLVE_BY_PHONE)
        return _customer(row), Card(number=row["number"], status=CardStatus(row["status"]))

    async def lock_card_owner(self, conn: Connection, code: str) -> tuple[Customer, Card, Account]:
        """Who a card or phone belongs to, with that customer's account locked: the start of every write
        that begins with a card (a purchase). The card is looked up again once the lock is held: a merge
        or a closing that committed while the lock was awaited has moved or closed the card by then, and
        the write goes to the new owner (or is refused) instead of landing on an account nobody sees.
        Holding the owner's lock, the card cannot move again (every move locks it)."""
        customer, card = await self.resolve(conn, code)
        for _ in range(_OWNER_ATTEMPTS):
            account = await lock_account(conn, customer.id, self.program)
            # Resolving never finds a merged-away or closed customer: the same owner means a live account.
            owner, card = await self.resolve(conn, code)
            if owner.id == customer.id:
                return owner, card, account
            await drop_dead_account(conn, customer.id)
            customer = owner
        raise CardOwnedElsewhere("the card keeps changing hands; retry", field="code")  # pragma: no cover

    async def _find(self, conn: Connection, code: str, by_card: str, by_phone: str, *args: Any) -> asyncpg.Record:
        text = code.strip()
        if self.qr_tokens is not None and looks_like_token(text):  # the app's short-lived QR
            number = self.qr_tokens.card_number(text, self.clock.now())
            found = await self._by_card(conn, number, by_card, args)
            if found is None:
                raise CardNotFound("the card this app QR code names no longer exists", field="code")
            return found
        digits = text if len(text) == 13 else _SEPARATORS.sub("", text)  # a scan is 13 digits already
        check_digit_wrong = False
        if len(digits) == 13 and digits.isdigit():
            if is_valid_card_number(digits):
                found = await self._by_card(conn, digits, by_card, args)
                if found is not None:
                    return found
            else:
                check_digit_wrong = True
        phone = try_normalize_phone(text, self.region)
        if phone is not None:
            row: asyncpg.Record | None = await conn.fetchrow(by_phone, phone, *args)
            if row is not None:
                if row["status"] == CardStatus.BLOCKED:
                    raise CardBlocked(f"the card of {phone} is blocked", field="code", card=row["number"])
                return row
        hint = " (its check digit is wrong: was it mistyped?)" if check_digit_wrong else ""
        raise CardNotFound(f"no card or customer matches {text!r}{hint}", field="code")

    async def _by_card(self, conn: Connection, number: str, sql: str, args: tuple[Any, ...]) -> asyncpg.Record | None:
        for _ in range(_MAX_REPLACEMENT_HOPS):
            row: asyncpg.Record | None = await conn.fetchrow(sql, number, *args)
            if row is None:
                return None
            if row["status"] == CardStatus.REPLACED:
                number = row["replaced_by"]
                continue
            if row["status"] == CardStatus.BLOCKED:
                raise CardBlocked(f"card {number} is blocked", field="code", card=number)
            if row["status"] == CardStatus.CLOSED:
                raise CardClosed(f"card {number} was closed by its owner", field="code", card=number)
            return row
        raise CardBlocked(f"card {number} is replaced too many times", field="code")  # pragma: no cover

    def _identification(self, row: asyncpg.Record) -> Identification:
        return Identification(
            customer=_customer(row),
            card=Card(number=row["number"], status=CardStatus(row["status"])),
            tier=tier_view(self.program, row["tier_code"] or self.program.base_tier.code, row["spend"]),
            balance=balance_from(row, row["debt"]),
        )

    async def get_customer(self, conn: Connection, customer_id: UUID) -> Customer:
        row = await conn.fetchrow("SELECT id, phone, name, merged_into FROM customers WHERE id = $1", customer_id)
        if row is None:
            raise CustomerNotFound(f"no customer with id {customer_id}", field="id")
        if row["merged_into"] is not None:
            raise CustomerNotFound(
                f"customer {customer_id} was merged into {row['merged_into']}",
                field="id",
                merged_into=str(row["merged_into"]),
            )
        return _customer(row)

    # -- cards ---------------------------------------------------------------------------------

    async def _issue_card(self, conn: Connection, customer_id: UUID) -> Card:
        for _ in range(_CARD_ATTEMPTS):
            number = await conn.fetchval(
                """
                INSERT INTO cards (number, customer_id) VALUES ($1, $2)
                ON CONFLICT (number) DO NOTHING RETURNING number
                """,
                generate_card_number(self.card_prefix),
                customer_id,
            )
            if number is not None:
                return Card(number=number, status=CardStatus.ACTIVE)
        raise RuntimeError("could not draw a free card number; widen the number space (shorter prefix)")

    async def _current_card(self, conn: Connection, customer_id: UUID) -> Card:
        row = await conn.fetchrow(_CURRENT_CARD, customer_id)
        if row is None:  # an account without any card (should not happen): give it one
            return await self._issue_card(conn, customer_id)
        return Card(number=row["number"], status=CardStatus(row["status"]))


def _customer(row: asyncpg.Record | dict[str, Any]) -> Customer:
    return Customer(id=row["id"], phone=row["phone"], name=row["name"])


def _merged(customer: Customer, kept: Card, replaced: str) -> Attachment:
    return Attachment(
        customer=customer,
        card=kept,
        created=False,
        outcome=Outcome.MERGED,
        replaced_card=Card(number=replaced, status=CardStatus.REPLACED),
    )


def _card_digits(number: str) -> str:
    digits = _SEPARATORS.sub("", number)
    if not is_valid_card_number(digits):
        raise CardNotFound(f"{number!r} is not a card number (13 digits with a valid check digit)", field="number")
    return digits


async def _record(conn: Connection, customer_id: UUID, card: str, origin: Origin, outcome: Outcome) -> None:
    await conn.execute(
        """
        INSERT INTO registrations (customer_id, card_number, source, outcome, store, terminal, api_key_id, actor)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        customer_id,
        card,
        origin.source.value,
        outcome.value,
        origin.store,
        origin.terminal,
        origin.api_key_id,
        origin.actor,
    )
