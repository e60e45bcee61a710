"""The console's dashboard (``/console/dashboard``): the program's KPIs for a period and a store, and charts
of their series; and the stores an admin assigns to a store manager (``/console/staff/{username}/stores``).

The numbers come from the report ``GET /v1/admin/reports/kpis`` serves, read through the same entry point
(``analytics.access.kpi_report``), which also decides whose numbers a person may see: a store manager gets
the stores assigned to them and a 403 for any other, whichever way they ask.
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from typing import Annotated, Any, Final

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, QueryParameter

from analytics import access
from analytics.kpis import KpiRow
from analytics.reports import GroupBy, KpiReport
from api.console.charts import Chart, Format, Series, line_chart
from api.console.kit import STAFF, back_with_notice, language, render, sessions_of, signed_in, stale_form, status_of
from api.console.session import PATH, StaffSession
from api.console.texts import text
from api.state import Services, services_of
from kartka.bounds import parse_day
from kartka.errors import DomainError, Forbidden
from kartka.staff import Permission, Reach, reach_of
from kartka.texts import format_date, format_percent, format_points
from wallet.stores import list_stores

#: The period the dashboard opens with: the last 30 days, today included.
DEFAULT_DAYS: Final = 30
#: Longer periods are charted by week, then by month (a point a day would blur).
DAYS_BY_DAY: Final = 92
DAYS_BY_WEEK: Final = 731

_NO_VALUE: Final = "—"


def current_staff(request: Request[Any, Any, Any]) -> StaffSession:
    session: StaffSession = request.scope["state"][STAFF]
    return session


class Formats:
    """The dashboard's numbers in one language: shares as percentages, money with its currency, points."""

    def __init__(self, lang: str, currency: str) -> None:
        self.lang = lang
        self.currency = currency

    def share(self, value: float | None) -> str:
        if value is None:
            return _NO_VALUE
        number = format_percent(round(value * 10_000), self.lang)
        return f"{number}\u00a0%" if self.lang == "ru" else f"{number}%"

    def money(self, minor: float | None) -> str:
        return _NO_VALUE if minor is None else f"{format_points(round(minor), self.lang)}\u00a0{self.currency}"

    def points(self, hundredths: float | None) -> str:
        return _NO_VALUE if hundredths is None else format_points(round(hundredths), self.lang)

    def count(self, n: float | None) -> str:
        return _NO_VALUE if n is None else format_points(round(n) * 100, self.lang)

    def ratio(self, value: float | None) -> str:
        if value is None:
            return _NO_VALUE
        return "×" + format_percent(round(value * 100), self.lang)

    def day(self, day: date) -> str:
        return format_date(day, self.lang)


def _period_label(row: KpiRow, group_by: GroupBy, f: Formats) -> str:
    start = row.period_start or date.min
    if group_by == "month":
        return start.strftime("%m.%Y")
    return f.day(start)


def _axis_label(row: KpiRow, group_by: GroupBy) -> str:
    start = row.period_start or date.min
    return start.strftime("%m.%Y") if group_by == "month" else start.strftime("%d.%m")


