"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.datastructures import State

from api.errors import problem_response, problems
from api.state import services_of
from kartka.heartbeat import seconds_since_last_beat

READY_TIMEOUT_SECONDS = 2.0


class HealthStatus(msgspec.Struct):
    status: str


class ReadyStatus(msgspec.Struct):
    status: str
    database: str
    migrations: str
    #: ``ok`` (a worker beat within ``KARTKA_WORKER_STALE_SECONDS``) or ``not checked`` (that setting is 0).
    worker: str


class HealthController(Controller):
    tags = ["health"]  # noqa: RUF012 - litestar reads these as class attributes

    @get("/health", operation_id="health", summary="Liveness: the process answers")
    async def health(self) -> HealthStatus:
        return HealthStatus(status="ok")

    @get(
        "/ready",
        operation_id="ready",
        summary="Readiness: the database answers, its schema is current and a worker is sending",
        responses=problems(503),
    )
    async def ready(self, request: Request[Any, Any, State]) -> Response[Any]:
        services = services_of(request.app.state)
        stale = services.settings.worker_stale_seconds
        silent: float | None = None
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                async with services.pool.acquire() as conn:
                    waiting = await services.schema.pending(conn)
                    if stale and not waiting:
                        silent = await seconds_since_last_beat(conn)
        except Exception as exc:
            return problem_response(
                request,
                503,
                f"The database is unreachable or failing ({type(exc).__name__})",
                code="not-ready",
            )
        if waiting:
            names = ", ".join(f"{m.version:04d}_{m.name}" for m in waiting)
            return problem_response(request, 503, f"Migrations not applied yet: {names}", code="not-ready")
        if stale and (silent is None or silent > stale):
            # Sign-in codes, card links and pass updates would pile up unsent: not ready (a worker anywhere
            # counts; `kartka serve` restarts its own, see kartka.supervisor).
            since = "has ever reported" if silent is None else f"has reported for {silent:.0f} s"
            return problem_response(
                request,
                503,
                f"No notification worker {since} (KARTKA_WORKER_STALE_SECONDS={stale:g}); messages are not being sent",
                code="not-ready",
            )
        worker = "ok" if stale else "not checked"
        return Response(ReadyStatus(status="ready", database="ok", migrations="current", worker=worker))
