"""Bonus points granted by staff: available at once, with their own short expiry."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated
from uuid import UUID

import msgspec

from kartka.clock import Clock
from kartka.db import Connection
from kartka.errors import InvalidInput
from kartka.texts import points
from wallet import ledger
from wallet.errors import CustomerNotFound
from wallet.events import WalletEvents
from wallet.ledger import EntryKind
from wallet.models import BalanceView
from wallet.profile import has_control_characters
from wallet.program import Program


class GrantInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    points: Annotated[
        int, msgspec.Meta(gt=0, le=10_000_000_000, description="Hundredths of a point (1000 = 10 points)")
    ]
    expires_in_days: Annotated[int, msgspec.Meta(ge=1, le=3650)]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]

    def __post_init__(self) -> None:
        if has_control_characters(self.reason):
            raise ValueError("reason may not contain control characters")


class Grant(msgspec.Struct, frozen=True):
    customer_id: UUID
    points: int
    reason: str
    available_at: datetime
    expires_at: datetime
    balance: BalanceView


async def grant(
    conn: Connection,
    program: Program,
    clock: Clock,
    events: WalletEvents,
    customer_id: UUID,
    data: GrantInput,
    *,
    actor: str | None,
) -> Grant:
    if data.points > program.grant_max_points:
        raise InvalidInput(
            f"a grant is at most {points(program.grant_max_points, 'en')} (grant_max_points)", field="points"
        )
    reason = data.reason.strip()
    if not reason:
        raise InvalidInput("say why the points are granted", field="reason")
    exists = await conn.fetchval("SELECT merged_into IS NULL FROM customers WHERE id = $1", customer_id)
    if not exists:
        raise CustomerNotFound(f"no customer with id {customer_id}", field="customer_id")
    now = clock.now()
    expires_at = now + timedelta(days=data.expires_in_days)
    # Locked, the customer is looked at again: a merge or a closing that committed while the lock was
    # awaited wins, as if it had come first, and the points never land on an account nobody sees.
    account = await ledger.lock_live_account(conn, customer_id, program)
    if account is None:
        raise CustomerNotFound(f"customer {customer_id} was merged into another account or closed", field="customer_id")
    await ledger.credit(
        conn,
        account,
        kind=EntryKind.GRANT,
        points=data.points,
        available_at=now,
        expires_at=expires_at,
        occurred_at=now,
        reason=reason,
        actor=actor,
    )
    await events.cards_changed(conn, customer_ids=[customer_id], now=now)
    return Grant(
        customer_id=customer_id,
        points=data.points,
        reason=reason,
        available_at=now,
        expires_at=expires_at,
        balance=await ledger.balance(conn, customer_id, now, program),
    )
