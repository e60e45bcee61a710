"""Promotions as managed data (``specs/promotions.md``): the admin API that drafts, approves and runs
them, arbitration groups, personal offers, and the shopper's ``GET /v1/me/offers``.

Thin: each handler parses, calls :class:`engine.promotions.store.PromotionAdmin` in one transaction, and
returns. Roles: ``marketer`` drafts and manages, ``admin`` also approves, ``support`` reads; an admin key
may do everything except approve its own revisions.
"""

from __future__ import annotations

from typing import Annotated, Any, Final
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.datastructures import ResponseHeader, State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter

from api.auth import ADMIN_SECURITY, SHOPPER_SCHEME, actor_of, require_permission, require_shopper, shopper_of
from api.errors import problems
from api.state import Services, provide_conn, provide_tx, services_of
from engine.promotions.model import Group, Promotion
from engine.promotions.offers import ShopperOffer
from engine.promotions.store import (
    HistoryEntry,
    ManagedRemotely,
    Offer,
    OfferInput,
    PromotionGroup,
    PromotionSummary,
    PromotionView,
    Status,
)
from engine.promotions.trial import Backtest, BacktestInput, PromotionPreview, PromotionPreviewInput, Trials
from kartka.db import Connection
from kartka.staff import Permission

PromotionId = Annotated[
    str, PathParameter(pattern=r"^[a-z0-9-]{1,64}$", max_length=64, description="The promotion's id")
]
GroupId = Annotated[str, PathParameter(pattern=r"^[a-z0-9-]{1,64}$", max_length=64, description="The group's id")]
_READ: Final = require_permission(Permission.PROMOTIONS_READ)
_MANAGE: Final = require_permission(Permission.PROMOTIONS)
_APPROVE: Final = require_permission(Permission.PROMOTIONS_APPROVE)
#: What every promotions endpoint may answer besides its own: 409 ``promotions-managed-remotely`` when a
#: remote engine prices (``KARTKA_ENGINE=http``).
_READS: Final = problems(401, 403, 404, 409)
_CHANGES: Final = problems(401, 403, 404, 409)


def _trials(services: Services) -> Trials:
    if services.trials is None:
        raise ManagedRemotely("promotions are managed in the remote core engine (KARTKA_ENGINE=http); try them there")
    return services.trials


