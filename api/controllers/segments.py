"""Saved segments (admin): save a rule, count and list its customers, export them, preview a rule;
and the reports that read segments: figures per segment, a campaign's results against its control group."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.response import Stream

from analytics import segments, segments_report
from analytics.segments import MemberPage, Preview, PreviewInput, Segment, SegmentInput
from analytics.segments_report import Grouping, RfmGrid, SegmentsReport
from api.auth import ADMIN_SECURITY, actor_of, require_permission
from api.errors import problems
from api.state import provide_conn, provide_tx, services_of
from kartka.bounds import INT64_MAX
from kartka.db import Connection
from kartka.staff import Permission
from notifications import campaigns
from notifications.campaigns import CampaignReport

SegmentPath = Annotated[
    str, PathParameter(pattern=segments.SEGMENT_ID_PATTERN, description="The segment's id (you choose it)")
]


class AdminSegmentController(Controller):
    path = "/v1/admin/segments"
    tags = ["admin"]  # noqa: RUF012
    before_request = require_permission(Permission.CAMPAIGNS)
    security = ADMIN_SECURITY

    @put(
        "/{segment_id:str}",
        operation_id="adminPutSegment",
        summary="Save a segment: a rule over customer facts (all fields optional, ANDed); counted at once",
        description=(
            "201 when created, 200 when replaced. `any_of` / `none_of` name other saved segments; a rule that "
            "would reach itself through them is refused (422, `segment-cycle`)."
        ),
        status_code=200,
        responses=problems(401, 403, 422) | {201: ResponseSpec(Segment, description="Created")},
        dependencies={"tx": Provide(provide_tx)},
    )
    async def put_segment(
        self,
        segment_id: SegmentPath,
        data: JSONBody[SegmentInput],
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Response[Segment]:
        services = services_of(request.app.state)
        segment, created = await segments.put(
            tx, segment_id, data, program=services.program, now=services.clock.now(), actor=actor_of(request)
        )
        return Response(segment, status_code=201 if created else 200)

    @get(
        "/",
        operation_id="adminListSegments",
        summary="Every saved segment with its size when last counted",
        responses=problems(401, 403),
        dependencies={"conn": Provide(provide_conn)},
    )
    async def list_segments(self, conn: NamedDependency[Connection]) -> list[Segment]:
        return await segments.list_all(conn)

    @get(
        "/{segment_id:str}",
        operation_id="adminGetSegment",
        summary="A segment: its rule, size and when it was counted (on save and daily)",
        responses=problems(401, 403, 404),
        dependencies={"conn": Provide(provide_conn)},
    )
    async def show(self, segment_id: SegmentPath, conn: NamedDependency[Connection]) -> Segment:
        return await segments.get(conn, segment_id)

    @delete(
        "/{segment_id:str}",
        operation_id="adminDeleteSegment",
        summary="Delete a segment no other segment and no campaign still to be sent names (409 otherwise)",
        responses=problems(401, 403, 404, 409),
        dependencies={"tx": Provide(provide_tx)},
    )
    async def remove(self, segment_id: SegmentPath, tx: NamedDependency[Connection]) -> None:
        await campaigns.delete_segment(tx, segment_id)

    @get(
        "/{segment_id:str}/customers",
        operation_id="adminSegmentCustomers",
        summary="The segment's customers now, a page at a time in id order (pass `next_cursor` as `cursor`)",
        responses=problems(401, 403, 404, 422),
        dependencies={"conn": Provide(provide_conn)},
    )
    async def customers(
        self,
        segment_id: SegmentPath,
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
        cursor: Annotated[str | None, QueryParameter(max_length=64)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = segments.PAGE,
    ) -> MemberPage:
        services = services_of(request.app.state)
        return await segments.members(
            conn, segment_id, cursor=cursor, limit=limit, program=services.program, now=services.clock.now()
        )

    @get(
        "/{segment_id:str}/export.csv",
        operation_id="adminExportSegment",
        summary="The segment's customers as CSV, streamed (spreadsheet formulas neutralised)",
        media_type="text/csv",
        responses=problems(401, 403, 404),
    )
    async def export(self, segment_id: SegmentPath, request: Request[Any, Any, State]) -> Stream:
        services = services_of(request.app.state)
        rows = await segments.export_csv(services.pool, segment_id, program=services.program, now=services.clock.now())
        return Stream(
            rows,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="segment-{segment_id}.csv"'},
        )

    @post(
        "/preview",
        operation_id="adminPreviewSegment",
        summary="Count a rule's customers and show 20 of them, without saving it",
        status_code=200,
        responses=problems(401, 403, 422),
        dependencies={"conn": Provide(provide_conn)},
    )
    async def preview(
        self, data: JSONBody[PreviewInput], conn: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> Preview:
        services = services_of(request.app.state)
        return await segments.preview(conn, data.rule, program=services.program, now=services.clock.now())


class AdminSegmentReportController(Controller):
    path = "/v1/admin/reports"
    tags = ["admin"]  # noqa: RUF012
    before_request = require_permission(Permission.REPORTS)
    security = ADMIN_SECURITY
    dependencies = {"conn": Provide(provide_conn)}  # noqa: RUF012

    @get(
        "/segments",
        operation_id="adminReportSegments",
        summary="Per segment (RFM, lifecycle stage or saved): size, CLTV mean and median, share of revenue",
        responses=problems(401, 403),
    )
    async def segments_report(
        self,
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
        by: Annotated[Grouping, QueryParameter(description="rfm, lifecycle or saved")] = "rfm",
    ) -> SegmentsReport:
        services = services_of(request.app.state)
        return await segments_report.report(conn, by, program=services.program, now=services.clock.now())

    @get(
        "/rfm-grid",
        operation_id="adminReportRfmGrid",
        summary="Scored customers by recency and frequency score: the 5 x 5 RFM grid",
        description='A cell\'s customers are the segment rule `{"rfm_r": {"min": r, "max": r}, "rfm_f": …}`.',
        responses=problems(401, 403),
    )
    async def rfm_grid(self, conn: NamedDependency[Connection]) -> RfmGrid:
        return await segments_report.rfm_grid(conn)

    @get(
        "/campaigns/{campaign_id:int}",
        operation_id="adminReportCampaign",
        summary="A campaign's results: sent, delivered, failed; purchases by recipients against the control group",
        responses=problems(401, 403, 404),
    )
    async def campaign_report(
        self,
        campaign_id: Annotated[int, PathParameter(ge=1, le=INT64_MAX, description="The campaign's id")],
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
        days: Annotated[int, QueryParameter(ge=1, le=365, description="Purchases within this many days")] = (
            campaigns.REPORT_DAYS
        ),
    ) -> CampaignReport:
        return await campaigns.report(conn, campaign_id, days=days, now=services_of(request.app.state).clock.now())
