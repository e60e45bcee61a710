"""Lifecycle stages and the churn thresholds T50 / T90.

A customer is ``new`` for ``new_days`` after registering; after that ``no_purchase`` until their first
purchase; then, by the gap since their last purchase, ``churned`` beyond T90, ``churn_risk`` beyond T50,
else ``one_purchase`` or ``active`` (two purchases or more). T50 / T90 are the gaps (whole days) that
50 % / 90 % of the program's observed gaps between a customer's consecutive purchase days do not exceed:
a customer who has not come back after T90 days is one who, judging by everyone else, would have come
back by now nine times in ten. Estimated daily in SQL; the program's ``[lifecycle]`` may fix them.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Final

import msgspec

from kartka.db import Connection
from wallet.program import Program

#: A purchase is an order not refunded in full (a points-only order, paid 0, stays one).
COUNTED: Final = "NOT (o.paid > 0 AND o.refunded_amount >= o.paid)"

#: The stage of facts row ``f``; parameters: registered-new cutoff, T50 and T90 cutoffs (instants).
STAGE_SQL: Final = """
    CASE WHEN f.registered_at > {new} THEN 'new'
         WHEN f.orders_total = 0 THEN 'no_purchase'
         WHEN f.last_purchase_at < {t90} THEN 'churned'
         WHEN f.last_purchase_at < {t50} THEN 'churn_risk'
         WHEN f.orders_total = 1 THEN 'one_purchase'
         ELSE 'active' END
"""

#: Gaps in whole local days between a customer's consecutive purchase days: consecutive purchases in
#: (customer, time) order, same-day pairs dropped — the order the orders_customer_time index reads in.
_GAPS: Final = f"""
    WITH days AS (
        SELECT o.customer_id, (o.purchased_at AT TIME ZONE $3)::date AS day, o.purchased_at
          FROM orders o
         WHERE o.purchased_at > $1 AND o.purchased_at <= $2 AND {COUNTED}
    ), gaps AS (
        SELECT day - lag(day) OVER (PARTITION BY customer_id ORDER BY purchased_at) AS gap FROM days
    )
    SELECT count(gap) AS gaps,
           percentile_disc(0.5) WITHIN GROUP (ORDER BY gap) AS t50,
           percentile_disc(0.9) WITHIN GROUP (ORDER BY gap) AS t90
      FROM gaps WHERE gap > 0
"""


class Thresholds(msgspec.Struct, frozen=True):
    t50_days: Decimal
    t90_days: Decimal
    gaps: int
    """Gaps observed; 0 when the program's override was used."""
    estimated: bool
    """False: the override or, with too few gaps, the fallback."""

    def cutoffs(self, now: datetime) -> tuple[datetime, datetime]:
        """The last-purchase instants before which a customer is at risk, and churned."""
        return now - timedelta(days=float(self.t50_days)), now - timedelta(days=float(self.t90_days))


async def estimate(conn: Connection, program: Program, now: datetime) -> Thresholds:
    """Today's T50 / T90: the override if the program sets both, else the percentiles of the gaps
    between consecutive purchase days over ``gap_window_days`` (the fallbacks with too few gaps)."""
    config = program.lifecycle
    if config.t50_days is not None and config.t90_days is not None:
        return Thresholds(Decimal(config.t50_days), Decimal(config.t90_days), gaps=0, estimated=False)
    row = await conn.fetchrow(_GAPS, now - timedelta(days=config.gap_window_days), now, program.timezone)
    assert row is not None
    if row["gaps"] < config.min_gaps:
        t50, t90, estimated = Decimal(config.fallback_t50_days), Decimal(config.fallback_t90_days), False
    else:
        t50, t90, estimated = Decimal(row["t50"]), Decimal(row["t90"]), True
    # One half of an override applies on its own; T50 never exceeds T90.
    if config.t50_days is not None:
        t50 = Decimal(config.t50_days)
    if config.t90_days is not None:
        t90 = Decimal(config.t90_days)
    return Thresholds(t50, max(t50, t90), gaps=row["gaps"], estimated=estimated)


async def latest(conn: Connection, program: Program) -> Thresholds:
    """The thresholds of the last daily run (the fallbacks, or the override, before any)."""
    row = await conn.fetchrow("SELECT * FROM lifecycle_thresholds ORDER BY run_on DESC LIMIT 1")
    config = program.lifecycle
    if config.t50_days is not None and config.t90_days is not None:
        return Thresholds(Decimal(config.t50_days), Decimal(config.t90_days), gaps=0, estimated=False)
    if row is None:
        return Thresholds(Decimal(config.fallback_t50_days), Decimal(config.fallback_t90_days), gaps=0, estimated=False)
    return Thresholds(row["t50_days"], row["t90_days"], gaps=row["gaps"], estimated=row["estimated"])


async def record(conn: Connection, day: date, thresholds: Thresholds) -> None:
    await conn.execute(
        """
        INSERT INTO lifecycle_thresholds (run_on, t50_days, t90_days, gaps, estimated) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (run_on) DO UPDATE SET t50_days = EXCLUDED.t50_days, t90_days = EXCLUDED.t90_days,
               gaps = EXCLUDED.gaps, estimated = EXCLUDED.estimated
        """,
        day,
        thresholds.t50_days,
        thresholds.t90_days,
        thresholds.gaps,
        thresholds.estimated,
    )


async def assign(conn: Connection, program: Program, thresholds: Thresholds, now: datetime) -> int:
    """Set every customer's stage; returns how many changed."""
    t50, t90 = thresholds.cutoffs(now)
    stage = STAGE_SQL.format(new="$1", t50="$2", t90="$3")
    result = await conn.execute(
        f"UPDATE customer_facts f SET lifecycle = {stage} WHERE lifecycle IS DISTINCT FROM {stage}",
        now - timedelta(days=program.lifecycle.new_days),
        t50,
        t90,
    )
    return int(result.split()[-1])