def _charts(report: KpiReport, group_by: GroupBy, lang: str, f: Formats, *, chain: bool) -> list[Chart]:
    rows = report.rows
    periods = [_axis_label(r, group_by) for r in rows]

    def t(key: str) -> str:
        return text(lang, key)

    def series(key: str, values: list[float | None]) -> Series:
        return Series(t(key), values)

    def chart(chart_id: str, title: str, *lines: Series, fmt: Format, top: float | None = None) -> Chart:
        built = line_chart(chart_id, t(title), periods, lines, fmt, top=top)
        # The table names each period in full (the axis has only room for "03.02").
        full = [_period_label(r, group_by, f) for r in rows]
        table = [(label, values) for label, (_, values) in zip(full, built.table, strict=True)]
        return dataclasses.replace(built, table=table)

    out = [
        chart(
            "identified",
            "dashboard.chart.identified",
            series("dashboard.series.receipts", [r.identified_share_receipts for r in rows]),
            series("dashboard.series.revenue", [r.identified_share_revenue for r in rows]),
            fmt=f.share,
            top=1.0,
        ),
        chart(
            "repeat",
            "dashboard.chart.repeat",
            series("dashboard.series.repeat_receipts", [r.repeat_share for r in rows]),
            series("dashboard.series.repeat_buyers", [r.repeat_buyers_share for r in rows]),
            fmt=f.share,
            top=1.0,
        ),
        chart(
            "check",
            "dashboard.chart.check",
            series("dashboard.series.with_card", [_num(r.average_check_identified) for r in rows]),
            series("dashboard.series.without_card", [_num(r.average_check_anonymous) for r in rows]),
            fmt=f.money,
        ),
        chart(
            "activation",
            "dashboard.chart.activation",
            series("dashboard.series.activation", [r.card_activation_share for r in rows]),
            fmt=f.share,
            top=1.0,
        ),
        chart(
            "points",
            "dashboard.chart.points",
            series("dashboard.series.accrued", [_num(r.points_accrued) for r in rows]),
            series("dashboard.series.spent", [_num(r.points_spent) for r in rows]),
            series("dashboard.series.expired", [_num(r.points_expired) for r in rows]),
            fmt=f.points,
        ),
    ]
    if chain:  # liability is the chain's: the program owes points, not a store
        out.append(
            chart(
                "liability",
                "dashboard.chart.liability",
                series("dashboard.series.liability", [_num(r.liability_points) for r in rows]),
                series("dashboard.series.pending", [_num(r.liability_pending_points) for r in rows]),
                fmt=f.points,
            )
        )
    return out


def _num(value: int | None) -> float | None:
    return None if value is None else float(value)


def _tiles(row: KpiRow, f: Formats) -> list[tuple[str, str, str]]:
    """(label key, the figure, what it is made of) for the period as a whole."""
    return [
        (
            "dashboard.kpi.identified_receipts",
            f.share(row.identified_share_receipts),
            f"{f.count(row.receipts_identified)} / {f.count(row.receipts)}",
        ),
        (
            "dashboard.kpi.identified_revenue",
            f.share(row.identified_share_revenue),
            f"{f.money(row.revenue_identified)} / {f.money(row.revenue)}",
        ),
        (
            "dashboard.kpi.repeat_share",
            f.share(row.repeat_share),
            f"{f.count(row.repeat_receipts)} / {f.count(row.receipts_identified)}",
        ),
        (
            "dashboard.kpi.repeat_buyers",
            f.share(row.repeat_buyers_share),
            f"{f.count(row.repeat_buyers)} / {f.count(row.buyers)}",
        ),
        (
            "dashboard.kpi.check_with_card",
            f.money(row.average_check_identified),
            ""
            if row.average_check_uplift is None
            else text(f.lang, "dashboard.uplift", ratio=f.ratio(row.average_check_uplift)),
        ),
        ("dashboard.kpi.check_without_card", f.money(row.average_check_anonymous), ""),
        (
            "dashboard.kpi.activation",
            f.share(row.card_activation_share),
            f"{f.count(row.cards_activated_30d)} / {f.count(row.cards_issued)}",
        ),
        ("dashboard.kpi.accrued", f.points(row.points_accrued), ""),
        ("dashboard.kpi.spent", f.points(row.points_spent), f.share(row.points_burn_rate)),
        ("dashboard.kpi.expired", f.points(row.points_expired), ""),
        ("dashboard.kpi.liability", f.points(row.liability_points), f.money(row.liability_money)),
        ("dashboard.kpi.wallet", f.share(row.wallet_adoption_share), f.count(row.wallet_passes_installed)),
    ]


def _group_by(first: date, end: date) -> GroupBy:
    days = (end - first).days
    return "day" if days <= DAYS_BY_DAY else "week" if days <= DAYS_BY_WEEK else "month"


def _parse_day(value: str, default: date) -> date | None:
    value = value.strip()
    if not value:
        return default
    return parse_day(value)


def _stores_for(reach: Reach, known: list[str]) -> list[str]:
    """The stores the person may pick: every store, or theirs (even one the stores list has lost)."""
    return known if reach.stores is None else sorted(reach.stores)


