"""The points ledger.

Every change of a balance is an entry (accrual, redemption, refund take-back, refund return, expiry,
grant, adjustment). Points that can be spent live in lots: each credit creates one, with the moment it
becomes available and the moment it expires; spending consumes the soonest-expiring available lots
first and records which lots it took from. A refund that takes back points already spent leaves a
debt (policy ``debt``) that the next credits repay.

The identity that always holds, per customer and overall:

    sum(entries.points) == sum(lots.remaining) - accounts.debt

Balances are computed at read time from the lots and the clock, so they are right whether or not the
expiry job has run yet. Mutations happen with the customer's account row locked
(:func:`lock_account`), which serialises concurrent purchases on one card without blocking others.
"""

from __future__ import annotations

import base64
import enum
from datetime import datetime
from typing import Final
from uuid import UUID

import asyncpg
import msgspec

from kartka import texts
from kartka.db import Connection
from kartka.errors import Conflict, InvalidInput
from wallet.models import BalanceView, Expiring
from wallet.program import Program


class EntryKind(enum.StrEnum):
    ACCRUAL = "accrual"
    REDEMPTION = "redemption"
    REFUND_TAKE_BACK = "refund_take_back"
    REFUND_RETURN = "refund_return"
    EXPIRY = "expiry"
    GRANT = "grant"
    ADJUSTMENT = "adjustment"


class InsufficientPoints(Conflict):
    code = "insufficient-points"


class Account(msgspec.Struct, frozen=True):
    customer_id: UUID
    tier_code: str
    debt: int


# -- reading ------------------------------------------------------------------------------------

#: Balance columns for the customer whose id is ``{customer}``; parameters: now, soon.
BALANCE_SQL: Final = """
    SELECT coalesce(sum(remaining) FILTER (WHERE available_at <= {now} AND expires_at > {now}), 0)::bigint
               AS lots_available,
           coalesce(sum(remaining) FILTER (WHERE available_at > {now} AND expires_at > {now}), 0)::bigint
               AS pending,
           min(available_at) FILTER (WHERE available_at > {now} AND expires_at > {now}) AS next_available_at,
           coalesce(sum(remaining) FILTER (WHERE expires_at > {now} AND expires_at <= {soon}), 0)::bigint
               AS expiring_points,
           min(expires_at) FILTER (WHERE expires_at > {now} AND expires_at <= {soon}) AS expiring_at
      FROM lots WHERE customer_id = {customer} AND remaining > 0
"""

#: Money spent in the tier window by ``{customer}``; parameter: window start.
SPEND_SQL: Final = """
    SELECT coalesce(sum(paid - refunded_amount), 0)::bigint AS spend
      FROM orders WHERE customer_id = {customer} AND purchased_at > {since}
"""


def balance_from(row: asyncpg.Record, debt: int) -> BalanceView:
    return BalanceView(
        available=row["lots_available"] - debt,
        pending=row["pending"],
        next_available_at=row["next_available_at"],
        expiring_soon=Expiring(points=row["expiring_points"], at=row["expiring_at"]),
    )


async def balance(conn: Connection, customer_id: UUID, now: datetime, program: Program) -> BalanceView:
    row = await conn.fetchrow(
        f"SELECT b.*, (SELECT debt FROM accounts WHERE customer_id = $1) AS debt "
        f"FROM ({BALANCE_SQL.format(now='$2', soon='$3', customer='$1')}) b",
        customer_id,
        now,
        program.expiring_soon_until(now),
    )
    assert row is not None
    return balance_from(row, row["debt"] or 0)


async def spend(conn: Connection, customer_id: UUID, since: datetime) -> int:
    value: int = await conn.fetchval(SPEND_SQL.format(customer="$1", since="$2"), customer_id, since)
    return value


# -- the account lock ---------------------------------------------------------------------------


async def lock_account(conn: Connection, customer_id: UUID, program: Program) -> Account:
    """Create the account on first use and lock it for the rest of the transaction (one round trip)."""
    row = await conn.fetchrow(
        """
        INSERT INTO accounts (customer_id, tier_code) VALUES ($1, $2)
        ON CONFLICT (customer_id) DO UPDATE SET customer_id = excluded.customer_id
        RETURNING customer_id, tier_code, debt
        """,
        customer_id,
        program.base_tier.code,
    )
    assert row is not None
    return Account(customer_id=row["customer_id"], tier_code=row["tier_code"], debt=row["debt"])


