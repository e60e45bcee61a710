"""Background jobs of the wallet: expire lots, lower tiers, grant birthday bonuses, and queue the pass
updates time brings (points becoming available or expiring). Run by ``kartka worker`` on a timer and by
``kartka jobs run``; every job is safe to run twice and from several workers at once."""

from __future__ import annotations

import calendar
import logging
from datetime import datetime, timedelta
from typing import Final

import msgspec

from kartka.clock import Clock
from kartka.db import Pool
from wallet import ledger, tiers
from wallet.events import WalletEvents
from wallet.ledger import EntryKind
from wallet.program import Program

_BIRTHDAY_BATCH: Final = 500

logger = logging.getLogger(__name__)


class JobReport(msgspec.Struct):
    expired_lots: int = 0
    downgrades: int | None = None
    """``None`` when today's evaluation had already been run (by this or another worker)."""
    birthday_bonuses: int = 0
    passes_due: int = 0
    """Shoppers whose passes changed with time alone (points became available, or soon expire)."""


async def expire(pool: Pool, events: WalletEvents, now: datetime, *, batch: int = 5_000) -> int:
    """Expire every lot due at ``now``, one short transaction per batch (with the passes it changes)."""
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            done, customers = await ledger.expire_due(conn, now, batch=batch)
            await events.cards_changed(conn, customer_ids=customers, now=now)
        total += done
        if done < batch:
            return total


async def downgrade_daily(
    pool: Pool, program: Program, events: WalletEvents, now: datetime, *, force: bool = False
) -> int | None:
    """Evaluate tier downgrades once per day (the program's local date); ``force`` runs it regardless."""
    day = now.astimezone(program.zone).date()
    async with pool.acquire() as conn:
        if not force:
            # Claim the day; a claim an hour old that never finished (its worker died) may be taken over.
            claimed = await conn.fetchval(
                """
                INSERT INTO job_runs (job, run_on) VALUES ('downgrades', $1)
                ON CONFLICT (job, run_on) DO UPDATE SET started_at = now()
                 WHERE job_runs.finished_at IS NULL AND job_runs.started_at < now() - interval '1 hour'
                RETURNING 1
                """,
                day,
            )
            if claimed is None:
                return None
        lowered = await tiers.evaluate_downgrades(conn, program, events, now)
        await conn.execute(
            """
            INSERT INTO job_runs (job, run_on, finished_at, result) VALUES ('downgrades', $1, now(), $2)
            ON CONFLICT (job, run_on) DO UPDATE SET finished_at = now(), result = excluded.result
            """,
            day,
            {"lowered": lowered},
        )
    return lowered


async def birthday_bonuses(pool: Pool, program: Program, events: WalletEvents, now: datetime) -> int:
    """Give today's birthdays (the program's local date) their bonus, once per customer and year.

    Runs every round, not once a day; the ``birthday_bonuses`` row claimed with the grant makes a second
    run, or a second worker, give nothing. A birthday set or changed fewer than ``birthday_notice_days``
    before brings nothing that year. A 29 February birthday is celebrated on the 28th in other years.
    """
    if program.birthday_bonus_points == 0:
        return 0
    today = now.astimezone(program.zone).date()
    days = [today.day]
    if today.month == 2 and today.day == 28 and not calendar.isleap(today.year):
        days.append(29)
    expires_at = now + timedelta(days=program.birthday_bonus_days)
    granted = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetch(
                """
                WITH due AS (
                    SELECT id FROM customers c
                     WHERE birthday IS NOT NULL AND closed_at IS NULL AND merged_into IS NULL
                       AND extract(month FROM birthday) = $1 AND extract(day FROM birthday) = ANY($2::int[])
                       AND birthday_set_at <= $6
                       AND NOT EXISTS (SELECT 1 FROM birthday_bonuses b WHERE b.customer_id = c.id AND b.year = $3)
                     ORDER BY id LIMIT $4
                )
                INSERT INTO birthday_bonuses (customer_id, year, granted_at) SELECT id, $3, $5 FROM due
                ON CONFLICT DO NOTHING
                RETURNING customer_id
                """,
                today.month,
                days,
                today.year,
                _BIRTHDAY_BATCH,
                now,
                now - timedelta(days=program.birthday_notice_days),
            )
            for row in sorted(claimed, key=lambda r: r["customer_id"]):  # lock accounts in one order
                customer_id = row["customer_id"]
                account = await ledger.lock_live_account(conn, customer_id, program)
                if account is None:  # merged away or closed since it was picked
                    continue
                await ledger.credit(
                    conn,
                    account,
                    kind=EntryKind.GRANT,
                    points=program.birthday_bonus_points,
                    available_at=now,
                    expires_at=expires_at,
                    occurred_at=now,
                    reason="birthday bonus",
                    actor="program:birthday",
                )
                await events.bonus_granted(
                    conn,
                    customer_id=customer_id,
                    points=program.birthday_bonus_points,
                    expires_at=expires_at,
                    kind="birthday",
                    ref=f"birthday:{customer_id}:{today.year}",
                    now=now,
                )
            await events.cards_changed(conn, customer_ids=[r["customer_id"] for r in claimed], now=now)
        granted += len(claimed)
        if len(claimed) < _BIRTHDAY_BATCH:
            return granted


