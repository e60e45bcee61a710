"""The worker process: the outbox dispatcher and the timed jobs, on the services of ``boot.services``.

No database error ends it (each loop backs off and goes on); it beats a heartbeat while its loops come
round (``/ready`` reads it), and stops on a signal or when the ``kartka serve`` that started it exits.
A loop that hangs ends it (:data:`EXIT_STUCK`), so that whatever runs it starts a fresh one
(``kartka.heartbeat.Loops``); meanwhile a file says it is alive (``kartka worker --check``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time

from boot.jobs import analytics_pool, run_daily_segments, run_jobs
from boot.services import Services, make_dispatcher, open_services
from kartka.clock import SystemClock
from kartka.db import Pool, connect
from kartka.heartbeat import Loops, beat, health_file, report_alive
from kartka.lifeline import parent_alive
from kartka.resilience import backoff
from kartka.settings import Settings
from notifications.worker import Dispatcher

logger = logging.getLogger("kartka")

#: The worker's exit status when one of its loops hung (EX_SOFTWARE): ``kartka serve`` and Docker's
#: restart policy start a fresh worker.
EXIT_STUCK = 70


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _open_when_reachable(
    settings: Settings, stop: asyncio.Event, stack: contextlib.AsyncExitStack
) -> tuple[Services, Pool] | None:
    """The worker's services and its analytics pool, once the database answers (it may be down, or out of
    connections, when the worker starts); None if told to stop first. Every pool the worker opens is
    opened here, inside the backoff loop: a database that fails between one pool and the next costs a
    retry, not the worker (which is alive meanwhile, for health checks)."""
    failures = 0
    alive = health_file(settings.worker_health_file)
    while not stop.is_set():
        report_alive(alive)
        attempt = contextlib.AsyncExitStack()
        try:
            services = await attempt.enter_async_context(
                open_services(settings, clock=SystemClock(), application="kartka-worker", background=True, google=False)
            )
            analytics = await attempt.enter_async_context(analytics_pool(settings, "kartka-worker-analytics"))
        except Exception as exc:
            with contextlib.suppress(Exception):
                await attempt.aclose()  # whichever pool did open
            failures += 1
            logger.warning("worker: cannot connect to the database (%r); retrying", exc)
            await _sleep_unless(stop, backoff(failures, base=1.0, cap=30.0))
            continue
        await stack.enter_async_context(attempt)
        return services, analytics
    return None


async def _heartbeat(services: Services, dispatcher: Dispatcher, loops: Loops, stop: asyncio.Event) -> None:
    """Beat while the dispatcher makes progress and no loop hangs: a stuck worker goes quiet too. A loop
    that hangs ends the worker (a hung await cannot be trusted to let go when told to stop)."""
    settings = services.settings
    interval = settings.worker_heartbeat_seconds
    alive = health_file(settings.worker_health_file)
    while not stop.is_set():
        stuck = loops.stuck()
        if stuck:
            which = ", ".join(f"{name} for {lag:.0f} s" for name, lag in stuck.items())
            logger.critical("worker: stuck (%s); exiting so that a fresh worker takes over", which)
            logging.shutdown()
            os._exit(EXIT_STUCK)
        report_alive(alive)
        lag = time.monotonic() - dispatcher.last_progress()
        if not settings.worker_stale_seconds or lag < settings.worker_stale_seconds:
            try:
                await beat(services.pool, dispatcher.name)
            except Exception as exc:
                logger.debug("heartbeat failed: %r", exc)
        else:
            logger.error("worker: no progress for %.0f s; not reporting alive", lag)
        asleep = time.monotonic()
        await _sleep_unless(stop, interval)
        if time.monotonic() - asleep > interval + max(1.0, interval):
            loops.resumed()  # the process was stopped or paused: its loops were not stuck meanwhile


async def _watch_parent(parent: int | None, stop: asyncio.Event) -> None:
    """Where the kernel cannot signal us when kartka serve dies (not Linux), notice it here."""
    while parent is not None and not stop.is_set():
        if not parent_alive(parent):
            logger.warning("worker: kartka serve (pid %d) is gone; stopping", parent)
            stop.set()
        await _sleep_unless(stop, 1.0)


async def _timed_jobs(services: Services, analytics: Pool, loops: Loops, stop: asyncio.Event) -> None:
    interval = services.settings.jobs_interval_seconds
    logger.info("worker started; jobs every %.0f s", interval)
    while not stop.is_set():
        try:
            with loops.round(TIMED_JOBS):
                await run_jobs(
                    services, daily=False, analytics=analytics, progress=lambda: loops.came_round(TIMED_JOBS)
                )
        except Exception as exc:
            logger.warning("jobs failed, will retry: %r", exc)
        await _sleep_unless(stop, interval)


async def _daily_jobs(services: Services, analytics: Pool, loops: Loops, stop: asyncio.Event) -> None:
    """The daily segment recompute, in a loop of its own: minutes long at a million customers, it would
    hold up expiry, reminders and the KPI rollups in the timed jobs' loop. It commits batch by batch
    (another worker, or this one after a restart, resumes from its cursor)."""
    interval = services.settings.jobs_interval_seconds
    while not stop.is_set():
        try:
            with loops.round(DAILY):  # stops between batches
                await run_daily_segments(services, analytics, stop, progress=lambda: loops.came_round(DAILY))
        except Exception as exc:
            logger.warning("daily segment recompute failed, will retry: %r", exc)
        await _sleep_unless(stop, interval)


OUTBOX, TIMED_JOBS, DAILY = "the outbox", "the timed jobs", "the daily segment recompute"


def watch(settings: Settings, dispatcher: Dispatcher) -> Loops:
    """The worker's loops and how long each may hang: the outbox's within ``KARTKA_WORKER_STALE_SECONDS``
    (its rounds take seconds; failing ones count, the database may be away), a step of the timed jobs or a
    batch of the daily recompute within ``KARTKA_WORKER_STUCK_SECONDS`` (the analytics run long)."""
    loops = Loops()
    stuck = settings.worker_stuck_seconds
    loops.watch(OUTBOX, settings.worker_stale_seconds or stuck, alive=dispatcher.last_alive)
    loops.watch(TIMED_JOBS, stuck)
    loops.watch(DAILY, stuck)
    return loops


async def run_worker(settings: Settings, parent: int | None = None) -> None:
    """Run until a signal (SIGTERM, SIGINT, SIGHUP) or until ``parent`` exits; then finish the batches in
    hand and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with contextlib.AsyncExitStack() as stack:
            opened = await _open_when_reachable(settings, stop, stack)
            if opened is None:
                return
            services, analytics = opened
            dispatcher = make_dispatcher(services)
            loops = watch(settings, dispatcher)
            stop_waiter = asyncio.create_task(stop.wait())
            stop_waiter.add_done_callback(lambda _: dispatcher.stop())
            try:
                await asyncio.gather(
                    _timed_jobs(services, analytics, loops, stop),
                    _daily_jobs(services, analytics, loops, stop),
                    dispatcher.run(lambda: connect(settings, application="kartka-worker-listener", background=False)),
                    _heartbeat(services, dispatcher, loops, stop),
                    _watch_parent(parent, stop),
                )
            finally:
                stop_waiter.cancel()
    finally:
        logger.info("worker stopped")
