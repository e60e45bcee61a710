"""The KPI report: the rollups summed over a period, per day, week, month, store or source, and turned into
the spec's figures by ``analytics.kpis``. The KPI report reads rollups only (docs/analytics.md,
"Freshness"); the promotions report reads the period's orders.

Distinct buyers do not add up over days. A row whose period is a whole local day, week (from Monday) or
calendar month reads its counts from ``kpi_buyer_counts`` (one row per period and scope); any other row
(a period of 10 days, a quarter, a week clipped by the report's bounds) counts its buyers from the
per-customer day rows (``kpi_buyer_days``) of its own days: exact either way, the latter slower for long
periods (a quarter reads three months of buyer days)."""

from __future__ import annotations

import bisect
import csv
import io
import itertools
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal

import msgspec

from analytics.kpis import Counts, KpiRow, row
from kartka.bounds import check_day
from kartka.db import Connection
from kartka.errors import InvalidInput
from wallet.program import Program

GroupBy = Literal["day", "week", "month", "store", "source"]
#: Longest period a report covers: ten years of days is already 3,650 rows.
MAX_DAYS: Final = 3_660


class KpiReport(msgspec.Struct, kw_only=True):
    from_: date = msgspec.field(name="from")
    to: date
    """Exclusive."""
    timezone: str
    store: str | None
    group_by: GroupBy | None
    rows: list[KpiRow]
    rollups_updated_at: datetime | None
    """When the worker last brought the rollups up to date; receipt figures are as of then."""
    wallet_as_of: datetime | None = None
    """When the worker last rebuilt wallet adoption (``active_cards``, ``wallet_passes``; hourly)."""
    days_pending: int
    """Days with changes the worker has not recomputed yet (their figures are the earlier ones)."""
    periods_pending: int = 0
    """Days, weeks and months whose buyer counts the worker has not recounted yet since their days moved."""


def _key(group_by: GroupBy | None, day: str) -> str:
    """The SQL expression of a row's group, as text, over a local ``day`` expression."""
    return {
        None: "''",
        "day": f"({day})::text",
        "week": f"date_trunc('week', ({day})::timestamp)::date::text",
        "month": f"date_trunc('month', ({day})::timestamp)::date::text",
        "store": "t.store",
        "source": "t.source",
    }[group_by]


def check_period(first: date, end: date) -> None:
    """A report's period: ``end`` exclusive and after ``first``, at most :data:`MAX_DAYS`, within the
    years a calendar holds."""
    check_day(first, "from")
    check_day(end, "to")
    if end <= first:
        raise InvalidInput("`to` must be after `from` (it is exclusive)", field="to")
    if (end - first).days > MAX_DAYS:
        raise InvalidInput(f"a report covers at most {MAX_DAYS} days", field="to")


def _local_midnight(day: date, program: Program) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=program.zone).astimezone(UTC)


def _buckets(group_by: GroupBy, first: date, end: date) -> list[tuple[date, date]]:
    """The periods of a time grouping that meet [first, end), clipped to it."""
    out: list[tuple[date, date]] = []
    start = first
    while start < end:
        if group_by == "day":
            nxt = start + timedelta(days=1)
        elif group_by == "week":
            nxt = start + timedelta(days=7 - start.weekday())
        else:
            nxt = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        out.append((start, min(nxt, end)))
        start = min(nxt, end)
    return out


