"""The outbox worker: claims due messages, sends them through their channel's provider, records the result.

Claiming is ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)``: any number of workers on any
number of machines take disjoint batches. A claimed row is ``sending`` with a lease; a worker that dies
mid-batch leaves leases that expire, and any worker puts those rows back in the queue. Results are
written back guarded by ``status = 'sending' AND worker = me``, so a worker that lost its lease cannot
overwrite what another did. A retried message carries the same provider message id / idempotency key,
so a provider that honours it never shows the shopper a message twice.

Each channel has a lane: its provider, a concurrency limit, a rate limit (token bucket) and a circuit
breaker. A lane whose breaker is open puts its messages back for later without spending an attempt,
so an outage of one provider backs off without holding up the others. Transient failures retry with
exponential backoff and full jitter (or the provider's Retry-After); after ``max_attempts`` a message
is ``dead``. Viber messages that fail, die, or are not delivered within the fallback delay are sent
again by SMS (see :meth:`Dispatcher.fallbacks`).

Wake-ups come from ``LISTEN kartka_outbox`` (producers ``NOTIFY`` at commit); a poll every
``poll_seconds`` covers lost notifications and messages scheduled for later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from time import monotonic
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import msgspec

from kartka.clock import Clock
from kartka.db import Pool
from kartka.listen import Connect, Listener
from kartka.resilience import CircuitBreaker, TokenBucket, backoff
from notifications import campaigns
from notifications.model import (
    PASS_CHANNELS,
    Category,
    Channel,
    Outbound,
    Outcome,
    Provider,
    ProviderUnavailable,
    SendResult,
    Status,
)
from notifications.outbox import WAKE_CHANNEL
from notifications.preferences import OptOutLinks
from notifications.templates import DEFAULT_BRAND, TemplateError, render
from wallet.passes.service import forget_push_tokens
from wallet.program import Program

logger = logging.getLogger(__name__)
_json = msgspec.json.Encoder()

#: Longest pause between retries of a loop that keeps failing (the database is away for long).
_MAX_BACKOFF_SECONDS: Final = 30.0
#: Errors that mean the database is away rather than a bug: logged without a traceback.
_DATABASE_AWAY: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


class LaneClosed(Exception):
    """The lane's circuit breaker is open: try again in ``retry_after`` seconds, no attempt spent."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"circuit open for {retry_after:.1f} s")
        self.retry_after = retry_after


