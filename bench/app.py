"""The service as it runs in production, plus one extra route for the benchmark's baseline: a bare
asyncpg single-row read through the same server stack (uvicorn + Litestar + the same pool), with the
same request shape as identify. Run by ``bench/run.py``; never part of the real app."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar, post
from litestar.datastructures import State
from litestar.params import JSONBody

from api.state import services_of
from main.web import create_app


class Code(msgspec.Struct):
    code: str


@post("/bench/baseline", status_code=200)
async def baseline(data: JSONBody[Code], state: State) -> dict[str, Any]:
    async with services_of(state).pool.acquire() as conn:
        row = await conn.fetchrow("SELECT number, customer_id FROM cards WHERE number = $1", data.code)
    return {"number": row["number"], "customer_id": row["customer_id"]} if row else {}


def create_bench_app() -> Litestar:
    app = create_app()
    app.register(baseline)
    return app
