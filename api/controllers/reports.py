"""The program's numbers for its owner and marketers: the KPI report (JSON or CSV) and what each promotion did."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import QueryParameter

from analytics import access
from analytics.reports import GroupBy, KpiReport, PromotionReport, to_csv
from api.auth import ADMIN_SECURITY, require_permission, staff_of
from api.errors import problems
from api.state import provide_conn, services_of
from kartka.db import Connection
from kartka.keys import CODE_PATTERN
from kartka.staff import Permission, reach_of

CSV = "text/csv"


def _wants_csv(request: Request[Any, Any, State]) -> bool:
    accept = request.headers.get("accept", "")
    return request.accept.best_match([MediaType.JSON, CSV], default=MediaType.JSON) == CSV if accept else False


@dataclass
class CsvOperation(Operation):
    """A report answers in CSV too (``Accept: text/csv``): say so beside the JSON schema."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            ok.content = (ok.content or {}) | {
                CSV: OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.STRING, description="The rows, a header line of the JSON names")
                )
            }


class AdminReportController(Controller):
    path = "/v1/admin/reports"
    tags = ["admin"]  # noqa: RUF012
    # Store managers too, for their own stores (analytics.access refuses the rest).
    before_request = require_permission(Permission.REPORTS, Permission.STORE_REPORTS)
    security = ADMIN_SECURITY
    dependencies = {"conn": Provide(provide_conn)}  # noqa: RUF012

    @get(
        "/kpis",
        operation_id="adminKpiReport",
        summary="The program's KPIs over a period: identified share, repeat share, average checks, activation, ...",
        description="`from` and `to` are dates in the program's time zone, `to` exclusive. Without `group_by` one "
        "row for the period; `day`, `week` (Monday to Sunday, clipped to the period), `month`, `store` or `source` "
        "split it. `store` limits every receipt figure to one store. Shares are fractions 0–1 (null when there is "
        "nothing to divide), money is in minor units, points in hundredths. Refunds net amounts, and a receipt "
        "refunded in full does not count. Liability is the chain's (null per store or source); wallet adoption is "
        "the chain's at the end of each row's period (null per store or source). A store manager names one of "
        "their own stores (403 `store-forbidden` for another store or the whole chain). The definitions are in "
        "docs/analytics.md. "
        "`Accept: text/csv` gives the rows as CSV.",
        responses=problems(401, 403, 422)
        | {200: ResponseSpec(data_container=KpiReport, description="The report", examples=None)},
        operation_class=CsvOperation,
    )
    async def kpis(
        self,
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
        from_: Annotated[date, QueryParameter(name="from", description="First day, in the program's time zone")],
        to: Annotated[date, QueryParameter(description="The day after the last, in the program's time zone")],
        store: Annotated[str | None, QueryParameter(required=False, pattern=CODE_PATTERN)] = None,
        group_by: Annotated[GroupBy | None, QueryParameter(required=False)] = None,
    ) -> Response[Any]:
        reach = await reach_of(conn, staff_of(request))
        report = await access.kpi_report(
            conn, services_of(request.app.state).kpis, reach, first=from_, end=to, store=store, group_by=group_by
        )
        if _wants_csv(request):
            name = f"kpis-{from_.isoformat()}-{to.isoformat()}.csv"
            return Response(
                to_csv(report),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )
        return Response(report)

    @get(
        "/promotions",
        operation_id="adminPromotionReport",
        summary="What each promotion did over a period: orders, customers, revenue, discount, points",
        description="The orders purchased in the period (dates in the program's time zone, `to` exclusive) where a "
        "promotion applied to at least one line: how many, by how many customers, their net revenue (refunds "
        "netted), the discount that promotion gave and the points its lines earned. Read from the orders at "
        "query time.",
        responses=problems(401, 403, 422),
    )
    async def promotions(
        self,
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
        from_: Annotated[date, QueryParameter(name="from", description="First day, in the program's time zone")],
        to: Annotated[date, QueryParameter(description="The day after the last, in the program's time zone")],
        store: Annotated[str | None, QueryParameter(required=False, pattern=CODE_PATTERN)] = None,
    ) -> PromotionReport:
        services = services_of(request.app.state)
        reach = await reach_of(conn, staff_of(request))
        return await access.promotion_report(conn, services.program, reach, first=from_, end=to, store=store)
