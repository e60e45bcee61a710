"""HTTP client for a remote core engine (contract: ``docs/engine-contract.md``).

Every call has a deadline. ``calculate`` is a pure function and the notices of committed orders and
refunds carry an ``Idempotency-Key``, so all are retried on connection errors, timeouts and
502/503/504. Notices come from the outbox worker (``notifications/providers/engine.py``), which sends
them again later, with backoff, until the engine acknowledges. When the
engine is down, slow or answers something that does not fit the contract, the till still works: the
cart is priced in degraded mode (base-tier accrual, no promotions) and the answer says
``"engine": {"degraded": true}``. After repeated failures a circuit breaker skips the engine for a
while, so a dead engine does not add its timeout to every purchase.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import msgspec

from engine.embedded import EmbeddedEngine
from kartka.resilience import CircuitBreaker
from wallet.money import share_floor
from wallet.pricing import (
    EngineInfo,
    EngineNotice,
    EngineUnreachable,
    NoticeRejected,
    Pricing,
    PricingRequest,
)
from wallet.program import Program

logger = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({502, 503, 504})
#: Answers to a notice that may go away by themselves: send it again later.
#: Answers that refuse the request itself (its body): the engine is up and answering, and sending the
#: same request again will not help. Any other 4xx (401, 403, 404: a wrong token or URL) is ours to fix,
#: so a notice waits for it like an outage rather than being given up.
_REFUSED_STATUS = frozenset({400, 409, 413, 422})


class _Answer(msgspec.Struct):
    """What the engine must send back for ``calculate``; anything else counts as garbage."""

    lines: list[Any]
    max_redeem_points: int
    redeem_points: int
    accrue_points: int
    messages: list[Any] = []


class EngineFailure(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HttpEngine:
    name = "http"
    remote = True

    def __init__(
        self,
        base_url: str,
        program: Program,
        *,
        token: str | None = None,
        timeout: float = 0.8,
        retries: int = 1,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 0.5)),
            headers=headers,
            transport=transport,
        )
        self._retries = retries
        self._deadline = timeout  # for the whole call, retries included: the till never waits longer
        self._program = program
        self._fallback = EmbeddedEngine(program, name=self.name, degraded=True)
        self.breaker = breaker or CircuitBreaker()
        self._decoder = msgspec.json.Decoder(_Answer)

    async def _post(self, path: str, body: Any, idempotency_key: str | None = None) -> bytes:
        """POST ``body`` (msgspec-encodable), retried on transient failures; the answer's body."""
        if not self.breaker.allows():
            raise EngineFailure("circuit open")
        headers = {"Content-Type": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        payload = msgspec.json.encode(body)
        last: Exception | None = None
        deadline = asyncio.get_running_loop().time() + self._deadline
        for attempt in range(self._retries + 1):
            try:
                async with asyncio.timeout_at(deadline):
                    response = await self._client.post(path, content=payload, headers=headers)
            except (TimeoutError, httpx.TransportError) as exc:
                last = exc
                if asyncio.get_running_loop().time() >= deadline:
                    break  # the call's time is up: no retry
            else:
                if response.status_code in _RETRY_STATUS:
                    last = EngineFailure(f"HTTP {response.status_code}", response.status_code)
                elif response.status_code >= 400:
                    self.breaker.record(response.status_code in _REFUSED_STATUS)  # refused, but up
                    raise EngineFailure(f"HTTP {response.status_code}: {response.text[:200]}", response.status_code)
                else:
                    self.breaker.record(True)
                    return response.content
            if attempt < self._retries:
                await asyncio.sleep(0.05 * (attempt + 1))
        self.breaker.record(False)
        raise EngineFailure(str(last) or type(last).__name__, getattr(last, "status", None))

    async def calculate(self, request: PricingRequest) -> Pricing:
        try:
            answer = self._decoder.decode(await self._post("/calculate", request))
            pricing = self._check(answer, request)
        except (EngineFailure, msgspec.DecodeError, ValueError) as exc:
            logger.warning("core engine unavailable, pricing in degraded mode: %s", exc)
            return self._fallback.price(request)
        return pricing

    def _check(self, answer: _Answer, request: PricingRequest) -> Pricing:
        """Refuse answers that would break the program's rules or our ledger."""
        from wallet.pricing import LinePricing, Message  # noqa: PLC0415

        if len(answer.lines) != len(request.lines):
            raise ValueError("the engine priced a different number of lines")
        lines = tuple(msgspec.convert(line, LinePricing) for line in answer.lines)
        for line, priced in zip(request.lines, lines, strict=True):
            if priced.discount > line.total:
                raise ValueError(f"discount above the line total on {line.sku}")
        eligible = sum(
            line.total - priced.discount for line, priced in zip(request.lines, lines, strict=True) if not line.on_sale
        )
        cap = share_floor(eligible, self._program.redeem_cap_bp)  # the program's limit binds any engine
        if not 0 <= answer.max_redeem_points <= max(0, min(request.available_points, cap)):
            raise ValueError("max_redeem_points out of range")
        if not 0 <= answer.redeem_points <= min(answer.max_redeem_points, max(request.requested_points, 0)):
            raise ValueError("redeem_points out of range")
        if not 0 <= answer.accrue_points <= eligible - answer.redeem_points:
            raise ValueError("accrue_points out of range")
        messages = tuple(msgspec.convert(m, Message) for m in answer.messages)
        return Pricing(
            lines=lines,
            max_redeem_points=answer.max_redeem_points,
            redeem_points=answer.redeem_points,
            accrue_points=answer.accrue_points,
            messages=messages,
            engine=EngineInfo(name=self.name, degraded=False),
        )

    async def notify(self, notice: EngineNotice) -> None:
        """Tell the engine of a committed order or refund; returns once it acknowledged (any 2xx)."""
        try:
            await self._post(notice.path, notice.body, idempotency_key=notice.key)
        except EngineFailure as exc:
            if exc.status in _REFUSED_STATUS:
                raise NoticeRejected(str(exc)) from exc
            if exc.status in (401, 403, 404):
                logger.error("the core engine refuses notices with %s: check KARTKA_ENGINE_URL and its token", exc)
            raise EngineUnreachable(str(exc)) from exc

    async def close(self) -> None:
        await self._client.aclose()
