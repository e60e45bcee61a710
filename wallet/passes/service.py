"""Cards in phones' wallets: building the passes, the PassKit web service's bookkeeping, and telling
which passes changed.

A card gets a ``passes`` row the first time a pass of it is asked for: its serial (the card number),
its Apple authentication token (random, fixed for the serial's life) and its update tag. Rotating the
card-page link retires that pass (it goes void on the phones holding it and shows nothing of the
account any more: whoever had the old link loses the live pass) and the next download makes a new
pass, with a new serial and token, as a replaced card does. :func:`touch` moves the tag and
``updated_at`` of a customer's passes whenever something a pass shows changes (balance, tier, pending
points becoming available, points entering "expiring soon", the card's status, the holder's name) and
says which devices to push to; the notifier turns that into outbox rows in the same transaction. A
phone that gets the push asks the web service which serials changed since its last tag and fetches
those passes, built fresh from the database.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID

import asyncpg
import msgspec

from kartka.db import Connection
from kartka.errors import NotFound
from wallet.cards import card_page_url
from wallet.customers import CustomerService
from wallet.models import BalanceView, CardStatus, Expiring, TierView
from wallet.passes import google as gwallet
from wallet.passes.apple import MAX_LOCATIONS, ApplePassData, PassLocation, build_pkpass
from wallet.passes.setup import BACKGROUND, AppleSetup, GoogleSetup, WalletSetup
from wallet.tiers import tier_view

PKPASS_MEDIA_TYPE: Final = "application/vnd.apple.pkpass"
#: Longer than any transaction that changes passes runs (requests take milliseconds, job batches seconds).
LISTING_LOOKBACK: Final = timedelta(minutes=10)


class WalletNotOffered(NotFound):
    code = "wallet-not-offered"


class PassRecord(msgspec.Struct, frozen=True):
    serial_number: str
    card_number: str
    authentication_token: str
    update_tag: int
    updated_at: datetime
    retired_at: datetime | None = None
    """Retired by a link rotation: the pass is void and shows nothing of the account."""


class PageCard(msgspec.Struct, frozen=True):
    number: str
    status: CardStatus
    customer_id: UUID
    language: str | None


class Touched(msgspec.Struct, frozen=True):
    """A pass whose content changed: its new tag, the push tokens of the devices that registered it,
    and whether its Google object is to be updated too."""

    serial_number: str
    update_tag: int
    push_tokens: list[str]
    google: bool


_RECORD_COLUMNS: Final = "serial_number, card_number, authentication_token, update_tag, updated_at, retired_at"
_PAGE_TOKEN: Final = re.compile(r"^[0-9a-f]{32}$")
_NOTHING: Final = BalanceView(available=0, pending=0, next_available_at=None, expiring_soon=Expiring(0, None))


async def touch(
    conn: Connection, customer_ids: Sequence[UUID], now: datetime, *, cards: Sequence[str] = ()
) -> list[Touched]:
    """Move the update tag of the passes of these customers' active cards, and of ``cards`` (cards whose
    status just changed, so that their passes go void on the phones); in the caller's transaction. A
    card that stopped being active is not touched again after that: its voided pass shows nothing live.
    Nor is a retired pass (see :meth:`Passes.rotate_page_link`).

    ``updated_at`` (the pass's version: whole seconds, as If-Modified-Since compares) moves by at least
    a second each time, so a phone that fetched the pass a moment before a second change still gets the
    newer one. It runs ahead of the clock when a pass changes more than once a second; Last-Modified is
    therefore this or now, whichever is earlier (``api.controllers.passkit``), never later than Date.
    """
    if not customer_ids and not cards:
        return []
    rows = await conn.fetch(
        """
        WITH target AS (  -- locked in serial order: two jobs touching the same passes cannot deadlock
            SELECT p.serial_number FROM passes p JOIN cards c ON c.number = p.card_number
             WHERE p.retired_at IS NULL
               AND ((c.customer_id = ANY($1::uuid[]) AND c.status = 'active') OR c.number = ANY($3::text[]))
             ORDER BY p.serial_number
               FOR UPDATE OF p
        ), moved AS (
            UPDATE passes p
               SET update_tag = nextval('pass_update_tags'),
                   updated_at = greatest(date_trunc('second', $2::timestamptz), p.updated_at + interval '1 second')
              FROM target t
             WHERE p.serial_number = t.serial_number
            RETURNING p.serial_number, p.update_tag, p.google_linked_at IS NOT NULL AS google
        )
        SELECT m.serial_number, m.update_tag, m.google,
               coalesce(array_agg(d.push_token ORDER BY d.push_token) FILTER (WHERE d.push_token IS NOT NULL), '{}')
                   AS push_tokens
          FROM moved m
          LEFT JOIN pass_registrations r ON r.serial_number = m.serial_number AND r.removed_at IS NULL
          LEFT JOIN pass_devices d ON d.device_library_id = r.device_library_id
         GROUP BY m.serial_number, m.update_tag, m.google
        """,
        list(dict.fromkeys(customer_ids)),
        now,
        list(cards),
    )
    return [msgspec.convert(dict(r), Touched) for r in rows]


async def ensure_pass(conn: Connection, card_number: str, now: datetime) -> PassRecord:
    """The card's live pass record, made on first use (and after a link rotation retired the last one).

    Usually one read. A first use inserts; when another request made the row meanwhile, the insert
    waits for it and does nothing, and a fresh read (a new statement sees what committed) finds it.
    A card's first pass has the card number for serial; a later one the number and a random suffix.
    """
    select = f"SELECT {_RECORD_COLUMNS} FROM passes WHERE card_number = $1 AND retired_at IS NULL"
    row = await conn.fetchrow(select, card_number)
    if row is None:
        row = await conn.fetchrow(
            f"""
            INSERT INTO passes (serial_number, card_number, authentication_token, updated_at, created_at)
            SELECT CASE WHEN EXISTS (SELECT FROM passes WHERE serial_number = $1) THEN $1 || '-' || $4
                        ELSE $1 END,
                   $1, $2, date_trunc('second', $3::timestamptz), $3
            ON CONFLICT DO NOTHING
            RETURNING {_RECORD_COLUMNS}
            """,
            card_number,
            secrets.token_urlsafe(32),
            now,
            secrets.token_hex(8),
        ) or await conn.fetchrow(select, card_number)
    assert row is not None, "made by this statement or the one it waited for"
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
    """Register a device for a pass's updates; True when new, False when it is registered already.
    A device's push token may change: the newest one is kept. A pass the device removed before and adds
    again is a new registration (the old one stays in the history, removed)."""
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
        ON CONFLICT (device_library_id, serial_number) WHERE removed_at IS NULL DO NOTHING RETURNING true
        """,
        device_library_id,
        serial_number,
        now,
    )
    return bool(created)


