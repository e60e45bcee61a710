"""The Litestar application factory.

``create_app()`` reads settings from the environment (``uvicorn --factory --no-proxy-headers
api.app:create_app``: the app reads ``X-Forwarded-For`` itself, from ``KARTKA_TRUSTED_PROXIES`` only);
tests pass their own. The database pool, the key verifier and the domain services are built in the
lifespan and reach handlers through dependencies.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import multiprocessing
import os
import signal
from collections.abc import AsyncGenerator, Callable
from datetime import UTC
from typing import Any

from litestar import Litestar
from litestar.datastructures import MutableScopeHeaders, State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme, Tag
from litestar.types import BeforeMessageSendHookHandler, Message, Scope

from analytics.receipts import ReceiptImporter, ReceiptService
from analytics.reports import KpiService
from api.auth import (
    APPLE_PASS_SCHEME,
    INFOBIP_SCHEME,
    SECURITY_SCHEME,
    SHOPPER_SCHEME,
    STAFF_SCHEME,
    TWILIO_SCHEME,
)
from api.controllers.admin import AdminCardController, AdminCustomerController, AdminStaffController
from api.controllers.card_page import CardPageController, PassAssetsController
from api.controllers.health import HealthController
from api.controllers.integrations import IntegrationCustomerController
from api.controllers.me import MeController
from api.controllers.notifications import (
    AdminCampaignController,
    AdminStoreController,
    DevInboxController,
    UnsubscribeController,
    WebhookController,
)
from api.controllers.orders import IntegrationOrderController, PosOrderController
from api.controllers.passkit import PassKitController
from api.controllers.pos import PosCardController, PosCustomerController, PosIdentifyController
from api.controllers.receipts import IntegrationReceiptController, PosReceiptController
from api.controllers.reports import AdminReportController
from api.controllers.segments import AdminSegmentController, AdminSegmentReportController
from api.controllers.signin import SignInController, StaffLoginController
from api.controllers.web import FormGuard, JoinController
from api.errors import EXCEPTION_HANDLERS
from api.openapi import assets_router, render_plugins
from api.request import CLIENT_ADDRESSES, RedactSecrets
from api.state import Services
from engine.setup import build_engine
from kartka import logs
from kartka.clock import Clock, SystemClock
from kartka.crypto import derive_key
from kartka.db import connect, create_pool
from kartka.keys import KeyVerifier
from kartka.lifeline import die_with_parent
from kartka.listen import Listener
from kartka.migrate import migrate
from kartka.netaddr import ClientAddresses, parse_networks
from kartka.ratelimit import RateLimiter, TextBudget
from kartka.settings import Environment, Settings, get_settings, redact_url
from kartka.staff import Passwords, StaffSignIn
from kartka.tokens import Tokens
from notifications.providers.google_wallet import load_wallet_objects
from notifications.setup import make_notifier, opt_out_links
from wallet.customers import CustomerService
from wallet.importer import Importer
from wallet.join import JoinService
from wallet.orders import OrderService
from wallet.passes.service import Passes
from wallet.passes.setup import load_wallet_setup
from wallet.pricing import Engine
from wallet.program import Program, load_program
from wallet.qrtokens import QrTokens
from wallet.signin import SignInConfig, SignInService

logger = logging.getLogger("kartka.api")

API_DESCRIPTION = """
Kartka: virtual loyalty cards on every registration path, balances and tiers, the till flow.

