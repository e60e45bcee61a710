"""Tiers: earned by money spent in the program's window (365 days by default).

A customer's tier is stored on the account. A purchase that lifts spend over a threshold upgrades it at
once, effective from the next purchase (the purchase that earned it accrues at the old rate); a daily job
lowers tiers whose spend has fallen below their threshold. Both write ``tier_changes``.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from kartka.db import Connection
from wallet.events import WalletEvents
from wallet.models import NextTier, TierView
from wallet.program import Program, Tier


def tier_view(program: Program, tier_code: str, spend: int) -> TierView:
    tier = program.tier(tier_code)
    nxt = program.next_tier(tier)
    return TierView(
        code=tier.code,
        name=tier.name,
        rate=tier.rate_bp,
        spend_365d=spend,
        next=NextTier(code=nxt.code, name=nxt.name, threshold=nxt.threshold) if nxt else None,
        to_next=max(nxt.threshold - spend, 0) if nxt else None,
    )


async def upgrade_if_earned(
    conn: Connection,
    program: Program,
    *,
    customer_id: UUID,
    current: str,
    spend: int,
    now: datetime,
    order_pk: int | None,
) -> Tier | None:
    """Raise the stored tier when ``spend`` has reached a higher one; never lowers it."""
    earned = program.tier_for_spend(spend)
    if program.rank(earned.code) <= program.rank(current):
        return None
    await conn.execute(
        "UPDATE accounts SET tier_code = $2, tier_since = $3 WHERE customer_id = $1", customer_id, earned.code, now
    )
    await conn.execute(
        """
        INSERT INTO tier_changes (customer_id, from_code, to_code, direction, spend, order_pk, changed_at)
        VALUES ($1, $2, $3, 'upgrade', $4, $5, $6)
        """,
        customer_id,
        current,
        earned.code,
        spend,
        order_pk,
        now,
    )
    return earned


_DOWNGRADE = """
WITH tiers AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[]) AS t (code, threshold, rank)
), batch AS (
    SELECT a.customer_id, a.tier_code,
           coalesce((SELECT sum(o.paid - o.refunded_amount) FROM orders o
                      WHERE o.customer_id = a.customer_id AND o.purchased_at > $4), 0)::bigint AS spend
      FROM accounts a
     WHERE a.tier_code <> $1[1] AND ($6::uuid IS NULL OR a.customer_id > $6)
     ORDER BY a.customer_id
     LIMIT $7
), due AS (
    SELECT b.customer_id, b.tier_code AS from_code, earned.code AS to_code, b.spend
      FROM batch b
      CROSS JOIN LATERAL (SELECT code, rank FROM tiers WHERE threshold <= b.spend ORDER BY rank DESC LIMIT 1) earned
      LEFT JOIN tiers held ON held.code = b.tier_code
     WHERE earned.rank < coalesce(held.rank, 0) OR held.code IS NULL
), lowered AS (
    UPDATE accounts a SET tier_code = due.to_code, tier_since = $5
      FROM due WHERE a.customer_id = due.customer_id AND a.tier_code = due.from_code
    RETURNING due.customer_id, due.from_code, due.to_code, due.spend
), written AS (
    INSERT INTO tier_changes (customer_id, from_code, to_code, direction, spend, changed_at)
    SELECT customer_id, from_code, to_code, 'downgrade', spend, $5 FROM lowered WHERE from_code <> to_code
)
SELECT (SELECT max(customer_id::text) FROM batch) AS last,
       (SELECT coalesce(array_agg(customer_id), '{}') FROM lowered) AS lowered
"""


async def evaluate_downgrades(
    conn: Connection, program: Program, events: WalletEvents, now: datetime, *, batch: int = 10_000
) -> int:
    """Lower every tier whose spend in the window is below its threshold; returns how many changed.

    Walks the accounts above the base tier in id order, a batch per transaction, in which the lowered
    shoppers' passes are marked changed too. Safe to run twice or from two workers at once: an account
    already changed by another run no longer matches.
    """
    codes = [t.code for t in program.tiers]
    thresholds = [t.threshold for t in program.tiers]
    ranks = list(range(len(program.tiers)))
    since = program.tier_window_start(now)
    after: UUID | None = None
    total = 0
    while True:
        async with conn.transaction():
            row = await conn.fetchrow(_DOWNGRADE, codes, thresholds, ranks, since, now, after, batch)
            assert row is not None
            lowered: list[UUID] = list(row["lowered"])
            await events.cards_changed(conn, customer_ids=lowered, now=now)
        total += len(lowered)
        if row["last"] is None:
            return total
        after = UUID(row["last"])