#: Takes out an account the lock's upsert re-created for a customer merged away meanwhile; says whether
#: the customer is gone (merged away, or closed unless $2).
_DEAD_ACCOUNT = """
    WITH c AS (SELECT merged_into, closed_at FROM customers WHERE id = $1),
         zombie AS (DELETE FROM accounts WHERE customer_id = $1 AND (SELECT merged_into FROM c) IS NOT NULL)
    SELECT merged_into IS NOT NULL OR (NOT $2 AND closed_at IS NOT NULL) FROM c
"""


async def lock_live_account(
    conn: Connection, customer_id: UUID, program: Program, *, closed_ok: bool = False
) -> Account | None:
    """Lock the account of a customer still in use; ``None`` when a merge took the customer away, or the
    shopper closed it (unless ``closed_ok``: a refund of a closed account's order still goes through).

    Every write that found its customer before locking goes through here. The lock may have waited for
    that very merge, and then the upsert has re-created the account the merge deleted. The next
    statement sees what committed during the wait: it takes such a row out again, so nothing can land
    on an account nobody sees (the caller looks up the new owner, or refuses)."""
    account = await lock_account(conn, customer_id, program)
    gone = await conn.fetchval(_DEAD_ACCOUNT, customer_id, closed_ok)
    return None if gone else account


async def drop_dead_account(conn: Connection, customer_id: UUID) -> None:
    """Take out the account the lock re-created if ``customer_id`` was merged away meanwhile (see
    :func:`lock_live_account`; for callers that found out otherwise that the customer changed)."""
    await conn.fetchval(_DEAD_ACCOUNT, customer_id, True)


# -- credits ------------------------------------------------------------------------------------


async def credit(
    conn: Connection,
    account: Account,
    *,
    kind: EntryKind,
    points: int,
    available_at: datetime,
    expires_at: datetime,
    occurred_at: datetime,
    order_pk: int | None = None,
    refund_pk: int | None = None,
    reason: str | None = None,
    actor: str | None = None,
) -> tuple[Account, int]:
    """Add a lot of ``points``; any debt is repaid from it first. Returns the account and the lot id."""
    if points <= 0:
        raise ValueError("a credit is positive")
    repay = min(points, account.debt)
    lot_id: int = await conn.fetchval(
        """
        WITH lot AS (
            INSERT INTO lots (customer_id, kind, order_pk, points, remaining, available_at, expires_at)
            VALUES ($1, $2, $3, $4::bigint, $4::bigint - $5::bigint, $6, $7)
            RETURNING id
        ), entry AS (
            INSERT INTO ledger_entries (customer_id, kind, points, order_pk, refund_pk, lot_id, reason, occurred_at,
                                        actor)
            SELECT $1, $2, $4, $3, $8, lot.id, $9, $10, $11 FROM lot
        ), repaid AS (
            UPDATE accounts SET debt = debt - $5::bigint WHERE customer_id = $1 AND $5::bigint > 0
        )
        SELECT id FROM lot
        """,
        account.customer_id,
        kind.value,
        order_pk,
        points,
        repay,
        available_at,
        expires_at,
        refund_pk,
        reason,
        occurred_at,
        actor,
    )
    return msgspec.structs.replace(account, debt=account.debt - repay), lot_id


# -- debits -------------------------------------------------------------------------------------

_CONSUME = """
WITH open AS (
    SELECT id, remaining,
           sum(remaining) OVER (ORDER BY {order}, id) - remaining AS before
      FROM lots
     WHERE customer_id = $1 AND remaining > 0 {where}
), take AS (
    SELECT id, least(remaining, $3 - before) AS points FROM open WHERE before < $3
), entry AS (
    INSERT INTO ledger_entries (customer_id, kind, points, order_pk, refund_pk, reason, occurred_at)
    VALUES ($1, $4, -$5::bigint, $6, $7, $8, $9)
    RETURNING id
), used AS (
    UPDATE lots l SET remaining = l.remaining - take.points
      FROM take WHERE l.id = take.id AND l.remaining >= take.points
    RETURNING l.id, take.points
), consumed AS (
    INSERT INTO lot_consumptions (entry_id, lot_id, points)
    SELECT entry.id, used.id, used.points FROM used, entry
)
SELECT (SELECT id FROM entry) AS entry_id, (SELECT coalesce(sum(points), 0) FROM used)::bigint AS consumed
"""

