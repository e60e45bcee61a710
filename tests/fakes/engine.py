"""A fake remote core engine speaking the contract in docs/engine-contract.md over real HTTP.

It runs under uvicorn in a background thread on a free port. Its ``mode`` decides how it behaves:
``ok`` prices carts by its own (recognisable) rules, ``slow`` answers after the client's deadline,
``garbage`` sends something that is not the contract, ``wrong-shape`` JSON of another shape, ``greedy``
lets points pay the whole cart (beyond the program's cap), ``error`` answers 503 ``fail_times`` times
before it recovers, ``down`` closes the port. It records what it was told.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Litestar, Request, Response, post
from litestar.params import FromPath

from tests.fakes.server import ThreadedServer

REMOTE_RATE_BP = 700  # a rate no configured tier has, so tests can tell who priced the cart


class FakeEngine(ThreadedServer):
    def __init__(self) -> None:
        super().__init__()
        self.mode = "ok"
        self.fail_times = 0
        self.fail_status = 503
        self.delay = 2.0
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    # -- the contract ---------------------------------------------------------------------------

    async def _gate(self, path: str, request: Request[Any, Any, Any]) -> Response[Any] | None:
        body = await request.json()
        self.calls.append((path, body, dict(request.headers)))
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        if self.mode == "error" and self.fail_times > 0:
            self.fail_times -= 1
            return Response({"error": "overloaded"}, status_code=self.fail_status)
        if self.mode == "garbage":
            return Response(b"<html>oops</html>", media_type="text/html")
        if self.mode == "wrong-shape":
            return Response({"lines": "nope", "accrue_points": -1})
        return None

    def _price(self, body: dict[str, Any]) -> dict[str, Any]:
        lines = []
        eligible = 0
        for line in body["lines"]:
            total = line["qty"] * line["unit_price"]
            discount = 100 if total >= 1_000 and not line.get("on_sale") else 0
            lines.append({"discount": discount, "promotion": "remote-100" if discount else None})
            if not line.get("on_sale"):
                eligible += total - discount
        share = eligible if self.mode == "greedy" else eligible // 2  # greedy: breaks the 70% cap
        max_redeem = max(0, min(body["available_points"], share))
        redeem = min(body["requested_points"], max_redeem)
        return {
            "lines": lines,
            "max_redeem_points": max_redeem,
            "redeem_points": redeem,
            "accrue_points": (eligible - redeem) * REMOTE_RATE_BP // 10_000,
            "messages": [{"code": "remote", "text": "priced by the core engine"}],
        }

    def asgi(self) -> Any:
        return self.app()

    def app(self) -> Litestar:
        engine = self

        @post("/calculate", status_code=200)
        async def calculate(request: Request[Any, Any, Any]) -> Response[Any]:
            failure = await engine._gate("/calculate", request)
            return failure or Response(engine._price(engine.calls[-1][1]))

        @post("/orders", status_code=200)
        async def orders(request: Request[Any, Any, Any]) -> Response[Any]:
            failure = await engine._gate("/orders", request)
            return failure or Response({"ok": True})

        @post("/orders/{order_id:str}/refunds", status_code=200)
        async def refunds(order_id: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
            failure = await engine._gate(f"/orders/{order_id}/refunds", request)
            return failure or Response({"ok": True})

        return Litestar([calculate, orders, refunds], logging_config=None)

    # -- the server -----------------------------------------------------------------------------

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.calls]