class Rejection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class AdminPromotionController(Controller):
    path = "/v1/admin/promotions"
    tags = ["promotions"]  # noqa: RUF012
    security = ADMIN_SECURITY
    dependencies = {"tx": Provide(provide_tx), "conn": Provide(provide_conn)}  # noqa: RUF012

    @post(
        "/",
        operation_id="adminCreatePromotion",
        summary="Draft a new promotion (revision 1, status draft); submit it for approval to run it",
        description="409 `promotion-exists` for a taken id; 422 names the field at fault. Marketer or admin.",
        status_code=201,
        before_request=_MANAGE,
        responses=problems(401, 403, 409),
        response_headers=[ResponseHeader(name="Location", description="The new promotion", documentation_only=True)],
    )
    async def create(
        self, data: JSONBody[Promotion], tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> Response[PromotionView]:
        services = services_of(request.app.state)
        view = await services.promotions.create(tx, data, actor=actor_of(request), now=services.clock.now())
        return Response(view, status_code=201, headers={"Location": f"/v1/admin/promotions/{view.id}"})

    @get(
        "/",
        operation_id="adminListPromotions",
        summary="Promotions, newest change first; `status` filters (archived ones only when asked), `q` searches "
        "id and title",
        before_request=_READ,
        responses=problems(401, 403, 409),
    )
    async def list_promotions(
        self,
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
        status: Annotated[Status | None, QueryParameter()] = None,
        q: Annotated[str | None, QueryParameter(min_length=1, max_length=100)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> list[PromotionSummary]:
        services = services_of(request.app.state)
        return await services.promotions.find(conn, status=status, q=q, limit=limit, now=services.clock.now())

    @post(
        "/preview",
        operation_id="adminPreviewPromotions",
        summary="Price a cart as a till would, with draft promotions added: per line every promotion applied, "
        "and why the others did not",
        description="`not_applied` gives each promotion that met the cart and did not apply with its reason: "
        "`audience`, `where`, `when`, `condition` or `limit`. Writes nothing. Every staff role.",
        status_code=200,
        before_request=_READ,
        responses=problems(401, 403, 404, 409),
    )
    async def preview(
        self,
        data: JSONBody[PromotionPreviewInput],
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> PromotionPreview:
        services = services_of(request.app.state)
        return await _trials(services).preview(conn, data, services.clock.now())

    @post(
        "/{promotion_id:str}/backtest",
        operation_id="adminBacktestPromotion",
        summary="What a promotion would have cost: the stored orders of a period re-priced with it (its draft, "
        "else its live revision) added",
        description="`{orders, orders_affected, customers_affected, discount, points}`: money and points beyond "
        "what the other promotions and the tiers gave; its own limits count as they would have. Every staff role.",
        status_code=200,
        before_request=_READ,
        responses=_READS,
    )
    async def backtest(
        self,
        promotion_id: PromotionId,
        data: JSONBody[BacktestInput],
        conn: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Backtest:
        return await _trials(services_of(request.app.state)).backtest(conn, promotion_id, data)

    @get(
        "/{promotion_id:str}",
        operation_id="adminGetPromotion",
        summary="A promotion: its status, live and draft revisions, and usage so far",
        before_request=_READ,
        responses=_READS,
    )
    async def show(
        self, promotion_id: PromotionId, conn: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> PromotionView:
        services = services_of(request.app.state)
        return await services.promotions.get(conn, promotion_id, services.clock.now())

    @get(
        "/{promotion_id:str}/history",
        operation_id="adminPromotionHistory",
        summary="Every change of a promotion, oldest first: who, when, what (old → new), approvals and rejections",
        before_request=_READ,
        responses=_READS,
    )
    async def history(
        self, promotion_id: PromotionId, conn: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> list[HistoryEntry]:
        return await services_of(request.app.state).promotions.history(conn, promotion_id)

    @put(
        "/{promotion_id:str}",
        operation_id="adminUpdatePromotion",
        summary="Edit a promotion: a new draft revision; a running one keeps its approved revision until this "
        "one is approved",
        before_request=_MANAGE,
        responses=_CHANGES,
    )
    async def update(
        self,
        promotion_id: PromotionId,
        data: JSONBody[Promotion],
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> PromotionView:
        services = services_of(request.app.state)
        return await services.promotions.update(
            tx, promotion_id, data, actor=actor_of(request), now=services.clock.now()
        )

    @post(
        "/{promotion_id:str}/submit",
        operation_id="adminSubmitPromotion",
        summary="Submit the draft revision for approval (without `promotion_approval` in the program: it runs)",
        status_code=200,
        before_request=_MANAGE,
        responses=_CHANGES,
    )
    async def submit(
        self, promotion_id: PromotionId, tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> PromotionView:
        services = services_of(request.app.state)
        return await services.promotions.submit(tx, promotion_id, actor=actor_of(request), now=services.clock.now())

    @post(
        "/{promotion_id:str}/approve",
        operation_id="adminApprovePromotion",
        summary="Approve the submitted revision: it runs on every till within a second (scheduled if it starts later)",
        description="Admin only, and not the revision's author (403 `four-eyes`).",
        status_code=200,
        before_request=_APPROVE,
        responses=_CHANGES,
    )
    async def approve(
        self, promotion_id: PromotionId, tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> PromotionView:
        services = services_of(request.app.state)
        return await services.promotions.approve(tx, promotion_id, actor=actor_of(request), now=services.clock.now())

    @post(
        "/{promotion_id:str}/reject",
        operation_id="adminRejectPromotion",
        summary="Send the submitted revision back to its author, with the reason",
        description="Admin only, and not the revision's author (403 `four-eyes`).",
        status_code=200,
        before_request=_APPROVE,
        responses=_CHANGES,
    )
    async def reject(
        self,
        promotion_id: PromotionId,
        data: JSONBody[Rejection],
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> PromotionView:
        services = services_of(request.app.state)
        return await services.promotions.reject(
            tx, promotion_id, data.reason, actor=actor_of(request), now=services.clock.now()
        )

    @post(
        "/{promotion_id:str}/pause",
        operation_id="adminPausePromotion",
        summary="Pause a running (or scheduled) promotion on every till at once",
        status_code=200,
        before_request=_MANAGE,
        responses=_CHANGES,
    )
    async def pause(
        self, promotion_id: PromotionId, tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> PromotionView:
        services = services_of(request.app.state)
        return await services.promotions.pause(tx, promotion_id, actor=actor_of(request), now=services.clock.now())

    @post(
        "/{promotion_id:str}/resume",
        operation_id="adminResumePromotion",
        summary="Resume a paused promotion",
        status_code=200,
        before_request=_MANAGE,
        responses=_CHANGES,
    )
    async def resume(
        self, promotion_id: PromotionId, tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> PromotionView:
        services = services_of(request.app.state)
        return await services.promotions.resume(tx, promotion_id, actor=actor_of(request), now=services.clock.now())

    @post(
        "/{promotion_id:str}/end",
        operation_id="adminEndPromotion",
        summary="End a promotion now, before its `ends_at`",
        status_code=200,
        before_request=_MANAGE,
        responses=_CHANGES,
    )
    async def end(
        self, promotion_id: PromotionId, tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> PromotionView:
        services = services_of(request.app.state)
        return await services.promotions.end(tx, promotion_id, actor=actor_of(request), now=services.clock.now())

    @post(
        "/{promotion_id:str}/archive",
        operation_id="adminArchivePromotion",
        summary="Hide a draft given up or a promotion that has ended (lists show it only when asked)",
        status_code=200,
        before_request=_MANAGE,
        responses=_CHANGES,
    )
    async def archive(
        self, promotion_id: PromotionId, tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> PromotionView:
        services = services_of(request.app.state)
        return await services.promotions.archive(tx, promotion_id, actor=actor_of(request), now=services.clock.now())


class AdminPromotionGroupController(Controller):
    path = "/v1/admin/promotion-groups"
    tags = ["promotions"]  # noqa: RUF012
    security = ADMIN_SECURITY
    dependencies = {"tx": Provide(provide_tx), "conn": Provide(provide_conn)}  # noqa: RUF012

    @get(
        "/",
        operation_id="adminListPromotionGroups",
        summary="Arbitration groups in the order they run (`default`, exclusive, priority 100, always exists)",
        before_request=_READ,
        responses=problems(401, 403, 409),
    )
    async def list_groups(
        self, conn: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> list[PromotionGroup]:
        return await services_of(request.app.state).promotions.groups(conn)

    @put(
        "/{group_id:str}",
        operation_id="adminPutPromotionGroup",
        summary="Create or change an arbitration group: how its promotions combine, when it runs, its cap",
        description="In force on every till within a second. Marketer or admin.",
        before_request=_MANAGE,
        responses=problems(401, 403, 409),
    )
    async def put_group(
        self,
        group_id: GroupId,
        data: JSONBody[Group],
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> PromotionGroup:
        services = services_of(request.app.state)
        return await services.promotions.put_group(
            tx, group_id, data, actor=actor_of(request), now=services.clock.now()
        )


class AdminOfferController(Controller):
    path = "/v1/admin/customers"
    tags = ["promotions"]  # noqa: RUF012
    security = ADMIN_SECURITY
    dependencies = {"tx": Provide(provide_tx), "conn": Provide(provide_conn)}  # noqa: RUF012

    @post(
        "/{customer_id:uuid}/offers",
        operation_id="adminGrantOffer",
        summary="Give a customer a personal offer: a promotion for `audience.personal` holders, until `valid_until`",
        description="Granting the same promotion again moves `valid_until`. Marketer or admin.",
        status_code=201,
        before_request=_MANAGE,
        responses=problems(401, 403, 404, 409),
    )
    async def grant(
        self,
        customer_id: FromPath[UUID],
        data: JSONBody[OfferInput],
        tx: NamedDependency[Connection],
        request: Request[Any, Any, State],
    ) -> Offer:
        services = services_of(request.app.state)
        return await services.promotions.grant_offer(
            tx, customer_id, data, actor=actor_of(request), now=services.clock.now()
        )

    @get(
        "/{customer_id:uuid}/offers",
        operation_id="adminListOffers",
        summary="A customer's personal offers that are still valid",
        before_request=_READ,
        responses=problems(401, 403, 409),
    )
    async def list_offers(
        self, customer_id: FromPath[UUID], conn: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> list[Offer]:
        services = services_of(request.app.state)
        return await services.promotions.offers(conn, customer_id, services.clock.now())


class MeOffersController(Controller):
    path = "/v1/me/offers"
    tags = ["app"]  # noqa: RUF012
    before_request = require_shopper
    security = [{SHOPPER_SCHEME: []}]  # noqa: RUF012
    dependencies = {"conn": Provide(provide_conn)}  # noqa: RUF012

    @get(
        "/",
        operation_id="appOffers",
        summary="The promotions this shopper can use now (their tier, their personal offers), in their language",
        responses=problems(401, 404),
    )
    async def offers(self, conn: NamedDependency[Connection], request: Request[Any, Any, State]) -> list[ShopperOffer]:
        services = services_of(request.app.state)
        return await services.shopper_offers.of(conn, shopper_of(request).subject, services.clock.now())