# Spending: available lots only, soonest to expire first.
_SPEND = _CONSUME.format(order="expires_at", where="AND available_at <= $2 AND expires_at > $2")
# Taking back: the order's own lot first, then what can be spent (soonest to expire), then pending lots.
_TAKE_BACK = _CONSUME.format(
    order="(kind <> 'accrual' OR order_pk IS DISTINCT FROM $10), (available_at > $2), expires_at, available_at",
    where="AND expires_at > $2",
)


async def redeem(
    conn: Connection,
    account: Account,
    *,
    points: int,
    now: datetime,
    order_pk: int,
    occurred_at: datetime,
    lots_available: int,
) -> int:
    """Spend ``points`` (checked against what is available now); returns the entry id."""
    if points <= 0:
        raise ValueError("a redemption is positive")
    if points > lots_available - account.debt:
        raise InsufficientPoints(
            f"cannot redeem {texts.points(points, 'en')}: "
            f"{texts.format_points(max(lots_available - account.debt, 0), 'en')} available",
            field="redeem_points",
            available=max(lots_available - account.debt, 0),
        )
    row = await conn.fetchrow(
        _SPEND, account.customer_id, now, points, EntryKind.REDEMPTION.value, points, order_pk, None, None, occurred_at
    )
    assert row is not None
    if row["consumed"] != points:  # a lot changed under us (an expiry on a skewed clock): refuse, retryable
        raise InsufficientPoints("points changed while redeeming; try again", field="redeem_points")
    entry_id: int = row["entry_id"]
    return entry_id


async def take_back(
    conn: Connection,
    account: Account,
    *,
    points: int,
    now: datetime,
    order_pk: int,
    refund_pk: int,
    occurred_at: datetime,
    policy: str,
) -> tuple[Account, int]:
    """Take back points a refunded part earned. What is no longer there becomes debt (policy ``debt``) or
    is let go (``forgive``). Returns the account and the points actually debited."""
    if points <= 0:
        raise ValueError("a take-back is positive")
    row = await conn.fetchrow(
        _TAKE_BACK,
        account.customer_id,
        now,
        points,
        EntryKind.REFUND_TAKE_BACK.value,
        points,
        order_pk,
        refund_pk,
        None,
        occurred_at,
        order_pk,
    )
    assert row is not None
    shortfall = points - row["consumed"]
    if shortfall == 0:
        return account, points
    if policy == "debt":
        await conn.execute(
            "UPDATE accounts SET debt = debt + $2 WHERE customer_id = $1", account.customer_id, shortfall
        )
        return msgspec.structs.replace(account, debt=account.debt + shortfall), points
    # forgive: the entry records only what was actually there
    debited = row["consumed"]
    if debited == 0:
        await conn.execute("DELETE FROM ledger_entries WHERE id = $1", row["entry_id"])
    else:
        await conn.execute("UPDATE ledger_entries SET points = $2 WHERE id = $1", row["entry_id"], -debited)
    return account, debited


async def forfeit_all(conn: Connection, account: Account, *, now: datetime, reason: str, actor: str | None) -> int:
    """Write off every open lot and forgive any debt (a closed account): two adjustments that keep the
    ledger's identity. Returns the points written off."""
    written_off: int = await conn.fetchval(
        """
        WITH open AS (
            SELECT id, remaining FROM lots WHERE customer_id = $1 AND remaining > 0 FOR UPDATE
        ), entry AS (
            INSERT INTO ledger_entries (customer_id, kind, points, reason, occurred_at, actor)
            SELECT $1, 'adjustment', -sum(remaining), $2, $3, $4 FROM open HAVING sum(remaining) > 0
            RETURNING id
        ), used AS (
            UPDATE lots l SET remaining = 0 FROM open WHERE l.id = open.id RETURNING l.id, open.remaining
        ), consumed AS (
            INSERT INTO lot_consumptions (entry_id, lot_id, points)
            SELECT entry.id, used.id, used.remaining FROM used, entry
        )
        SELECT coalesce((SELECT sum(remaining) FROM open), 0)::bigint
        """,
        account.customer_id,
        reason,
        now,
        actor,
    )
    if account.debt:
        await conn.execute(
            """
            WITH forgiven AS (UPDATE accounts SET debt = 0 WHERE customer_id = $1)
            INSERT INTO ledger_entries (customer_id, kind, points, reason, occurred_at, actor)
            VALUES ($1, 'adjustment', $2, $3, $4, $5)
            """,
            account.customer_id,
            account.debt,
            f"debt forgiven: {reason}",
            now,
            actor,
        )
    return written_off


