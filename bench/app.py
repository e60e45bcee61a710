"""The service as it runs in production, plus one extra route for the benchmark's baseline: a bare
asyncpg single-row read through the same server stack (uvicorn + Litestar + the same pool), with the
same request shape as identify. Run by ``bench/run.py``; never part of the real app."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar import Litestar, post
from litestar.datastructures import State
from litestar.params import JSONBody

from api.state import services_of
from boot.web import create_app


class Code(msgspec.Struct):
    code: str


@post("/bench/baseline", status_code=200)
async def baseline(data: JSONBody[Code], state: State) -> dict[str, Any]:
    async with services_of(state).pool.acquire() as conn:
        row = await conn.fetchrow("SELECT number, customer_id FROM cards WHERE number = $1", data.code)
    return {"number": row["number"], "customer_id": row["customer_id"]} if row else {}


class ShiftedClock:
    """The system's time, moved to start at ``start``: a benchmark that prices carts prices them at the
    same hour of the day on every run (``BENCH_AT``), whenever it runs."""

    def __init__(self, start: datetime) -> None:
        self._offset = start - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


def create_bench_app() -> Litestar:
    at = os.environ.get("BENCH_AT")  # "HH:MM" UTC: the clock starts at its next occurrence
    app = create_app(clock=ShiftedClock(next_at(at)) if at else None)
    app.register(baseline)
    return app


def next_at(hour_minute: str) -> datetime:
    """The next moment (UTC) the clock shows ``HH:MM``: later than now, so what the benchmark seeded
    a moment ago is in the past for the shifted clock too."""
    hour, minute = (int(part) for part in hour_minute.split(":"))
    now = datetime.now(UTC)
    moment = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return moment if moment > now else moment + timedelta(days=1)
