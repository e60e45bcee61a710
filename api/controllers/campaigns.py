"""Campaigns (admin): a marketing text to a segment, enqueued by the workers, and its progress."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import ResponseHeader, State
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter, QueryParameter

from api.auth import ADMIN_SECURITY, actor_of, require_permission
from api.errors import problems
from api.state import provide_conn, provide_tx, services_of
from kartka.bounds import INT64_MAX
from kartka.db import Connection
from kartka.staff import Permission
from notifications import campaigns
from notifications.campaigns import Campaign, CampaignInput

CampaignId = Annotated[int, PathParameter(ge=1, le=INT64_MAX, description="The campaign's id")]


class CampaignAccepted(msgspec.Struct, frozen=True):
    id: int
    status: str
    location: str


class AdminCampaignController(Controller):
    path = "/v1/admin/campaigns"
    tags = ["admin"]  # noqa: RUF012
    before_request = require_permission(Permission.CAMPAIGNS)
    security = ADMIN_SECURITY

    @post(
        "/",
        operation_id="adminCreateCampaign",
        summary="Send a marketing text to a segment (consenting shoppers only); enqueued by the workers",
        status_code=202,
        response_headers=[
            ResponseHeader(name="Location", description="The campaign, to follow its progress", documentation_only=True)
        ],
        responses=problems(401, 403),
        dependencies={"tx": Provide(provide_tx)},
    )
    async def create(
        self, data: JSONBody[CampaignInput], tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> Response[CampaignAccepted]:
        services = services_of(request.app.state)
        campaign_id = await campaigns.create(
            tx, data, program=services.program, now=services.clock.now(), created_by=actor_of(request)
        )
        location = f"/v1/admin/campaigns/{campaign_id}"
        return Response(
            CampaignAccepted(id=campaign_id, status="enqueuing", location=location),
            status_code=202,
            headers={"Location": location},
        )

    @get(
        "/",
        operation_id="adminListCampaigns",
        summary="The newest campaigns with their status and counts, a page at a time",
        description="Pages go back in time: the next page is `?before=<the last campaign's id>`.",
        responses=problems(401, 403),
        dependencies={"conn": Provide(provide_conn)},
    )
    async def list_campaigns(
        self,
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 20,
        before: Annotated[int | None, QueryParameter(ge=1, le=INT64_MAX, description="A campaign id")] = None,
    ) -> list[Campaign]:
        now = services_of(request.app.state).clock.now()
        return await campaigns.list_recent(conn, now, limit=limit, before=before)

    @get(
        "/{campaign_id:int}",
        operation_id="adminGetCampaign",
        summary="A campaign's status and counts (queued, sent, delivered, failed, cancelled)",
        responses=problems(401, 403, 404),
        dependencies={"conn": Provide(provide_conn)},
    )
    async def show(
        self, campaign_id: CampaignId, conn: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> Campaign:
        return await campaigns.get(conn, campaign_id, services_of(request.app.state).clock.now())