async def passes_due(pool: Pool, program: Program, events: WalletEvents, now: datetime) -> int:
    """Mark changed the passes that time alone changed since the last run: points that became available,
    points that entered the "expiring soon" window, and purchases that left the tier window (the
    progress to the next tier). (Expired points are written off by :func:`expire`, and lowered tiers by
    the downgrade job, which mark their passes.) Returns how many shoppers' passes moved.

    The last moment covered is kept in ``job_marks``, its row locked while a run works, so runs on
    several workers cover each moment once; the first run only sets the mark.
    """
    soon = timedelta(days=program.expiring_soon_days)
    async with pool.acquire() as conn, conn.transaction():
        reached = await conn.fetchval(
            """
            INSERT INTO job_marks (job, reached) VALUES ('passes-due', $1)
            ON CONFLICT (job) DO UPDATE SET job = EXCLUDED.job RETURNING reached
            """,
            now,
        )
        if reached >= now:
            return 0
        customers = [
            row["customer_id"]
            for row in await conn.fetch(
                """
                WITH moved AS (
                    SELECT customer_id FROM lots
                     WHERE remaining > 0
                       AND ((available_at > $1 AND available_at <= $2)
                            OR (expires_at > $1::timestamptz + $3::interval
                                AND expires_at <= $2::timestamptz + $3::interval))
                    UNION
                    -- purchases leaving the tier window: the progress to the next tier moves
                    SELECT customer_id FROM orders
                     WHERE purchased_at > $1::timestamptz - $4::interval
                       AND purchased_at <= $2::timestamptz - $4::interval
                )
                SELECT DISTINCT m.customer_id FROM moved m
                  JOIN cards c ON c.customer_id = m.customer_id AND c.status = 'active'
                  JOIN passes p ON p.card_number = c.number AND p.retired_at IS NULL
                """,
                reached,
                now,
                soon,
                timedelta(days=program.tier_window_days),
            )
        ]
        await events.cards_changed(conn, customer_ids=customers, now=now)
        await conn.execute("UPDATE job_marks SET reached = $1 WHERE job = 'passes-due'", now)
    return len(customers)


async def run_all(
    pool: Pool, program: Program, clock: Clock, events: WalletEvents, *, force: bool = False
) -> JobReport:
    now = clock.now()
    report = JobReport(expired_lots=await expire(pool, events, now))
    report.downgrades = await downgrade_daily(pool, program, events, now, force=force)
    report.birthday_bonuses = await birthday_bonuses(pool, program, events, now)
    report.passes_due = await passes_due(pool, program, events, now)
    if report.expired_lots or report.downgrades or report.birthday_bonuses:
        logger.info(
            "jobs: expired %d lots, lowered %s tiers, %d birthday bonuses",
            report.expired_lots,
            report.downgrades,
            report.birthday_bonuses,
        )
    return report