# -- jobs ---------------------------------------------------------------------------------------


async def expire_due(conn: Connection, now: datetime, *, batch: int = 5_000) -> tuple[int, list[UUID]]:
    """Write off lots past their expiry, a batch at a time; returns how many lots it expired and whose.

    ``SKIP LOCKED`` lets several workers share the work and never waits on a purchase in flight.
    """
    row = await conn.fetchrow(
        """
        WITH due AS (
            SELECT id, customer_id, remaining, expires_at FROM lots
             WHERE expires_at <= $1 AND remaining > 0
             ORDER BY expires_at, id
             LIMIT $2
             FOR UPDATE SKIP LOCKED
        ), written_off AS (
            UPDATE lots l SET remaining = 0, expired_at = $1 FROM due WHERE l.id = due.id
            RETURNING due.id, due.customer_id, due.remaining, due.expires_at
        ), entries AS (
            INSERT INTO ledger_entries (customer_id, kind, points, lot_id, occurred_at)
            SELECT customer_id, 'expiry', -remaining, id, expires_at FROM written_off
        )
        SELECT count(*) AS expired, coalesce(array_agg(DISTINCT customer_id), '{}') AS customers FROM written_off
        """,
        now,
        batch,
    )
    assert row is not None
    return row["expired"], list(row["customers"])


# -- history ------------------------------------------------------------------------------------


class Transaction(msgspec.Struct, frozen=True):
    id: int
    kind: EntryKind
    points: int
    occurred_at: datetime
    order_id: str | None
    refund_id: str | None
    reason: str | None
    available_at: datetime | None
    expires_at: datetime | None


class TransactionPage(msgspec.Struct, frozen=True):
    items: list[Transaction]
    next_cursor: str | None


def _cursor(entry_id: int) -> str:
    return base64.urlsafe_b64encode(f"e{entry_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("e"):
            raise ValueError
        entry_id = int(text[1:])
        if not 0 < entry_id < 2**63:
            raise ValueError
        return entry_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("the cursor is not one this API gave out", field="cursor") from exc


async def transactions(
    conn: Connection, customer_id: UUID, *, cursor: str | None, limit: int, store: str | None = None
) -> TransactionPage:
    """The customer's ledger, newest first, ``limit`` at a time; ``next_cursor`` continues it.

    With ``store``, only what happened in that store: the entries of its orders and of their refunds
    (a store-bound integration key's view; grants, expiry and other stores' purchases are the chain's).
    """
    before = _decode_cursor(cursor) if cursor else None
    rows = await conn.fetch(
        """
        SELECT e.id, e.kind, e.points, e.occurred_at, o.order_id, r.refund_id, e.reason,
               l.available_at, l.expires_at
          FROM ledger_entries e
          LEFT JOIN orders o ON o.id = e.order_pk
          LEFT JOIN refunds r ON r.id = e.refund_pk
          LEFT JOIN orders ro ON ro.id = r.order_pk
          LEFT JOIN lots l ON l.id = e.lot_id
         WHERE e.customer_id = $1 AND ($2::bigint IS NULL OR e.id < $2)
           AND ($4::text IS NULL OR coalesce(o.store, ro.store) = $4)
         ORDER BY e.id DESC
         LIMIT $3
        """,
        customer_id,
        before,
        limit + 1,
        store,
    )
    items = [msgspec.convert(dict(r), Transaction) for r in rows[:limit]]
    return TransactionPage(items=items, next_cursor=_cursor(items[-1].id) if len(rows) > limit else None)


async def merge_accounts(conn: Connection, program: Program, *, source: UUID, target: UUID) -> None:
    """Move everything of ``source`` (a no-name card's account) to ``target``: orders, lots, entries,
    refunds, tier history and debt. Both accounts are locked in id order, so two merges cannot deadlock."""
    for customer_id in sorted((source, target)):
        await lock_account(conn, customer_id, program)
    debt = await conn.fetchval("DELETE FROM accounts WHERE customer_id = $1 RETURNING debt", source)
    if debt:
        await conn.execute("UPDATE accounts SET debt = debt + $2 WHERE customer_id = $1", target, debt)
    for table in ("orders", "refunds", "lots", "ledger_entries", "tier_changes"):
        await conn.execute(f"UPDATE {table} SET customer_id = $2 WHERE customer_id = $1", source, target)