def _grain(start: date, end: date) -> Literal["day", "week", "month"] | None:
    """The grain of the period [start, end) when it is one whole local day, week or month; else None."""
    if end == start + timedelta(days=1):
        return "day"
    if start.weekday() == 0 and end == start + timedelta(days=7):
        return "week"
    if start.day == 1 and end == date(start.year + start.month // 12, start.month % 12 + 1, 1):
        return "month"
    return None


def _bucket_key(group_by: GroupBy, start: date) -> str:
    if group_by == "week":
        return (start - timedelta(days=start.weekday())).isoformat()
    if group_by == "month":
        return start.replace(day=1).isoformat()
    return start.isoformat()


_IDENTIFIED = """
WITH c AS (
    SELECT {key} AS k, t.customer_id, sum(t.receipts) AS receipts, sum(t.revenue) AS revenue,
           sum(t.first_receipts) AS firsts
      FROM kpi_buyer_days t
     WHERE t.day >= $1 AND t.day < $2 AND ($3::text IS NULL OR t.store = $3)
     GROUP BY 1, 2
)
SELECT k, sum(receipts)::bigint AS receipts, sum(revenue)::bigint AS revenue, sum(firsts)::bigint AS firsts,
       count(*) AS buyers, count(*) FILTER (WHERE receipts >= 2) AS repeat_buyers
  FROM c GROUP BY k
"""

_ANONYMOUS = """
SELECT {key} AS k, sum(t.receipts)::bigint AS receipts, sum(t.revenue)::bigint AS revenue
  FROM kpi_anonymous_days t
 WHERE t.day >= $1 AND t.day < $2 AND ($3::text IS NULL OR t.store = $3)
 GROUP BY 1
"""

_POINTS = """
SELECT {key} AS k, sum(t.accrued - t.taken_back)::bigint AS accrued, sum(t.spent - t.returned)::bigint AS spent,
       sum(t.granted)::bigint AS granted, sum(t.adjusted)::bigint AS adjusted, sum(t.expired)::bigint AS expired
  FROM kpi_points_hours t
 WHERE t.hour >= $1 AND t.hour < $2 AND ($3::text IS NULL OR t.store = $3)
 GROUP BY 1
"""

#: Cards issued in the period and those activated (``kpi_card_days``, analytics.kpis_rollup).
_ACTIVATION = """
SELECT {key} AS k, sum(t.issued)::bigint AS issued, sum(t.activated)::bigint AS activated
  FROM kpi_card_days t
 WHERE t.day >= $1 AND t.day < $2 AND ($3::text IS NULL OR t.store = $3)
 GROUP BY 1
"""

#: The counts of whole periods ($1 grain, $2 starts) in one scope: $3 store ('*': all), $4 source ('*': all);
#: a NULL $3 / $4 means every store / source apart (the rows of ``group_by=store`` / ``source``).
_WHOLE = """
SELECT {key} AS k, t.receipts, t.revenue, t.first_receipts AS firsts, t.buyers, t.repeat_buyers
  FROM kpi_buyer_counts t
 WHERE t.grain = $1 AND t.period_start = ANY($2::date[])
   AND (CASE WHEN $3::text IS NULL THEN t.store <> '*' ELSE t.store = $3 END)
   AND (CASE WHEN $4::text IS NULL THEN t.source <> '*' ELSE t.source = $4 END)
"""

#: Net points per hour (the ledger's identity: the sum of entries is what the program owes, debts netted).
_NET_POINTS = "accrued + granted + adjusted + returned - spent - taken_back - expired"


class KpiService:
    def __init__(self, program: Program) -> None:
        self.program = program

    async def report(
        self, conn: Connection, *, first: date, end: date, store: str | None, group_by: GroupBy | None
    ) -> KpiReport:
        check_period(first, end)
        # One snapshot for all the report's statements; no JIT (compiling its plans costs more than running
        # them, seconds on a busy machine).
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.execute("SET LOCAL jit = off")
            return await self._report(conn, first, end, store, group_by)

    async def _report(
        self, conn: Connection, first: date, end: date, store: str | None, group_by: GroupBy | None
    ) -> KpiReport:
        program = self.program
        hi = _local_midnight(end, program)
        counts, keys = await self._counts(conn, first, end, store, group_by)
        rows: list[KpiRow] = []
        if group_by in ("day", "week", "month"):
            buckets = _buckets(group_by, first, end)
            liabilities = await self._liabilities(conn, [_local_midnight(e, program) for _, e in buckets], store)
            wallets = await self._wallet_adoption(conn, [e for _, e in buckets], store)
            for (start, stop), liability, wallet in zip(buckets, liabilities, wallets, strict=True):
                c = counts[_bucket_key(group_by, start)]
                if liability is not None:
                    c.liability_points, c.liability_pending_points = liability
                c.active_cards, c.wallet_passes = wallet
                rows.append(row(c, period_start=start, period_end=stop))
        elif group_by is None:
            c = counts[""]
            (liability,) = await self._liabilities(conn, [hi], store)
            if liability is not None:
                c.liability_points, c.liability_pending_points = liability
            ((c.active_cards, c.wallet_passes),) = await self._wallet_adoption(conn, [end], store)
            rows.append(row(c, period_start=first, period_end=end))
        else:
            for key in keys:
                named = key or None
                rows.append(
                    row(
                        counts[key],
                        period_start=first,
                        period_end=end,
                        store=named if group_by == "store" else None,
                        source=named if group_by == "source" else None,
                    )
                )
        updated, wallet_as_of, pending, periods = await conn.fetchrow(
            "SELECT (SELECT updated_at FROM kpi_feeds WHERE feed = 'round'),"
            " (SELECT updated_at FROM kpi_feeds WHERE feed = 'wallet' AND updated_at > '-infinity'),"
            " (SELECT count(*) FROM kpi_dirty_days), (SELECT count(*) FROM kpi_dirty_periods)"
        ) or (None, None, 0, 0)
        return KpiReport(
            from_=first,
            to=end,
            timezone=program.timezone,
            store=store,
            group_by=group_by,
            rows=rows,
            rollups_updated_at=updated,
            wallet_as_of=wallet_as_of,
            days_pending=pending,
            periods_pending=periods,
        )

    async def _counts(
        self, conn: Connection, first: date, end: date, store: str | None, group_by: GroupBy | None
    ) -> tuple[dict[str, Counts], list[str]]:
        """The additive counts of every row, by the row's key (a date, a store, a source, or '')."""
        program = self.program
        lo, hi = _local_midnight(first, program), _local_midnight(end, program)
        local_hour = f"(t.hour AT TIME ZONE '{_quoted_zone(program)}')::date"

        counts: dict[str, Counts] = defaultdict(Counts)
        for r in await self._identified(conn, first, end, store, group_by):
            c = counts[r["k"]]
            c.receipts_identified, c.revenue_identified = r["receipts"], r["revenue"]
            c.first_receipts, c.buyers, c.repeat_buyers = r["firsts"], r["buyers"], r["repeat_buyers"]
        for r in await conn.fetch(_ANONYMOUS.format(key=_key(group_by, "t.day")), first, end, store):
            c = counts[r["k"]]
            c.receipts_anonymous, c.revenue_anonymous = r["receipts"], r["revenue"]
        activation = await conn.fetch(_ACTIVATION.format(key=_key(group_by, "t.day")), first, end, store)
        points = await conn.fetch(_POINTS.format(key=_key(group_by, local_hour)), lo, hi, store)
        keys = _row_keys(group_by, first, end, counts, (r["k"] for r in [*activation, *points]))
        for key in keys:
            c = counts[key]
            c.cards_issued = c.cards_activated = 0
            c.points_accrued = c.points_spent = c.points_granted = c.points_adjusted = c.points_expired = 0
        for r in activation:
            c = counts[r["k"]]
            c.cards_issued, c.cards_activated = r["issued"], r["activated"]
        for r in points:
            c = counts[r["k"]]
            c.points_accrued, c.points_spent = r["accrued"], r["spent"]
            c.points_granted, c.points_adjusted, c.points_expired = r["granted"], r["adjusted"], r["expired"]
        if store is not None or group_by in ("store", "source"):
            # Points expire from lots, not at a till: the chain's figure only (as liability is).
            for key in keys:
                counts[key].points_expired = None

        return counts, keys

    async def _identified(
        self, conn: Connection, first: date, end: date, store: str | None, group_by: GroupBy | None
    ) -> list[Any]:
        """The identified receipts' counts per row: whole periods from their counts, the rest counted."""
        # A whole period the worker has not recounted since its days changed (new, or just after an
        # upgrade) is counted from its days like a partial one: slower, never a stale or missing row.
        dirty = {
            (r["grain"], r["period_start"])
            for r in await conn.fetch(
                "SELECT grain, period_start FROM kpi_dirty_periods"
                " WHERE period_start >= $1::date - 31 AND period_start < $2",
                first,
                end,
            )
        }
        if group_by in ("day", "week", "month"):
            whole: list[date] = []
            found: list[Any] = []
            for start, stop in _buckets(group_by, first, end):
                if _grain(start, stop) == group_by and (group_by, start) not in dirty:
                    whole.append(start)
                else:  # a week or month clipped by the report's bounds, or not yet recounted: its days, counted
                    key = f"'{_bucket_key(group_by, start)}'"
                    found += await conn.fetch(_IDENTIFIED.format(key=key), start, stop, store)
            if whole:
                found += await conn.fetch(_WHOLE.format(key="t.period_start::text"), group_by, whole, store or "*", "*")
            return found
        grain = _grain(first, end)
        if grain is None or (grain, first) in dirty:
            # A month of buyers hashed in memory (~100 MB at 10 M receipts a year) rather than spilled to disk.
            await conn.execute("SET LOCAL work_mem = '64MB'")
            return list(await conn.fetch(_IDENTIFIED.format(key=_key(group_by, "t.day")), first, end, store))
        scope = {None: (store or "*", "*"), "store": (store, "*"), "source": (store or "*", None)}[group_by]
        key = {None: "''", "store": "t.store", "source": "t.source"}[group_by]
        return list(await conn.fetch(_WHOLE.format(key=key), grain, [first], *scope))

    async def _liabilities(
        self, conn: Connection, ends: list[datetime], store: str | None
    ) -> list[tuple[int, int] | None]:
        """(points owed, of which pending) at each moment: points are the chain's, so none for one store."""
        if store is not None or not ends:
            return [None] * len(ends)
        pending = timedelta(hours=self.program.pending_hours)
        start = min(ends) - pending
        # Owed before ``start``: the whole UTC months before it, then the hours of its own month.
        base = await conn.fetchval(
            f"""
            SELECT ((SELECT coalesce(sum(net), 0) FROM kpi_points_months WHERE month < date_trunc('month', $1, 'UTC'))
                    + (SELECT coalesce(sum({_NET_POINTS}), 0) FROM kpi_points_hours
                        WHERE hour >= date_trunc('month', $1, 'UTC') AND hour < $1))::bigint
            """,
            start,
        )
        hours = await conn.fetch(
            f"""
            SELECT hour, sum({_NET_POINTS})::bigint AS net, sum(accrued)::bigint AS accrued
              FROM kpi_points_hours WHERE hour >= $1 AND hour < $2 GROUP BY hour ORDER BY hour
            """,
            start,
            max(ends),
        )
        moments = [h["hour"] for h in hours]
        owed_before = list(itertools.accumulate((h["net"] for h in hours), initial=base))
        accrued_before = list(itertools.accumulate((h["accrued"] for h in hours), initial=0))
        out: list[tuple[int, int] | None] = []
        for moment in ends:
            upto = bisect.bisect_left(moments, moment)
            since = bisect.bisect_left(moments, moment - pending)
            owed = owed_before[upto]
            out.append((owed, min(accrued_before[upto] - accrued_before[since], max(owed, 0))))
        return out

    async def _wallet_adoption(
        self, conn: Connection, ends: list[date], store: str | None
    ) -> list[tuple[int | None, int | None]]:
        """(active cards, of them with a pass on a phone) at each local midnight ``ends`` (the end of a
        period): the worker's last day row before it (``kpis_rollup.count_wallet_adoption``). Cards are the
        chain's: none for one store; none before the worker's first round."""
        if store is not None:
            return [(None, None)] * len(ends)
        days = await conn.fetch("SELECT day, active_cards, installed FROM kpi_wallet_days ORDER BY day")
        moments = [d["day"] for d in days]
        out: list[tuple[int | None, int | None]] = []
        for end in ends:
            before = bisect.bisect_left(moments, end)  # rows of days before ``end``: the state at its midnight
            if not days:
                out.append((None, None))
            elif before == 0:
                out.append((0, 0))
            else:
                out.append((days[before - 1]["active_cards"], days[before - 1]["installed"]))
        return out


def _quoted_zone(program: Program) -> str:
    """The zone name for SQL text; ``Program`` has checked it is a real zone (no quote can be in one)."""
    return program.timezone.replace("'", "''")


def _row_keys(
    group_by: GroupBy | None, first: date, end: date, counts: dict[str, Counts], more: Iterable[str]
) -> list[str]:
    if group_by is None:
        return [""]
    if group_by in ("day", "week", "month"):
        return [_bucket_key(group_by, start) for start, _ in _buckets(group_by, first, end)]
    return sorted({*counts, *more})


def to_csv(report: KpiReport) -> str:
    """The rows as CSV with a header of the JSON field names (shares as fractions, money in minor units)."""
    fields = [f.encode_name for f in msgspec.structs.fields(KpiRow)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(fields)
    for item in report.rows:
        values: dict[str, Any] = msgspec.to_builtins(item)
        writer.writerow(["" if values[f] is None else values[f] for f in fields])
    return out.getvalue()


class PromotionRow(msgspec.Struct, kw_only=True):
    """What a promotion did in the period: the orders where it applied to at least one line."""

    promotion: str
    """The id the engine recorded on the order lines it priced."""
    orders: int
    customers: int
    revenue: int
    """Net revenue of those orders (the whole check, after discounts, less refunds)."""
    discount: int
    """The discount this promotion gave on them."""
    points: int
    """Points the lines it applied to earned."""


class PromotionReport(msgspec.Struct, kw_only=True):
    from_: date = msgspec.field(name="from")
    to: date
    timezone: str
    store: str | None
    rows: list[PromotionRow]


#: Read from the orders at query time (not rolled up): a period's orders by their purchase time, their
#: lines, the refunds of the orders hit. Promotions are recorded per order line (``order_lines.promotion``).
_PROMOTIONS = """
WITH hit AS (
    SELECT l.promotion, o.id, o.customer_id, o.subtotal - o.discount AS gross,
           sum(l.discount) AS discount, sum(l.accrued_points) AS points
      FROM orders o JOIN order_lines l ON l.order_pk = o.id
     WHERE o.purchased_at >= $1 AND o.purchased_at < $2 AND l.promotion IS NOT NULL
       AND ($3::text IS NULL OR o.store = $3)
     GROUP BY l.promotion, o.id
)
SELECT h.promotion, count(*) AS orders, count(DISTINCT h.customer_id) AS customers,
       sum(h.gross - coalesce((SELECT sum(r.amount + r.points_returned) FROM refunds r
                                WHERE r.order_pk = h.id), 0))::bigint AS revenue,
       sum(h.discount)::bigint AS discount, sum(h.points)::bigint AS points
  FROM hit h GROUP BY h.promotion ORDER BY h.promotion
"""


async def promotions(
    conn: Connection, program: Program, *, first: date, end: date, store: str | None
) -> PromotionReport:
    """Per promotion: orders, customers, revenue, discount and points of the orders where it applied.

    The rows come from what the orders recorded, whichever engine priced them; a promotion's title and
    the rest of it are the managed promotions' (``GET /v1/admin/promotions/{id}``)."""
    check_period(first, end)
    found = await conn.fetch(_PROMOTIONS, _local_midnight(first, program), _local_midnight(end, program), store)
    return PromotionReport(
        from_=first,
        to=end,
        timezone=program.timezone,
        store=store,
        rows=[PromotionRow(**dict(r)) for r in found],
    )
