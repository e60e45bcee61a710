"""The Litestar application factory.

``create_app()`` reads settings from the environment (``uvicorn --factory api.app:create_app``);
tests pass their own. The database pool, the key verifier and the domain services are built in the
lifespan and reach handlers through dependencies.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.logging import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme, Tag

from api.auth import SECURITY_SCHEME
from api.controllers.health import HealthController
from api.controllers.integrations import IntegrationCustomerController
from api.controllers.pos import PosCardController, PosCustomerController, PosIdentifyController
from api.controllers.web import JoinController, join_rate_limit
from api.errors import EXCEPTION_HANDLERS
from api.state import Services, provide_services, services_of
from kartka.db import connect, create_pool
from kartka.keys import KeyVerifier
from kartka.migrate import migrate
from kartka.settings import Settings, get_settings, redact_url
from wallet.customers import CustomerService
from wallet.importer import Importer
from wallet.program import DEFAULT_PROGRAM

logger = logging.getLogger("kartka.api")

API_DESCRIPTION = """
Kartka: virtual loyalty cards on every registration path, balances and tiers, the till flow.

Money and points on the wire are integers in minor units (kopecks; hundredths of a point).
Errors are RFC 9457 `application/problem+json` documents with a `detail` and, for invalid input,
`errors` naming each field. Tills and integrations authenticate with `Authorization: Bearer <key>`
(keys are made with `kartka keys create`).
"""


def _lifespan(settings: Settings) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        if settings.database_url is None:
            raise RuntimeError("DATABASE_URL is not set; `kartka serve` starts an embedded PostgreSQL for you")
        logger.info("connecting to %s", redact_url(settings.database_url.reveal()))
        pool = await create_pool(settings)
        listener = None
        try:
            if settings.migrate_on_start:
                async with pool.acquire() as conn:
                    await migrate(conn)
            keys = KeyVerifier(pool, settings.key_cache_seconds)
            try:
                listener = await connect(settings, application="kartka-api-listener")
                await keys.listen(listener)
            except (OSError, TimeoutError) as exc:
                logger.warning("cannot listen for key revocations (%s); the key cache expires on its own", exc)
            app.state.services = Services(
                settings=settings,
                pool=pool,
                keys=keys,
                customers=CustomerService(
                    region=settings.default_region, card_prefix=settings.card_prefix, program=DEFAULT_PROGRAM
                ),
                importer=Importer(pool, region=settings.default_region, card_prefix=settings.card_prefix),
            )
            yield
        finally:
            if listener is not None:
                await listener.close()
            await pool.close()

    return lifespan


async def _provide_customers(state: State) -> CustomerService:
    return services_of(state).customers


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    openapi = OpenAPIConfig(
        title="Kartka",
        version="1",
        description=API_DESCRIPTION.strip(),
        path="/schema",
        render_plugins=[SwaggerRenderPlugin(), RedocRenderPlugin()],
        components=Components(
            security_schemes={
                SECURITY_SCHEME: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="A key from `kartka keys create`, scoped to pos, integration or admin",
                )
            }
        ),
        tags=[
            Tag(name="pos", description="The till: register, identify, (later) price and commit"),
            Tag(name="integrations", description="Online shop and CRM"),
            Tag(name="health", description="Liveness and readiness"),
        ],
    )
    web = Router(
        path="/",
        route_handlers=[JoinController],
        middleware=[join_rate_limit(settings.join_rate_per_minute).middleware],
    )
    return Litestar(
        route_handlers=[
            HealthController,
            PosCustomerController,
            PosCardController,
            PosIdentifyController,
            IntegrationCustomerController,
            web,
        ],
        dependencies={"services": Provide(provide_services), "customers": Provide(_provide_customers)},
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[_lifespan(settings)],
        openapi_config=openapi,
        request_max_body_size=settings.max_body_bytes,
        logging_config=LoggingConfig(
            root={"level": settings.log_level, "handlers": ["queue_listener"]},
            formatters={"standard": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
            log_exceptions="never",  # api.errors logs unexpected ones once, with their traceback
        ),
        debug=False,
    )