Money and points on the wire are integers in minor units (kopecks; hundredths of a point).
Errors are RFC 9457 `application/problem+json` documents with a `detail` and, for invalid input,
`errors` naming each field. Tills and integrations authenticate with `Authorization: Bearer <key>`
(keys are made with `kartka keys create`).
"""


EngineFactory = Callable[[Program], Engine]


def signin_config(settings: Settings) -> SignInConfig:
    return SignInConfig(
        code_length=settings.otp_length,
        ttl_seconds=settings.otp_ttl_seconds,
        max_attempts=settings.otp_max_attempts,
        resend_seconds=settings.otp_resend_seconds,
        resend_max_seconds=settings.otp_resend_max_seconds,
        per_ip_per_hour=settings.otp_per_ip_per_hour,
        checks_per_ip_per_hour=settings.signin_per_ip_per_hour,
    )


def _lifespan(settings: Settings, clock: Clock, make_engine: EngineFactory | None) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        if settings.database_url is None:
            raise RuntimeError("DATABASE_URL is not set; `kartka serve` starts an embedded PostgreSQL for you")
        logger.info("connecting to %s", redact_url(settings.database_url.reveal()))
        program = load_program(settings.program_file)
        # Built here, in the server's event loop, which its HTTP connections belong to.
        pricing = make_engine(program) if make_engine else build_engine(settings, program)
        pool = await create_pool(settings)
        listener: Listener | None = None
        google_objects = None
        try:
            if settings.migrate_on_start:
                async with pool.acquire() as conn:
                    await migrate(conn)
            keys = KeyVerifier(
                pool, settings.key_cache_seconds, unlistened_seconds=settings.key_cache_unlistened_seconds
            )
            # Revocations reach every replica over LISTEN; the listener reconnects after a database restart
            # and, while it is away, the key cache trusts nothing for long (see KeyVerifier).
            listener = Listener(
                lambda: connect(settings, application="kartka-api-listener", background=False),
                keys.channels(),
                on_change=keys.listener_changed,
                ping_seconds=max(1.0, settings.db_command_timeout_seconds),
                name="key revocations",
            )
            await listener.start()
            notifier = make_notifier(settings, program)
            secret = settings.secret_key.reveal()
            qr_tokens = QrTokens(derive_key(secret, "qr"), settings.qr_token_seconds)
            customers = CustomerService(
                region=settings.default_region,
                card_prefix=settings.card_prefix,
                program=program,
                events=notifier,
                clock=clock,
                qr_tokens=qr_tokens,
            )
            tokens = Tokens(
                key=derive_key(secret, "jwt"),
                issuer=settings.public_base,
                access_seconds=settings.access_token_seconds,
                refresh_days=settings.refresh_token_days,
                clock=clock,
            )
            wallet = load_wallet_setup(settings, program)
            google_objects = load_wallet_objects(wallet.google, timeout=settings.google_save_timeout_seconds)
            passes = Passes(
                setup=wallet, customers=customers, public_base=settings.public_base, google_api=google_objects
            )
            limiter = RateLimiter(derive_key(secret, "rate"))
            texts = TextBudget(
                limiter,
                per_hour=settings.sms_budget_per_hour,
                per_country_per_hour=settings.sms_budget_per_country_per_hour,
                countries=settings.sms_country_budgets,
                home=settings.default_region,
            )
            passwords = Passwords(memory_kib=settings.argon2_memory_kib, rounds=settings.argon2_rounds)
            await passwords.warm_up()
            app.state.services = Services(
                settings=settings,
                pool=pool,
                keys=keys,
                customers=customers,
                importer=Importer(pool, region=settings.default_region, card_prefix=settings.card_prefix),
                orders=OrderService(program=program, engine=pricing, customers=customers, clock=clock),
                program=program,
                clock=clock,
                engine=pricing,
                notifier=notifier,
                opt_out=opt_out_links(settings),
                tokens=tokens,
                signin=SignInService(
                    pool=pool,
                    customers=customers,
                    tokens=tokens,
                    limiter=limiter,
                    texts=texts,
                    key=derive_key(secret, "otp"),
                    config=signin_config(settings),
                    clock=clock,
                ),
                staff_signin=StaffSignIn(
                    pool=pool,
                    passwords=passwords,
                    tokens=tokens,
                    limiter=limiter,
                    clock=clock,
                    per_ip_per_hour=settings.signin_per_ip_per_hour,
                    failures=settings.staff_login_failures,
                    per_account_per_hour=settings.staff_login_per_account_per_hour,
                ),
                qr_tokens=qr_tokens,
                passes=passes,
                limiter=limiter,
                texts=texts,
                join=JoinService(
                    pool=pool,
                    customers=customers,
                    limiter=limiter,
                    texts=texts,
                    per_ip_per_hour=settings.join_per_ip_per_hour,
                    clock=clock,
                ),
                receipts=ReceiptService(program=program, clock=clock),
                receipt_importer=ReceiptImporter(pool, clock),
                kpis=KpiService(program),
            )
            yield
        finally:
            if listener is not None:
                await listener.close()
            if google_objects is not None:
                await google_objects.aclose()
            await pool.close()
            await pricing.close()

    return lifespan


def date_header(clock: Clock) -> BeforeMessageSendHookHandler:
    """Every response's ``Date``, from the app's clock as the response starts. A ``Last-Modified`` a
    handler took from the same clock is then never later than it (RFC 9110 §8.8.2.1), which uvicorn's
    own Date, refreshed once a second, cannot promise; ``kartka serve`` turns that one off."""

    async def before_send(message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start":
            headers = MutableScopeHeaders.from_message(message)
            if "date" not in headers:
                headers["Date"] = email.utils.format_datetime(clock.now().astimezone(UTC), usegmt=True)

    return before_send


def _die_with_server() -> None:
    """In an API process that uvicorn started (``--workers N``), exit when the starting process exits.

    uvicorn's worker processes outlive a parent killed outright and would go on serving beside the next
    start. SIGTERM makes uvicorn finish the requests in hand and exit.
    """
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None and not die_with_parent(parent.pid):
        os.kill(os.getpid(), signal.SIGTERM)


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, engine: EngineFactory | None = None
) -> Litestar:
    """The app. Tests may pass a fake clock and an engine factory; otherwise both come from the settings."""
    settings = settings or get_settings()
    _die_with_server()
    clock = clock or SystemClock()
    logs.configure(settings.log_level, settings.log_format, background=True)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactSecrets) for f in access.filters):
        access.addFilter(RedactSecrets())
    openapi = OpenAPIConfig(
        title="Kartka",
        version="1",
        description=API_DESCRIPTION.strip(),
        path="/schema",
        render_plugins=render_plugins(),
        components=Components(
            security_schemes={
                SECURITY_SCHEME: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="A key from `kartka keys create`, scoped to pos, integration or admin",
                ),
                SHOPPER_SCHEME: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="JWT",
                    description="A shopper's access token from `POST /v1/auth/token` (15 minutes; refresh it)",
                ),
                STAFF_SCHEME: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="JWT",
                    description="A staff access token from `POST /v1/admin/login`",
                ),
                APPLE_PASS_SCHEME: SecurityScheme(
                    type="apiKey",
                    security_scheme_in="header",
                    name="Authorization",
                    description="`ApplePass <authenticationToken>`: the token inside the pass (PassKit web service)",
                ),
                INFOBIP_SCHEME: SecurityScheme(
                    type="http",
                    scheme="basic",
                    description="`infobip` and KARTKA_INFOBIP_WEBHOOK_SECRET, as configured at Infobip",
                ),
                TWILIO_SCHEME: SecurityScheme(
                    type="apiKey",
                    security_scheme_in="header",
                    name="X-Twilio-Signature",
                    description="Twilio's HMAC-SHA1 signature of the URL and the form, with the auth token",
                ),
            }
        ),
        tags=[
            Tag(name="pos", description="The till: register, identify, price, commit, refund"),
            Tag(name="app", description="The shopper's app: phone sign-in, card, balance, history, settings"),
            Tag(name="integrations", description="Online shop and CRM"),
            Tag(name="admin", description="Staff tools"),
            Tag(name="health", description="Liveness and readiness"),
            Tag(name="webhooks", description="Delivery receipts from message providers"),
            Tag(name="passkit", description="The PassKit web service Apple Wallet calls to keep passes current"),
            Tag(name="development", description="Only outside production"),
        ],
    )
    return Litestar(
        route_handlers=[
            HealthController,
            assets_router(),
            PosCustomerController,
            PosCardController,
            PosIdentifyController,
            PosOrderController,
            PosReceiptController,
            IntegrationCustomerController,
            IntegrationOrderController,
            IntegrationReceiptController,
            SignInController,
            MeController,
            StaffLoginController,
            AdminCustomerController,
            AdminCardController,
            AdminStaffController,
            AdminReportController,
            AdminCampaignController,
            AdminStoreController,
            AdminSegmentController,
            AdminSegmentReportController,
            WebhookController,
            UnsubscribeController,
            PassKitController,
            CardPageController,
            PassAssetsController,
            *([] if settings.environment is Environment.PRODUCTION else [DevInboxController]),
            JoinController,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        state=State(
            {
                CLIENT_ADDRESSES: ClientAddresses(parse_networks(settings.trusted_proxies)),
                "join_forms": FormGuard(settings),
            }
        ),
        lifespan=[_lifespan(settings, clock, engine)],
        before_send=[date_header(clock)],
        openapi_config=openapi,
        request_max_body_size=settings.max_body_bytes,
        # One format for the app, uvicorn and the libraries (kartka.logs); api.errors logs unexpected
        # errors once, with their traceback.
        logging_config=None,
        debug=False,
    )