async def unregister_device(conn: Connection, device_library_id: str, serial_number: str, now: datetime) -> None:
    """The phone removed the pass: its registration stops getting updates and stays in the install
    history, marked removed (``removed_by = 'device'``)."""
    await conn.execute(
        """
        UPDATE pass_registrations SET removed_at = $3, removed_by = 'device'
         WHERE device_library_id = $1 AND serial_number = $2 AND removed_at IS NULL
        """,
        device_library_id,
        serial_number,
        now,
    )


async def updated_serials(
    conn: Connection, device_library_id: str, since: datetime | None, now: datetime
) -> tuple[list[str], datetime]:
    """The serials this device registered whose pass changed after ``since`` (all of them without it),
    and the moment to send back next time (``passesUpdatedSince``).

    That moment is :data:`LISTING_LOOKBACK` before now, not the newest change seen: a change made by a
    transaction still running during this listing carries an earlier time but becomes visible later,
    and must still be listed next time. Passes that changed in the look-back are listed again; the
    phone then fetches them with If-Modified-Since and gets 304 for those that did not change since.
    """
    rows = await conn.fetch(
        """
        SELECT p.serial_number FROM pass_registrations r JOIN passes p ON p.serial_number = r.serial_number
         WHERE r.device_library_id = $1 AND r.removed_at IS NULL AND ($2::timestamptz IS NULL OR p.updated_at > $2)
         ORDER BY p.serial_number
        """,
        device_library_id,
        since,
    )
    return [r["serial_number"] for r in rows], now - LISTING_LOOKBACK


async def forget_push_tokens(conn: Connection, push_tokens: Sequence[str], now: datetime) -> None:
    """APNs says these tokens are dead (410): those devices' registrations, and only theirs, stop getting
    updates; they stay in the install history, marked removed (``removed_by = 'apns'``). A device that
    registers again later brings a new token and a new registration."""
    await conn.execute(
        """
        UPDATE pass_registrations r SET removed_at = greatest($2, r.created_at), removed_by = 'apns'
          FROM pass_devices d
         WHERE d.device_library_id = r.device_library_id AND d.push_token = ANY($1::text[])
           AND r.removed_at IS NULL
        """,
        list(push_tokens),
        now,
    )