class ConsoleDashboardController(Controller):
    path = f"{PATH}/dashboard"
    include_in_schema = False
    before_request = signed_in(Permission.REPORTS, Permission.STORE_REPORTS)

    @get("/", media_type="text/html")
    async def index(
        self,
        request: Request[Any, Any, State],
        from_: Annotated[str, QueryParameter(name="from", max_length=10)] = "",
        to: Annotated[str, QueryParameter(max_length=10)] = "",
        store: Annotated[str, QueryParameter(max_length=64)] = "",
    ) -> Response[Any]:
        services: Services = services_of(request.app.state)
        lang = language(request)
        program = services.program
        f = Formats(lang, program.currency)
        today = services.clock.now().astimezone(program.zone).date()
        async with services.pool.acquire() as conn:
            reach = await reach_of(conn, current_staff(request).staff)
            choices = _stores_for(reach, [s.code for s in await list_stores(conn)])
        chosen = store.strip() or None
        if chosen is None and not reach.whole_chain and choices:
            chosen = choices[0]  # a store manager opens on their first store
        first = _parse_day(from_, today - timedelta(days=DEFAULT_DAYS - 1))
        last = _parse_day(to, today)
        form = {"from": from_ or (first.isoformat() if first else ""), "to": to or (last.isoformat() if last else "")}
        context: dict[str, Any] = {
            "form": form,
            "store": chosen,
            "stores": choices,
            "chain": reach.whole_chain,
            "summary": None,
            "tiles": [],
            "charts": [],
            "error": None,
        }
        if not reach.whole_chain and not choices:
            return render(request, "console/dashboard/index.html", no_stores=True, **context)
        if first is None or last is None:
            context["error"] = text(lang, "dashboard.bad_date")
            return render(request, "console/dashboard/index.html", status=422, **context)
        end = last + timedelta(days=1)  # the form's last day is included; the report's `to` is exclusive
        group_by = _group_by(first, end)
        try:
            async with services.pool.acquire() as conn:
                whole = await access.kpi_report(
                    conn, services.kpis, reach, first=first, end=end, store=chosen, group_by=None
                )
                series = await access.kpi_report(
                    conn, services.kpis, reach, first=first, end=end, store=chosen, group_by=group_by
                )
        except Forbidden:
            return render(
                request,
                "console/message.html",
                status=403,
                title="forbidden.title",
                body="dashboard.store_forbidden",
            )
        except DomainError as exc:
            context["error"] = text(lang, "error", message=exc.message)
            return render(request, "console/dashboard/index.html", status=422, **context)
        summary = whole.rows[0]
        context |= {
            "summary": summary,
            "tiles": _tiles(summary, f),
            "charts": _charts(series, group_by, lang, f, chain=chosen is None),
            "group_by": group_by,
            "period": f"{f.day(first)} – {f.day(last)}",
            "lag": series.days_pending,
            "updated": series.rollups_updated_at,
        }
        return render(request, "console/dashboard/index.html", **context)


# -- a store manager's stores (admin) ---------------------------------------------------------------


class ConsoleStaffStoresController(Controller):
    """Assigning stores lives here rather than with the rest of the staff page: it is the store-manager role's."""

    path = f"{PATH}/staff"
    include_in_schema = False
    before_request = signed_in(Permission.STAFF)

    @post("/{username:str}/stores", media_type="text/html", status_code=200)
    async def assign(self, username: FromPath[str], request: Request[Any, Any, State]) -> Response[Any]:
        services = services_of(request.app.state)
        lang = language(request)
        form = await request.form()  # checkboxes: `stores` as often as there are ticks, or not at all
        token = form.get("csrf_token")
        wanted = [v for v in form.getall("stores") if isinstance(v, str)][:1000] if "stores" in form else []
        if not sessions_of(request).accepts(request, token if isinstance(token, str) else "", current_staff(request)):
            return stale_form(request)
        try:
            async with services.pool.acquire() as conn, conn.transaction():
                chosen = await access.assign_manager_stores(conn, username[:64], wanted)
        except DomainError as exc:
            message = text(lang, "error", message=exc.message)
            return render(
                request, "console/message.html", status=status_of(exc), title="dashboard.stores_failed", body=message
            )
        done = text(lang, "dashboard.stores_done", username=username[:64], stores=", ".join(chosen) or _NO_VALUE)
        return back_with_notice(request, f"{PATH}/staff", done)
