"""Cards in phones' wallets: building the passes, the PassKit web service's bookkeeping, and telling
which passes changed.

A card gets a ``passes`` row the first time a pass of it is asked for: its Apple authentication token
(random, fixed for the serial's life) and its update tag. :func:`touch` moves the tag and
``updated_at`` of a customer's passes whenever something a pass shows changes (balance, tier, pending
points becoming available, points entering "expiring soon", the card's status, the holder's name) and
says which devices to push to; the notifier turns that into outbox rows in the same transaction. A
phone that gets the push asks the web service which serials changed since its last tag and fetches
those passes, built fresh from the database.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID

import asyncpg
import msgspec

from kartka.db import Connection
from kartka.errors import NotFound
from wallet.customers import CustomerService
from wallet.models import CardStatus
from wallet.passes import google as gwallet
from wallet.passes.apple import ApplePassData, PassLocation, build_pkpass
from wallet.passes.setup import BACKGROUND, AppleSetup, GoogleSetup, WalletSetup

PKPASS_MEDIA_TYPE: Final = "application/vnd.apple.pkpass"
MAX_LOCATIONS: Final = 10


class WalletNotOffered(NotFound):
    code = "wallet-not-offered"


class PassRecord(msgspec.Struct, frozen=True):
    serial_number: str
    authentication_token: str
    update_tag: int
    updated_at: datetime


class Touched(msgspec.Struct, frozen=True):
    """A pass whose content changed: its new tag, the push tokens of the devices that registered it,
    and whether its Google object is to be updated too."""

    serial_number: str
    update_tag: int
    push_tokens: list[str]
    google: bool


_RECORD_COLUMNS: Final = "serial_number, authentication_token, update_tag, updated_at"


async def touch(conn: Connection, customer_ids: Sequence[UUID], now: datetime) -> list[Touched]:
    """Move the update tag of every pass these customers' cards have; in the caller's transaction.

    ``updated_at`` (the pass's Last-Modified, whole seconds) moves by at least a second each time, so a
    phone that fetched the pass a moment before a second change still gets the newer one.
    """
    if not customer_ids:
        return []
    rows = await conn.fetch(
        """
        WITH moved AS (
            UPDATE passes p
               SET update_tag = nextval('pass_update_tags'),
                   updated_at = greatest(date_trunc('second', $2::timestamptz), p.updated_at + interval '1 second')
              FROM cards c
             WHERE c.number = p.serial_number AND c.customer_id = ANY($1::uuid[])
            RETURNING p.serial_number, p.update_tag, p.google_linked_at IS NOT NULL AS google
        )
        SELECT m.serial_number, m.update_tag, m.google,
               coalesce(array_agg(d.push_token ORDER BY d.push_token) FILTER (WHERE d.push_token IS NOT NULL), '{}')
                   AS push_tokens
          FROM moved m
          LEFT JOIN pass_registrations r ON r.serial_number = m.serial_number
          LEFT JOIN pass_devices d ON d.device_library_id = r.device_library_id
         GROUP BY m.serial_number, m.update_tag, m.google
        """,
        list(dict.fromkeys(customer_ids)),
        now,
    )
    return [msgspec.convert(dict(r), Touched) for r in rows]


async def ensure_pass(conn: Connection, card_number: str, now: datetime) -> PassRecord:
    """The card's pass record, made on first use."""
    row = await conn.fetchrow(
        f"""
        WITH made AS (
            INSERT INTO passes (serial_number, authentication_token, updated_at, created_at)
            VALUES ($1, $2, date_trunc('second', $3::timestamptz), $3)
            ON CONFLICT (serial_number) DO NOTHING
            RETURNING {_RECORD_COLUMNS}
        )
        SELECT {_RECORD_COLUMNS} FROM made
        UNION ALL
        SELECT {_RECORD_COLUMNS} FROM passes WHERE serial_number = $1 AND NOT EXISTS (SELECT FROM made)
        """,
        card_number,
        secrets.token_urlsafe(32),
        now,
    )
    assert row is not None
    return msgspec.convert(dict(row), PassRecord)


async def authorized(conn: Connection, serial_number: str, token: str) -> PassRecord | None:
    """The pass ``serial_number`` names, if ``token`` is its authentication token (compared in constant time)."""
    row = await conn.fetchrow(f"SELECT {_RECORD_COLUMNS} FROM passes WHERE serial_number = $1", serial_number)
    if row is None or not hmac.compare_digest(row["authentication_token"].encode(), token.encode()):
        return None
    return msgspec.convert(dict(row), PassRecord)


# -- the PassKit web service ---------------------------------------------------------------------


async def register_device(
    conn: Connection, device_library_id: str, serial_number: str, push_token: str, now: datetime
) -> bool:
    """Register a device for a pass's updates; True when new, False when it was registered already.
    A device's push token may change: the newest one is kept."""
    await conn.execute(
        """
        INSERT INTO pass_devices (device_library_id, push_token, updated_at) VALUES ($1, $2, $3)
        ON CONFLICT (device_library_id) DO UPDATE SET push_token = EXCLUDED.push_token, updated_at = EXCLUDED.updated_at
        """,
        device_library_id,
        push_token,
        now,
    )
    created = await conn.fetchval(
        """
        INSERT INTO pass_registrations (device_library_id, serial_number, created_at) VALUES ($1, $2, $3)
        ON CONFLICT DO NOTHING RETURNING true
        """,
        device_library_id,
        serial_number,
        now,
    )
    return bool(created)


async def unregister_device(conn: Connection, device_library_id: str, serial_number: str) -> None:
    await conn.execute(
        """
        WITH gone AS (
            DELETE FROM pass_registrations WHERE device_library_id = $1 AND serial_number = $2
        )
        DELETE FROM pass_devices d WHERE d.device_library_id = $1 AND NOT EXISTS (
            SELECT FROM pass_registrations r WHERE r.device_library_id = $1 AND r.serial_number <> $2)
        """,
        device_library_id,
        serial_number,
    )


async def updated_serials(conn: Connection, device_library_id: str, since: int | None) -> tuple[list[str], int]:
    """The serials this device registered whose tag moved past ``since`` (all of them without it), and
    the newest tag among them (the device sends it back next time)."""
    rows = await conn.fetch(
        """
        SELECT p.serial_number, p.update_tag FROM pass_registrations r
          JOIN passes p ON p.serial_number = r.serial_number
         WHERE r.device_library_id = $1 AND ($2::bigint IS NULL OR p.update_tag > $2)
         ORDER BY p.serial_number
        """,
        device_library_id,
        since,
    )
    return [r["serial_number"] for r in rows], max((r["update_tag"] for r in rows), default=since or 0)


async def forget_push_tokens(conn: Connection, push_tokens: Sequence[str]) -> None:
    """APNs says these tokens are dead (410): drop those devices' registrations, and only theirs."""
    await conn.execute("DELETE FROM pass_devices WHERE push_token = ANY($1::text[])", list(push_tokens))


# -- building passes -----------------------------------------------------------------------------

_CARD: Final = """
    SELECT c.number, c.status, c.customer_id, c.page_token, cu.name, cu.language, cu.home_store
      FROM cards c JOIN customers cu ON cu.id = c.customer_id
     WHERE c.number = $1
"""


class Passes:
    """Builds a card's Apple pass and Google object from the database, as they are right now."""

    def __init__(self, *, setup: WalletSetup, customers: CustomerService, public_base: str) -> None:
        self.setup = setup
        self.customers = customers
        self.program = customers.program
        self.public_base = public_base.rstrip("/")

    @property
    def apple(self) -> AppleSetup:
        if self.setup.apple is None:
            raise WalletNotOffered("Apple Wallet passes are not offered here (no Pass Type ID certificate)")
        return self.setup.apple

    @property
    def google(self) -> GoogleSetup:
        if self.setup.google is None:
            raise WalletNotOffered("Google Wallet passes are not offered here (no issuer account)")
        return self.setup.google

    def card_page_url(self, page_token: str) -> str:
        return f"{self.public_base}/c/{page_token}"

    async def _card(self, conn: Connection, card_number: str) -> asyncpg.Record:
        card: asyncpg.Record | None = await conn.fetchrow(_CARD, card_number)
        if card is None:
            raise NotFound(f"no card {card_number}", field="serial_number")
        return card

    async def apple_pass(
        self, conn: Connection, card_number: str, now: datetime, record: PassRecord | None = None
    ) -> tuple[bytes, PassRecord]:
        """The signed .pkpass of a card and its pass record (made on first use unless given)."""
        apple = self.apple
        record = record or await ensure_pass(conn, card_number, now)
        card = await self._card(conn, card_number)
        who = await self.customers.identify_customer(conn, card["customer_id"], now)
        active = card["status"] == CardStatus.ACTIVE
        program = self.program
        data = ApplePassData(
            serial_number=record.serial_number,
            authentication_token=record.authentication_token,
            web_service_url=apple.web_service_url,
            card_number=card["number"],
            balance=who.balance,
            tier=who.tier,
            holder_name=card["name"],
            barcode=apple.barcode.value,
            locations=await self._locations(conn, card["home_store"]),
            voided=not active,
            card_page_url=self.card_page_url(card["page_token"]) if active else None,
            organization_name=apple.organization,
            background_color=BACKGROUND,
            timezone=program.timezone,
            currency=program.currency,
            pending_hours=program.pending_hours,
            expiry_months=program.expiry_months,
            redeem_cap_bp=program.redeem_cap_bp,
            tier_window_days=program.tier_window_days,
            number_locale=program.language,
        )
        return build_pkpass(data, apple.identity), record

    async def _locations(self, conn: Connection, home_store: str | None) -> tuple[PassLocation, ...]:
        rows = await conn.fetch(
            """
            SELECT name, latitude, longitude FROM stores WHERE latitude IS NOT NULL
             ORDER BY code = $1 DESC NULLS LAST, name LIMIT $2
            """,
            home_store,
            MAX_LOCATIONS,
        )
        return tuple(PassLocation(r["latitude"], r["longitude"], r["name"]) for r in rows)

    async def google_save_url(self, conn: Connection, card_number: str, now: datetime) -> str:
        """An "Add to Google Wallet" link; from now on the card's Google object is kept up to date."""
        setup = self.google
        await ensure_pass(conn, card_number, now)
        await conn.execute(
            "UPDATE passes SET google_linked_at = coalesce(google_linked_at, $2) WHERE serial_number = $1",
            card_number,
            now,
        )
        data = await self._google_data(conn, await self._card(conn, card_number), now)
        return gwallet.save_url(setup.config, setup.service_account, data, now=int(now.timestamp()))

    async def google_objects(self, conn: Connection, numbers: Sequence[str], now: datetime) -> dict[str, Any]:
        """The current Google loyalty object of each card (None for a card that is gone)."""
        setup = self.google
        objects: dict[str, dict[str, Any] | None] = dict.fromkeys(numbers)
        for number in numbers:
            card = await conn.fetchrow(_CARD, number)
            if card is not None:
                objects[number] = gwallet.loyalty_object(setup.config, await self._google_data(conn, card, now))
        return objects

    async def _google_data(self, conn: Connection, card: asyncpg.Record, now: datetime) -> gwallet.GooglePassData:
        who = await self.customers.identify_customer(conn, card["customer_id"], now)
        active = card["status"] == CardStatus.ACTIVE
        return gwallet.GooglePassData(
            card_number=card["number"],
            balance=who.balance,
            tier=who.tier,
            active=active,
            holder_name=card["name"],
            card_page_url=self.card_page_url(card["page_token"]) if active else None,
            language=card["language"] or self.program.language,
        )


def whole_seconds(moment: datetime) -> datetime:
    return moment - timedelta(microseconds=moment.microsecond)
