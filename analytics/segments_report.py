"""The segments report: per segment, its size, CLTV (mean and median) and share of revenue.

CLTV per customer is the net revenue (refunds netted) of all their orders, and of the last 365 days
(the RFM window); per segment, the mean (rounded to a minor unit) and the median (the middle customer's,
``percentile_disc``). Share of revenue: the segment's net revenue of the window over that of every live
customer. Read from the facts table, so it is as fresh as the facts (see :mod:`analytics.segments_facts`).
Segments are the RFM segments, the lifecycle stages, or the saved segments (which may overlap).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

import asyncpg
import msgspec

from analytics import segments
from kartka.db import Connection
from wallet.program import Program

Grouping = Literal["rfm", "lifecycle", "saved"]

_AGGREGATES: Final = """
    count(*) AS customers,
    coalesce(round(avg(f.revenue_total)), 0)::bigint AS cltv_mean,
    coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY f.revenue_total), 0)::bigint AS cltv_median,
    coalesce(round(avg(f.spend_365d)), 0)::bigint AS cltv_365d_mean,
    coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY f.spend_365d), 0)::bigint AS cltv_365d_median,
    coalesce(sum(f.spend_365d), 0)::bigint AS revenue_365d
"""


class SegmentFigures(msgspec.Struct, frozen=True):
    segment: str
    """The RFM segment or lifecycle stage (``none``: no purchase in the window), or the saved segment's id."""
    customers: int
    share_of_customers: float
    cltv_mean: int
    cltv_median: int
    cltv_365d_mean: int
    cltv_365d_median: int
    revenue_365d: int
    share_of_revenue_365d: float


class SegmentsReport(msgspec.Struct, frozen=True):
    by: str
    customers: int
    revenue_365d: int
    rows: list[SegmentFigures]
    facts_as_of: datetime | None
    """When the facts were last rebuilt whole (the daily job); recent purchases are in already."""


def _row(name: str, row: asyncpg.Record | None, customers: int, revenue: int) -> SegmentFigures:
    assert row is not None
    get = row.__getitem__
    return SegmentFigures(
        segment=name,
        customers=get("customers"),
        share_of_customers=get("customers") / customers if customers else 0.0,
        cltv_mean=get("cltv_mean"),
        cltv_median=get("cltv_median"),
        cltv_365d_mean=get("cltv_365d_mean"),
        cltv_365d_median=get("cltv_365d_median"),
        revenue_365d=get("revenue_365d"),
        share_of_revenue_365d=get("revenue_365d") / revenue if revenue else 0.0,
    )


async def report(conn: Connection, by: Grouping, *, program: Program, now: datetime) -> SegmentsReport:
    total = await conn.fetchrow(f"SELECT {_AGGREGATES} FROM customer_facts f")
    assert total is not None
    customers, revenue = total["customers"], total["revenue_365d"]
    rows: list[SegmentFigures] = []
    if by == "saved":
        saved = await segments.list_all(conn)
        resolve = {s.id: s.rule for s in saved}
        for segment in saved:
            where, args = segments.compile_rule(segment.rule, now=now, program=program, resolve=resolve)
            row = await conn.fetchrow(f"SELECT {_AGGREGATES} FROM customer_facts f WHERE {where}", *args)
            rows.append(_row(segment.id, row, customers, revenue))
    else:
        column = "f.rfm_segment" if by == "rfm" else "f.lifecycle"
        for row in await conn.fetch(
            f"SELECT coalesce({column}, 'none') AS name, {_AGGREGATES} FROM customer_facts f GROUP BY 1 ORDER BY 1"
        ):
            rows.append(_row(row["name"], row, customers, revenue))
        order = list(program.rfm.segments) if by == "rfm" else list(segments.LIFECYCLE_ORDER)
        rows.sort(key=lambda r: order.index(r.segment) if r.segment in order else len(order))
    as_of = await conn.fetchval("SELECT max(finished_at) FROM analytics_runs WHERE stage = 'done'")
    return SegmentsReport(by=by, customers=customers, revenue_365d=revenue, rows=rows, facts_as_of=as_of)


# -- the RFM grid -------------------------------------------------------------------------------------


class RfmCell(msgspec.Struct, frozen=True):
    r: int
    f: int
    customers: int
    share: float
    """Of the scored customers (0 when nobody is scored)."""


class RfmGrid(msgspec.Struct, frozen=True):
    """Scored customers by recency (``r``) and frequency (``f``) score, all 25 cells, R descending then F
    ascending (the grid as people draw it: the best recency on top). A cell's customers are the rule
    ``{"rfm_r": {"min": r, "max": r}, "rfm_f": {"min": f, "max": f}}``."""

    scored: int
    """Customers with a purchase in the RFM window (and so a score)."""
    unscored: int
    cells: list[RfmCell]
    facts_as_of: datetime | None


async def rfm_grid(conn: Connection) -> RfmGrid:
    counts = {
        (row["r"], row["f"]): row["n"]
        for row in await conn.fetch(
            "SELECT rfm_r AS r, rfm_f AS f, count(*) AS n FROM customer_facts WHERE rfm_r IS NOT NULL GROUP BY 1, 2"
        )
    }
    total = await conn.fetchval("SELECT count(*) FROM customer_facts")
    scored = sum(counts.values())
    cells = [
        RfmCell(r=r, f=f, customers=counts.get((r, f), 0), share=counts.get((r, f), 0) / scored if scored else 0.0)
        for r in range(5, 0, -1)
        for f in range(1, 6)
    ]
    as_of = await conn.fetchval("SELECT max(finished_at) FROM analytics_runs WHERE stage = 'done'")
    return RfmGrid(scored=scored, unscored=total - scored, cells=cells, facts_as_of=as_of)