# -- building passes -----------------------------------------------------------------------------

_CARD: Final = """
    SELECT c.number, c.status, c.customer_id, c.page_token, cu.name, cu.language, cu.home_store
      FROM cards c JOIN customers cu ON cu.id = c.customer_id
     WHERE c.number = $1
"""


class Passes:
    """Builds a card's Apple pass and Google object from the database, as they are right now."""

    def __init__(
        self,
        *,
        setup: WalletSetup,
        customers: CustomerService,
        public_base: str,
        google_api: gwallet.WalletObjects | None = None,  # None: no Google to insert into (development)
    ) -> None:
        self.setup = setup
        self.google_api = google_api
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
        return card_page_url(self.public_base, page_token)

    async def _card(self, conn: Connection, card_number: str) -> asyncpg.Record:
        card: asyncpg.Record | None = await conn.fetchrow(_CARD, card_number)
        if card is None:
            raise NotFound(f"no card {card_number}", field="serial_number")
        return card

    async def _view(
        self, conn: Connection, card: asyncpg.Record, now: datetime, *, live: bool = True
    ) -> tuple[BalanceView, TierView]:
        """What a pass of ``card`` shows: the account's balance and tier while the card is active; nothing
        of the account once it is not (a lost phone's voided pass must not keep showing its owner's points),
        nor on a retired pass (``live`` False)."""
        if card["status"] != CardStatus.ACTIVE or not live:
            base = self.program.base_tier
            return _NOTHING, tier_view(self.program, base.code, 0)
        who = await self.customers.identify_customer(conn, card["customer_id"], now)
        return who.balance, who.tier

    async def apple_pass(
        self, conn: Connection, card_number: str, now: datetime, record: PassRecord | None = None
    ) -> tuple[bytes, PassRecord]:
        """The signed .pkpass of a card and its pass record (its live one, made on first use, unless given).

        A retired pass is void and shows nothing of the account, not even the whole card number: its
        holder may be whoever had the old card-page link.
        """
        apple = self.apple
        record = record or await ensure_pass(conn, card_number, now)
        card = await self._card(conn, record.card_number)
        live = record.retired_at is None
        balance, tier = await self._view(conn, card, now, live=live)
        active = card["status"] == CardStatus.ACTIVE and live
        program = self.program
        data = ApplePassData(
            serial_number=record.serial_number,
            authentication_token=record.authentication_token,
            web_service_url=apple.web_service_url,
            card_number=card["number"] if live else _masked(card["number"]),
            balance=balance,
            tier=tier,
            holder_name=card["name"] if active else None,
            barcode=apple.barcode.value,
            locations=await self._locations(conn, card["home_store"]) if live else (),
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

    # -- the card page ----------------------------------------------------------------------------

    async def page_card(self, conn: Connection, page_token: str) -> PageCard | None:
        """The card behind a card-page link (any status; the page says when it is no longer valid)."""
        if not _PAGE_TOKEN.match(page_token):
            return None
        row = await conn.fetchrow(
            """
            SELECT c.number, c.status, c.customer_id, cu.language
              FROM cards c JOIN customers cu ON cu.id = c.customer_id
             WHERE c.page_token = $1
            """,
            page_token,
        )
        return None if row is None else msgspec.convert(dict(row), PageCard)

    async def page_link(self, conn: Connection, customer_id: UUID) -> str:
        token = await conn.fetchval(
            "SELECT page_token FROM cards WHERE customer_id = $1 AND status = 'active'", customer_id
        )
        if token is None:
            raise NotFound("this account has no active card", field="card")
        return self.card_page_url(token)

    async def rotate_page_link(self, conn: Connection, customer_id: UUID, now: datetime) -> str:
        """A new card-page address. The old link stops working at once, and the card's pass is retired:
        whoever downloaded it through the old link (or was sent it) is cut off from the live pass.

        Its update tag moves first, so the phones holding it are pushed (through the outbox, in this
        transaction) and fetch it; by then it is retired and they get it void, empty of the account.
        The next download, from the new link or the app, makes a new pass with a new serial and token.
        """
        row = await conn.fetchrow(
            """
            UPDATE cards SET page_token = DEFAULT
             WHERE customer_id = $1 AND status = 'active' RETURNING number, page_token
            """,
            customer_id,
        )
        if row is None:
            raise NotFound("this account has no active card", field="card")
        await self.customers.events.cards_changed(conn, customer_ids=[customer_id], now=now)
        await conn.execute(
            "UPDATE passes SET retired_at = $2 WHERE card_number = $1 AND retired_at IS NULL", row["number"], now
        )
        return self.card_page_url(row["page_token"])

    # -- Google -------------------------------------------------------------------------------------

    async def google_save_url(self, conn: Connection, card_number: str, now: datetime) -> str:
        """An "Add to Google Wallet" link; from now on the card's Google object is kept up to date.

        The link only names the object, which is named after the card's live pass (so a link rotation
        retires it as it does the Apple pass). The first time, the object (and the class, when the
        program's changed) is inserted through Google's API, in the caller's transaction with the pass row
        locked, so a change committing meanwhile waits and then queues a PATCH that finds the object. When
        Google does not answer, :class:`~wallet.passes.google.GoogleWalletUnavailable` and nothing is
        recorded.
        """
        setup = self.google
        record = await ensure_pass(conn, card_number, now)
        inserted = await conn.fetchval(
            "SELECT google_object_at IS NOT NULL FROM passes WHERE serial_number = $1 FOR UPDATE",
            record.serial_number,
        )
        insert = not inserted and self.google_api is not None
        if insert:
            await self._insert_google(conn, setup, card_number, record, now)
        await conn.execute(
            """
            UPDATE passes SET google_linked_at = coalesce(google_linked_at, $2),
                              google_object_at = CASE WHEN $3 THEN $2 ELSE google_object_at END
             WHERE serial_number = $1
            """,
            record.serial_number,
            now,
            insert,
        )
        return gwallet.save_url(setup.config, setup.service_account, record.serial_number, now=int(now.timestamp()))

    async def _insert_google(
        self, conn: Connection, setup: GoogleSetup, card_number: str, record: PassRecord, now: datetime
    ) -> None:
        assert self.google_api is not None
        loyalty_class = gwallet.loyalty_class(setup.config)
        digest = gwallet.digest(loyalty_class)
        known = await conn.fetchval("SELECT digest FROM google_classes WHERE class_id = $1", loyalty_class["id"])
        data = await self._google_data(conn, await self._card(conn, card_number), record, now)
        fresh_class = None if known == digest else loyalty_class  # sent once per change of the program
        await self.google_api.put(fresh_class, gwallet.loyalty_object(setup.config, data))
        if fresh_class is not None:
            await conn.execute(
                """
                INSERT INTO google_classes (class_id, digest, synced_at) VALUES ($1, $2, $3)
                ON CONFLICT (class_id) DO UPDATE SET digest = EXCLUDED.digest, synced_at = EXCLUDED.synced_at
                """,
                loyalty_class["id"],
                digest,
                now,
            )

    async def google_objects(self, conn: Connection, serials: Sequence[str], now: datetime) -> dict[str, Any]:
        """The current Google loyalty object of each pass (None for one that is gone)."""
        setup = self.google
        objects: dict[str, dict[str, Any] | None] = dict.fromkeys(serials)
        for serial in serials:
            row = await conn.fetchrow(f"SELECT {_RECORD_COLUMNS} FROM passes WHERE serial_number = $1", serial)
            if row is None:
                continue
            record = msgspec.convert(dict(row), PassRecord)
            card = await conn.fetchrow(_CARD, record.card_number)
            if card is not None:
                data = await self._google_data(conn, card, record, now)
                objects[serial] = gwallet.loyalty_object(setup.config, data)
        return objects

    async def _google_data(
        self, conn: Connection, card: asyncpg.Record, record: PassRecord, now: datetime
    ) -> gwallet.GooglePassData:
        live = record.retired_at is None
        balance, tier = await self._view(conn, card, now, live=live)
        active = card["status"] == CardStatus.ACTIVE and live
        return gwallet.GooglePassData(
            object_key=record.serial_number,
            card_number=card["number"] if live else _masked(card["number"]),
            balance=balance,
            tier=tier,
            active=active,
            holder_name=card["name"] if active else None,
            card_page_url=self.card_page_url(card["page_token"]) if active else None,
            language=card["language"] or self.program.language,
        )


def _masked(number: str) -> str:
    """A card number as a retired pass shows it: enough for its owner to recognise, not to use."""
    return "*" * (len(number) - 4) + number[-4:]
