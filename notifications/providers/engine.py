"""The remote core engine as an outbox channel: notices of committed orders and refunds.

The wallet writes a notice in the transaction of the order or refund (``WalletEvents.engine_notices``);
the worker hands it to the engine here, once the change has committed, and again with backoff while
the engine is down or overloaded (``ProviderUnavailable``, so the lane's circuit breaker spares it),
until it acknowledges. A notice the engine refuses outright is ``failed``, with its answer in
``last_error``. Each carries its own ``Idempotency-Key``: a notice sent twice (the engine took it, but
its answer was lost) is one notice to the engine. A refund's notice waits until its order's has been
acknowledged: the lane sends several at once, and an engine must not meet a refund of an order it has
not heard of. A refund of an order from before notices went through the outbox, which the engine never
acknowledged, waits for ``kartka engine renotify`` to queue that order's notice (its ``last_error`` says
so).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from kartka.db import Pool
from notifications.model import Channel, Outbound, Outcome, ProviderUnavailable, SendResult
from notifications.triggers import NOTICE_KEY_PREFIX
from wallet.orders import engine_acknowledged, unheard
from wallet.pricing import EngineNotice, EngineUnreachable, NoticeRejected, NoticeTaker

#: How many notices are in flight to the engine at once, and how many a second at most.
CONCURRENCY: Final = 8
RATE_PER_SECOND: Final = 500.0

_decoder = msgspec.json.Decoder(EngineNotice)


class EngineProvider:
    name = "engine"
    channels = frozenset({Channel.ENGINE})
    max_batch = 1  # one notice, one call; the lane runs several at once

    def __init__(self, engine: NoticeTaker, pool: Pool) -> None:
        self.engine = engine
        self.pool = pool

    async def send(self, messages: Sequence[Outbound]) -> list[SendResult]:
        results = []
        for message in messages:
            try:
                notice = _decoder.decode(message.payload)
            except msgspec.DecodeError as exc:
                results.append(SendResult(id=message.id, outcome=Outcome.FAILED, error=f"not a notice: {exc}"))
                continue
            waits = None if notice.after_order is None else await self._waits_for(notice.after_order)
            if waits is not None:
                # A refund waits for its order's notice, which may be in flight beside it right now.
                results.append(SendResult(id=message.id, outcome=Outcome.RETRY, error=waits, retry_after=1.0))
                continue
            try:
                await self.engine.notify(notice)
            except NoticeRejected as exc:
                results.append(SendResult(id=message.id, outcome=Outcome.FAILED, error=f"refused: {exc}"))
                continue
            except EngineUnreachable as exc:
                raise ProviderUnavailable(f"core engine: {exc}") from exc
            if notice.order_pk is not None:
                await engine_acknowledged(self.pool, notice.order_pk)
            results.append(SendResult(id=message.id, outcome=Outcome.DELIVERED, provider_message_id=notice.key))
        return results

    async def _waits_for(self, order_pk: int) -> str | None:
        """Why a refund of this order is not to be sent yet, or ``None``: the order's notice is still on
        its way (queued or being sent), or the order is one this engine priced before notices went
        through the outbox and never acknowledged, whose notice is not queued yet. A notice the engine
        refused, or an order the embedded engine priced (never told), holds nothing back."""
        status = await self.pool.fetchval(
            "SELECT status FROM outbox WHERE idempotency_key = $1", f"{NOTICE_KEY_PREFIX}order-{order_pk}"
        )
        if status in ("queued", "sending"):
            return "waits for its order"
        if status is None and await unheard(self.pool, order_pk, engine=self.engine.name):
            return (
                "waits for its order, from before engine notices went through the outbox: run `kartka engine renotify`"
            )
        return None

    async def aclose(self) -> None:
        await self.engine.close()
