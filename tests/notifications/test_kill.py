"""The worker killed with SIGKILL in the middle of 10,000 messages: after a restart every message is
delivered, and none twice.

The worker runs as a real ``kartka worker`` process against the fake Infobip over HTTP. It is killed
while batches are in flight: some messages are claimed (``sending``) and some may have reached the
provider without the worker hearing back. The restarted worker recovers the expired leases and sends
the rest; a message the provider already has carries the same ``messageId`` again, which the provider
recognises, so the shopper sees each message exactly once. The fake counts both.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from kartka.clock import FakeClock
from kartka.db import Connection
from kartka.settings import Settings
from notifications.model import Category, Channel
from notifications.outbox import Message, enqueue
from tests.fakes.infobip import API_KEY, FakeInfobip

TOTAL = 10_000


def _worker(settings: Settings, infobip: FakeInfobip, log: Path) -> subprocess.Popen[bytes]:
    assert settings.database_url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("KARTKA_") and k != "DATABASE_URL"}
    env |= {
        "DATABASE_URL": settings.database_url.reveal(),
        "KARTKA_ENV": "test",
        "KARTKA_SMS_PROVIDER": "infobip",
        "KARTKA_VIBER_PROVIDER": "none",
        "KARTKA_INFOBIP_BASE_URL": infobip.url,
        "KARTKA_INFOBIP_API_KEY": API_KEY,
        "KARTKA_INFOBIP_WEBHOOK_SECRET": "hook-secret",
        "KARTKA_OUTBOX_LEASE_SECONDS": "2",
        "KARTKA_OUTBOX_BATCH": "400",
        "KARTKA_SMS_RATE_PER_SECOND": "2500",  # slow enough that the kill lands mid-run
        "KARTKA_JOBS_INTERVAL_SECONDS": "3600",
        "KARTKA_LOG_LEVEL": "WARNING",
    }
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "main", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)


async def _wait(condition: Callable[[], Awaitable[bool]], seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; worker log:\n{log.read_text()[-3000:]}")  # noqa: ASYNC240 - failing anyway
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_sigkill_mid_batch_loses_nothing_and_doubles_nothing(
    settings: Settings, conn: Connection, clock: FakeClock, infobip: FakeInfobip, tmp_path: Path
) -> None:
    messages = [
        Message(
            key=f"kill:{n}",
            channel=Channel.SMS,
            recipient=f"+37529{n:07d}",
            category=Category.TRANSACTIONAL,
            template="points_expiring",
            locale="ru",
            params={"points": 1250, "expires_on": "2026-09-02"},
        )
        for n in range(TOTAL)
    ]
    async with conn.transaction():
        assert await enqueue(conn, messages, clock.now()) == TOTAL
    log = tmp_path / "worker.log"

    first = _worker(settings, infobip, log)
    try:

        async def some_delivered() -> bool:
            return len(infobip.messages) >= TOTAL // 4

        await _wait(some_delivered, 60, "the first worker to send a quarter", log)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    at_kill = len(infobip.messages)
    in_flight = await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'sending'")
    assert at_kill < TOTAL, "the kill came too late to test anything"
    assert in_flight > 0, "the kill should leave claimed messages behind"

    second = _worker(settings, infobip, log)
    try:

        async def all_sent() -> bool:
            sent: int = await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'sent'")
            return sent == TOTAL

        await _wait(all_sent, 90, "every message to be sent after the restart", log)
        second.send_signal(signal.SIGTERM)  # graceful: finishes what it holds, exits 0
        assert second.wait(timeout=20) == 0, log.read_text()
    finally:
        if second.poll() is None:
            second.kill()

    assert len(infobip.messages) == TOTAL  # every message arrived...
    assert set(infobip.per_recipient.values()) == {1}  # ...each shopper got exactly one
    statuses = dict(await conn.fetch("SELECT status, count(*) FROM outbox GROUP BY status"))
    assert statuses == {"sent": TOTAL}
    print(  # noqa: T201 - the figures the closing note quotes
        f"\nkilled at {at_kill} delivered with {in_flight} claimed; "
        f"{infobip.duplicates} re-sent messages recognised by their messageId"
    )