class Lane:
    """One channel's provider with its concurrency limit, rate limit and circuit breaker."""

    def __init__(
        self,
        provider: Provider,
        *,
        rate_per_second: float,
        concurrency: int,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.provider = provider
        self.bucket = TokenBucket(rate_per_second, burst=max(rate_per_second, float(provider.max_batch)))
        self.slots = asyncio.Semaphore(concurrency)
        self.breaker = breaker or CircuitBreaker(threshold=5, cooldown=30.0)

    async def send(self, messages: Sequence[Outbound]) -> list[SendResult]:
        if not self.breaker.allows():
            raise LaneClosed(self.breaker.remaining())
        async with self.slots:
            await self.bucket.acquire(len(messages))
            try:
                results = await self.provider.send(messages)
            except ProviderUnavailable:
                self.breaker.record(False)
                raise
        self.breaker.record(True)
        return results


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    batch: int = 500
    loops: int = 4
    max_attempts: int = 8
    lease_seconds: float = 60.0
    poll_seconds: float = 2.0
    backoff_seconds: float = 5.0
    backoff_max_seconds: float = 3600.0
    viber_fallback_seconds: int = 600
    brand: str = DEFAULT_BRAND  # the program's name as shoppers know it: sign-in codes and card links say it


_CLAIM: Final = """
    WITH due AS (
        SELECT id FROM outbox WHERE status = 'queued' AND due_at <= $1
         ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED
    )
    UPDATE outbox o SET status = 'sending', attempts = o.attempts + 1, worker = $4, updated_at = $1,
                        lease_until = $1 + make_interval(secs => $3)
      FROM due WHERE o.id = due.id
    RETURNING o.id, o.idempotency_key, o.customer_id, o.campaign_id, o.channel, o.recipient, o.category,
              o.template, o.locale, o.params, o.attempts, o.quiet_tz, o.quiet_start, o.quiet_end,
              (o.category = 'marketing' AND NOT EXISTS (
                   SELECT 1 FROM notification_preferences p WHERE p.customer_id = o.customer_id AND p.marketing
              )) AS opted_out
"""

_APPLY: Final = """
    UPDATE outbox o
       SET status = u.status, due_at = coalesce(u.due_at, o.due_at), attempts = o.attempts + u.delta,
           provider = coalesce(u.provider, o.provider),
           provider_message_id = coalesce(u.pmid, o.provider_message_id),
           last_error = u.error, fallback_at = u.fallback_at, lease_until = NULL, updated_at = $10,
           sent_at = CASE WHEN u.status IN ('sent', 'delivered') THEN $10 ELSE o.sent_at END,
           delivered_at = CASE WHEN u.status = 'delivered' THEN $10 ELSE o.delivered_at END,
           -- a sign-in code is not kept once it left (or can no longer leave); a Viber one stays until its
           -- SMS fallback has copied it (see fallbacks) or it is delivered
           params = CASE WHEN o.template = 'otp' AND u.status <> 'queued'
                          AND (o.channel <> 'viber' OR u.status = 'delivered') THEN '{}'::jsonb ELSE o.params END
      FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::int[], $5::text[], $6::text[], $7::text[],
                  $8::timestamptz[]) AS u (id, status, due_at, delta, provider, pmid, error, fallback_at)
     WHERE o.id = u.id AND o.status = 'sending' AND o.worker = $9
"""


@dataclass(slots=True)
class _Updates:
    ids: list[int] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    due_at: list[datetime | None] = field(default_factory=list)
    delta: list[int] = field(default_factory=list)
    provider: list[str | None] = field(default_factory=list)
    pmid: list[str | None] = field(default_factory=list)
    error: list[str | None] = field(default_factory=list)
    fallback_at: list[datetime | None] = field(default_factory=list)
    unregistered: list[str] = field(default_factory=list)  # app push tokens APNs or FCM called dead
    dead_pass_tokens: list[str] = field(default_factory=list)  # Wallet push tokens APNs called dead
    attempts: dict[int, int] = field(default_factory=dict)  # per claimed id, this attempt's number

    def add(
        self,
        id_: int,
        status: Status,
        *,
        due_at: datetime | None = None,
        delta: int = 0,
        provider: str | None = None,
        pmid: str | None = None,
        error: str | None = None,
        fallback_at: datetime | None = None,
    ) -> None:
        self.ids.append(id_)
        self.status.append(status.value)
        self.due_at.append(due_at)
        self.delta.append(delta)
        self.provider.append(provider)
        self.pmid.append(pmid)
        self.error.append(error[:500] if error else None)
        self.fallback_at.append(fallback_at)


class Dispatcher:
    def __init__(
        self,
        pool: Pool,
        lanes: Mapping[Channel, Lane],
        *,
        clock: Clock,
        opt_out: OptOutLinks,
        config: WorkerConfig | None = None,
        name: str | None = None,
        program: Program | None = None,
    ) -> None:
        self.pool = pool
        self.lanes = dict(lanes)
        self.clock = clock
        self.opt_out = opt_out
        self.config = config or WorkerConfig()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.program = program  # campaigns are enqueued by workers that know the program
        self._campaign_texts: dict[int, dict[str, str]] = {}
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        #: When (monotonic) the worker last moved: a loop came round, a provider answered, a campaign chunk
        #: was enqueued. The heartbeat stops when this stops (a worker stuck, not merely slowed by a rate
        #: limit or a big campaign).
        self.progress = monotonic()
        #: When (monotonic) a loop last came round, whether its round worked or failed (the database away,
        #: a provider down): the worker's loops are alive, not hung. Its watchdog reads this.
        self.alive = monotonic()

    # -- one batch ------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim one batch of due messages, send them, record the results; returns how many were claimed."""
        now = self.clock.now()
        rows = await self.pool.fetch(_CLAIM, now, self.config.batch, self.config.lease_seconds, self.name)
        if not rows:
            return 0
        updates = _Updates(attempts={row["id"]: row["attempts"] for row in rows})
        by_channel: dict[Channel, list[Outbound]] = defaultdict(list)
        for row in rows:
            outbound = await self._prepare(row, now, updates)
            if outbound is not None:
                by_channel[outbound.channel].append(outbound)
        sends = []
        for channel, messages in by_channel.items():
            lane = self.lanes.get(channel)
            if lane is None:
                for m in messages:
                    updates.add(m.id, Status.FAILED, error=f"no provider is configured for {channel.value}")
                continue
            size = lane.provider.max_batch
            sends += [self._send(lane, messages[i : i + size], updates) for i in range(0, len(messages), size)]
        await asyncio.gather(*sends)
        await self._apply(updates)
        return len(rows)

    async def _prepare(self, row: asyncpg.Record, now: datetime, updates: _Updates) -> Outbound | None:
        channel = Channel(row["channel"])
        if channel is Channel.ENGINE:  # a notice for the remote engine: sent as it was written
            return Outbound(
                id=row["id"],
                key=row["idempotency_key"],
                channel=channel,
                recipient=row["recipient"],
                text="",
                payload=_json.encode(row["params"]),
            )
        if channel in PASS_CHANNELS:  # a wallet pass changed: no text; the provider knows what to send
            return Outbound(
                id=row["id"], key=row["idempotency_key"], channel=channel, recipient=row["recipient"], text=""
            )
        marketing = row["category"] == Category.MARKETING
        if row["opted_out"]:
            updates.add(row["id"], Status.CANCELLED, delta=-1, error="marketing consent withdrawn")
            return None
        if marketing and row["quiet_tz"] is not None:
            resume = quiet_until(now, row["quiet_tz"], row["quiet_start"], row["quiet_end"])
            if resume is not None:
                updates.add(row["id"], Status.QUEUED, due_at=resume, delta=-1)
                return None
        params: dict[str, Any] = dict(row["params"])
        if row["campaign_id"] is not None:
            texts = await self._campaign(row["campaign_id"])
            params["text"] = texts.get(row["locale"]) or next(iter(texts.values()))
        try:
            rendered = render(
                row["template"],
                row["locale"],
                params,
                opt_out_url=self.opt_out.url(row["customer_id"]) if marketing and row["customer_id"] else None,
                brand=self.config.brand,
            )
        except TemplateError as exc:
            updates.add(row["id"], Status.FAILED, error=f"template: {exc}")
            return None
        return Outbound(
            id=row["id"],
            key=row["idempotency_key"],
            channel=channel,
            recipient=row["recipient"],
            text=rendered.text,
            title=rendered.title,
            data={"kind": row["template"]},
            validity_seconds=self.config.viber_fallback_seconds if channel is Channel.VIBER else None,
        )

    async def _campaign(self, campaign_id: int) -> dict[str, str]:
        texts = self._campaign_texts.get(campaign_id)
        if texts is None:
            texts = await self.pool.fetchval("SELECT texts FROM campaigns WHERE id = $1", campaign_id) or {}
            self._campaign_texts[campaign_id] = texts
        return texts

    async def _send(self, lane: Lane, messages: Sequence[Outbound], updates: _Updates) -> None:
        name = lane.provider.name
        now = self.clock.now()
        try:
            results = await lane.send(messages)
            self.progress = monotonic()
        except LaneClosed as closed:
            later = now + timedelta(seconds=closed.retry_after + random.uniform(0, 1))  # noqa: S311
            for m in messages:
                updates.add(m.id, Status.QUEUED, due_at=later, delta=-1, error=str(closed))
            return
        except ProviderUnavailable as exc:
            logger.warning("%s: %d messages will be retried: %s", name, len(messages), exc)
            for m in messages:
                self._retry(updates, m, now, str(exc), exc.retry_after)
            return
        except Exception as exc:  # a provider bug must not lose the batch: retry like an outage
            logger.exception("%s failed unexpectedly", name)
            for m in messages:
                self._retry(updates, m, now, f"{type(exc).__name__}: {exc}", None)
            return
        by_id = {m.id: m for m in messages}
        for result in results:
            found = by_id.pop(result.id, None)
            if found is not None:
                self._record(updates, found, result, name, now)
        for m in by_id.values():  # a provider that forgot a message: treat as transient
            self._retry(updates, m, now, "no result from the provider", None, name)

    def _record(self, updates: _Updates, m: Outbound, result: SendResult, name: str, now: datetime) -> None:
        viber = m.channel is Channel.VIBER
        if result.outcome is Outcome.SENT:
            fallback = now + timedelta(seconds=self.config.viber_fallback_seconds) if viber else None
            updates.add(m.id, Status.SENT, provider=name, pmid=result.provider_message_id, fallback_at=fallback)
        elif result.outcome is Outcome.DELIVERED:
            updates.add(m.id, Status.DELIVERED, provider=name, pmid=result.provider_message_id)
        elif result.outcome is Outcome.RETRY:
            self._retry(updates, m, now, result.error or "provider asked to retry", result.retry_after, name)
        else:
            if result.outcome is Outcome.UNREGISTERED:
                target = updates.dead_pass_tokens if m.channel is Channel.PASSKIT else updates.unregistered
                target.append(m.recipient)
            updates.add(m.id, Status.FAILED, provider=name, error=result.error, fallback_at=now if viber else None)

    def _retry(
        self,
        updates: _Updates,
        m: Outbound,
        now: datetime,
        error: str,
        retry_after: float | None,
        provider: str | None = None,
    ) -> None:
        attempts = updates.attempts.get(m.id, 1)
        # The engine's notices never die of an outage: they wait (at most backoff_max_seconds apart) until
        # the engine is back and acknowledges; only a notice it refuses fails.
        if attempts >= self.config.max_attempts and m.channel is not Channel.ENGINE:
            fallback = now if m.channel is Channel.VIBER else None
            updates.add(m.id, Status.DEAD, provider=provider, error=error, fallback_at=fallback)
            return
        later = now + timedelta(seconds=self.backoff(attempts, retry_after))
        updates.add(m.id, Status.QUEUED, due_at=later, provider=provider, error=error)

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds before attempt ``attempts + 1``: exponential with equal jitter (between half the cap and
        the cap, so a retry never comes back at once), at least Retry-After."""
        delay = backoff(attempts, base=self.config.backoff_seconds, cap=self.config.backoff_max_seconds)
        return max(delay, retry_after or 0.0)

    async def _apply(self, updates: _Updates) -> None:
        if not updates.ids:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                _APPLY,
                updates.ids,
                updates.status,
                updates.due_at,
                updates.delta,
                updates.provider,
                updates.pmid,
                updates.error,
                updates.fallback_at,
                self.name,
                self.clock.now(),
            )
            if updates.unregistered:
                await conn.execute("DELETE FROM devices WHERE token = ANY($1::text[])", updates.unregistered)
            if updates.dead_pass_tokens:
                await forget_push_tokens(conn, updates.dead_pass_tokens, self.clock.now())

    # -- upkeep ---------------------------------------------------------------------------------

    async def recover_leases(self) -> int:
        """Put back messages whose worker died mid-send (lease expired); returns how many."""
        status = await self.pool.execute(
            """
            UPDATE outbox SET status = 'queued', due_at = $1, lease_until = NULL, worker = NULL, updated_at = $1,
                              last_error = 'lease expired: the worker sending it stopped'
             WHERE status = 'sending' AND lease_until < $1
            """,
            self.clock.now(),
        )
        recovered = int(status.rsplit(" ", 1)[-1])
        if recovered:
            logger.warning("recovered %d messages from workers that stopped mid-send", recovered)
        return recovered

    async def fallbacks(self) -> int:
        """Send by SMS what Viber could not deliver in time (or at all); returns how many SMS were queued.

        A Viber row's ``fallback_at`` is set when it is sent (now + the fallback delay) or when it fails or
        dies (now), and cleared by its delivery receipt. Clearing it here and inserting the SMS happen in
        one statement, so each Viber message falls back at most once.
        """
        now = self.clock.now()
        added: int = await self.pool.fetchval(
            """
            WITH picked AS (
                SELECT id, params FROM outbox WHERE fallback_at <= $1 AND channel = 'viber'
                   AND status IN ('sent', 'failed', 'dead') ORDER BY fallback_at LIMIT 5000 FOR UPDATE SKIP LOCKED
            ), due AS (
                UPDATE outbox o SET fallback_at = NULL, updated_at = $1,
                       params = CASE WHEN o.template = 'otp' THEN '{}'::jsonb ELSE o.params END
                  FROM picked WHERE o.id = picked.id
                RETURNING o.idempotency_key, o.customer_id, o.campaign_id, o.recipient, o.category, o.template,
                          o.locale, picked.params, o.id, o.quiet_tz, o.quiet_start, o.quiet_end
            ), added AS (
                INSERT INTO outbox (idempotency_key, customer_id, campaign_id, channel, recipient, category, template,
                                    locale, params, due_at, fallback_of, quiet_tz, quiet_start, quiet_end, created_at)
                SELECT idempotency_key || ':sms-fallback', customer_id, campaign_id, 'sms', recipient, category,
                       template, locale, params, $1, id, quiet_tz, quiet_start, quiet_end, $1
                  FROM due
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING 1
            )
            SELECT count(*) FROM added
            """,
            now,
        )
        if added:
            logger.info("viber: %d messages not delivered in time go by SMS instead", added)
        return added

    async def enqueue_campaigns(self, *, chunks: int = 50) -> None:
        """Advance campaigns that are still being enqueued (a bounded number of chunks per call)."""
        if self.program is None:
            return
        for _ in range(chunks):
            if self._stop.is_set():
                return
            if not await campaigns.enqueue_chunk(
                self.pool, self.program, viber=Channel.VIBER in self.lanes, now=self.clock.now()
            ):
                return
            self.progress = monotonic()
            self._wake.set()

    # -- running --------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def run(self, listen: Connect | None = None) -> None:
        """Run until :meth:`stop`: claim loops, a LISTEN connection (``listen`` opens one; without it,
        polling only) and the upkeep loop.

        No database error stops the worker: each loop backs off and goes on, and the LISTEN connection is
        reopened after a restart (polling covers the gap). On stop, each loop finishes the batch it holds
        (results recorded), then the worker exits."""
        listener = Listener(listen, {WAKE_CHANNEL: self._notified}, name="outbox wake-ups") if listen else None
        if listener is not None:
            await listener.start()
        logger.info(
            "outbox worker %s: %d loops of %d, channels %s",
            self.name,
            self.config.loops,
            self.config.batch,
            ", ".join(sorted(f"{c.value}={lane.provider.name}" for c, lane in self.lanes.items())),
        )
        self.progress = monotonic()
        try:
            await asyncio.gather(*(self._loop() for _ in range(self.config.loops)), self._upkeep())
        finally:
            if listener is not None:
                await listener.close()
            for lane in self.lanes.values():
                with contextlib.suppress(Exception):
                    await lane.provider.aclose()

    def last_progress(self) -> float:
        return self.progress

    def last_alive(self) -> float:
        """When a loop last came round or moved, worked or not (see ``alive``)."""
        return max(self.alive, self.progress)

    def _failed(self, what: str, exc: Exception, failures: int) -> float:
        """Log a failed round and return how long to wait: exponential, capped, jittered."""
        delay = backoff(failures, base=self.config.poll_seconds, cap=_MAX_BACKOFF_SECONDS)
        if isinstance(exc, _DATABASE_AWAY):
            logger.warning("%s: database unavailable (%r); retrying in %.1f s", what, exc, delay)
        else:
            logger.error("%s failed; retrying in %.1f s", what, delay, exc_info=exc)
        return delay

    async def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self.alive = monotonic()
            try:
                claimed = await self.run_once()
            except Exception as exc:
                failures += 1
                await self._sleep(self._failed("outbox", exc, failures))
                continue
            self.progress = monotonic()  # only a round that worked counts: a failing worker is not alive
            failures = 0
            if claimed < self.config.batch:
                await self._sleep(self.config.poll_seconds)

    async def _sleep(self, seconds: float) -> None:
        if self._stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        if not self._stop.is_set():
            self._wake.clear()

    async def _upkeep(self) -> None:
        interval = max(0.5, min(self.config.lease_seconds / 4, 5.0))
        failures = 0
        while not self._stop.is_set():
            self.alive = monotonic()
            wait = interval
            try:
                await self.recover_leases()
                if await self.fallbacks():
                    self._wake.set()
                await self.enqueue_campaigns()
                self.progress = monotonic()
                failures = 0
            except Exception as exc:
                failures += 1
                wait = max(interval, self._failed("outbox upkeep", exc, failures))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=wait)


def quiet_until(now: datetime, tz: str, start: int, end: int) -> datetime | None:
    """When quiet hours [start, end) (local minutes after midnight in ``tz``) end, if ``now`` is inside
    them; None otherwise. A span that crosses midnight (21:00-09:00) is handled; start == end: none."""
    if start == end:
        return None
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = now.astimezone(zone)
    minute = local.hour * 60 + local.minute
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    day = local.date() if minute < end else local.date() + timedelta(days=1)
    resume = datetime.combine(day, time(end // 60, end % 60), tzinfo=zone)
    return resume + timedelta(seconds=random.uniform(0, 600))  # noqa: S311 - spread the morning's messages
