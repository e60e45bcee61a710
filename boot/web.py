"""The API process: the HTTP app (``api.app``) on the services of ``boot.services``.

``create_app()`` reads settings from the environment (``uvicorn --factory --no-proxy-headers
boot.web:create_app``, as ``kartka serve`` runs it: the app reads ``X-Forwarded-For`` itself, from
``KARTKA_TRUSTED_PROXIES`` only); tests pass their own settings, a fake clock and an engine factory.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from litestar import Litestar

from api.app import build_app
from boot.services import EngineFactory, Services, open_services
from kartka.clock import Clock, SystemClock
from kartka.db import connect
from kartka.listen import Listener
from kartka.settings import Settings, get_settings


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, engine: EngineFactory | None = None
) -> Litestar:
    """The app. Tests may pass a fake clock and an engine factory; otherwise both come from the settings."""
    settings = settings or get_settings()
    clock = clock or SystemClock()
    return build_app(settings, clock=clock, services=lambda: _api_services(settings, clock, engine))


@contextlib.asynccontextmanager
async def _api_services(settings: Settings, clock: Clock, engine: EngineFactory | None) -> AsyncIterator[Services]:
    """The services, plus what only the API needs: migrations on start (where configured), key
    revocations and promotion changes heard over LISTEN, and the password hasher warmed up before the
    first sign-in."""
    # Opened here, in the server's event loop, which the pool's and the HTTP clients' connections belong to.
    async with open_services(settings, clock=clock, engine=engine) as services:
        if settings.migrate_on_start:
            async with services.pool.acquire() as conn:
                await services.schema.migrate(conn)
        # Revocations reach every replica over LISTEN; the listener reconnects after a database restart
        # and, while it is away, the key cache trusts nothing for long (see KeyVerifier).
        listener = Listener(
            lambda: connect(settings, application="kartka-api-listener", background=False),
            services.keys.channels(),
            on_change=services.keys.listener_changed,
            ping_seconds=max(1.0, settings.db_command_timeout_seconds),
            name="key revocations",
        )
        services.keys.follow(listener.heard_lately)  # a late ping is enough to stop trusting the cache
        await listener.start()
        try:
            if services.catalog is not None:  # promotions: their own LISTEN, the catalog read before serving
                await services.catalog.start()
            try:
                await services.passwords.warm_up()
                # What start-up built lives as long as the process: out of the collector's way, so that
                # a collection during a request walks what requests make, not every module and route.
                _freeze_once()
                yield services
            finally:
                if services.catalog is not None:
                    await services.catalog.close()
        finally:
            await listener.close()


_frozen = False


def _freeze_once() -> None:
    """Once per process: a process that starts many apps (the tests) must not keep each one's garbage."""
    global _frozen  # noqa: PLW0603 - one flag per process is the point
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()
        # A request allocates thousands of short-lived objects (more with promotions): a young
        # generation this size is collected every few requests rather than several times in each.
        gc.set_threshold(50_000, 20, 20)
