"""Fixtures for the notification tests: a fake Infobip on a real socket and dispatchers built on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from kartka.clock import FakeClock
from kartka.db import Pool
from kartka.resilience import CircuitBreaker
from notifications.model import Channel, Provider
from notifications.preferences import OptOutLinks
from notifications.providers.dev import DevProvider
from notifications.providers.infobip import InfobipProvider
from notifications.worker import Dispatcher, Lane, WorkerConfig
from tests.fakes.infobip import API_KEY, FakeInfobip
from wallet.program import DEFAULT_PROGRAM

PUBLIC = "http://127.0.0.1:8000"


@pytest.fixture(scope="session")
def infobip_server() -> Iterator[FakeInfobip]:
    server = FakeInfobip()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def infobip(infobip_server: FakeInfobip) -> FakeInfobip:
    infobip_server.reset()
    return infobip_server


def infobip_provider(server: FakeInfobip, channel: Channel, *, key: str = API_KEY, timeout: float = 2.0) -> Provider:
    return InfobipProvider(
        channel=channel,
        base_url=server.url,
        api_key=key,
        sender="Kartka",
        notify_url=f"{PUBLIC}/v1/webhooks/infobip",
        timeout=timeout,
    )


Make = Callable[..., Dispatcher]


@pytest.fixture
async def make_dispatcher(pool: Pool, clock: FakeClock) -> AsyncIterator[Make]:
    """Build a dispatcher; channels without a provider given use the development inbox. The providers'
    HTTP clients are closed after the test."""
    made: list[Provider] = []

    def make(providers: dict[Channel, Provider] | None = None, **config: Any) -> Dispatcher:
        dev = DevProvider(pool)
        chosen: dict[Channel, Provider] = dict.fromkeys(Channel, dev) | (providers or {})
        made.extend(chosen.values())
        lanes = {
            channel: Lane(provider, rate_per_second=100_000, concurrency=8, breaker=CircuitBreaker(3, 30.0))
            for channel, provider in chosen.items()
        }
        return Dispatcher(
            pool,
            lanes,
            clock=clock,
            opt_out=OptOutLinks(secret="test-secret", public_base=PUBLIC),
            config=WorkerConfig(**({"backoff_seconds": 5.0, "max_attempts": 4} | config)),
            program=DEFAULT_PROGRAM,
        )

    yield make
    for provider in made:
        await provider.aclose()
