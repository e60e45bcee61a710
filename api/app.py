"""The Litestar application: routes, OpenAPI, the error mapping, hooks.

The services it serves come from the composition root: ``boot.web.create_app`` builds them in the
lifespan (``boot.services``) and hands them over; handlers reach them through ``api.state.services_of``.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import multiprocessing
import os
import signal
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC
from typing import Any

from litestar import Litestar
from litestar.datastructures import MutableScopeHeaders, State
from litestar.openapi.spec import Components, SecurityScheme, Tag
from litestar.types import BeforeMessageSendHookHandler, Message, Scope

from api.auth import (
    APPLE_PASS_SCHEME,
    GOOGLE_WALLET_SCHEME,
    INFOBIP_SCHEME,
    SECURITY_SCHEME,
    SHOPPER_SCHEME,
    STAFF_SCHEME,
    TWILIO_SCHEME,
)
from api.console.pages import CONSOLE_CONTROLLERS
from api.console.session import ConsoleSessions
from api.console.setup import console_assets
from api.controllers.admin import AdminCardController, AdminCustomerController, AdminStaffController
from api.controllers.campaigns import AdminCampaignController
from api.controllers.card_page import CardPageController, PassAssetsController
from api.controllers.dev_inbox import DevInboxController
from api.controllers.google_wallet import GoogleWalletWebhookController
from api.controllers.health import HealthController
from api.controllers.integrations import IntegrationCustomerController
from api.controllers.me import MeController
from api.controllers.orders import IntegrationOrderController, PosOrderController
from api.controllers.passkit import PassKitController
from api.controllers.pos import PosCardController, PosCustomerController, PosIdentifyController
from api.controllers.promotions import (
    AdminOfferController,
    AdminPromotionController,
    AdminPromotionGroupController,
    MeOffersController,
)
from api.controllers.receipts import IntegrationReceiptController, PosReceiptController
from api.controllers.reports import AdminReportController
from api.controllers.segments import AdminSegmentController, AdminSegmentReportController
from api.controllers.signin import SignInController, StaffLoginController
from api.controllers.stores import AdminStoreController
from api.controllers.unsubscribe import UnsubscribeController
from api.controllers.web import FormGuard, JoinController
from api.controllers.webhooks import WebhookController
from api.errors import EXCEPTION_HANDLERS
from api.openapi import ContractConfig, assets_router, openapi_router, render_plugins
from api.pages import template_config
from api.request import CLIENT_ADDRESSES, RedactSecrets
from api.state import Services
from kartka import logs
from kartka.clock import Clock
from kartka.lifeline import die_with_parent
from kartka.netaddr import ClientAddresses, parse_networks
from kartka.settings import Environment, Settings

API_DESCRIPTION = """
Kartka: virtual loyalty cards on every registration path, balances and tiers, the till flow.

Money and points on the wire are integers in minor units (kopecks; hundredths of a point).
Errors are RFC 9457 `application/problem+json` documents with a `detail` and, for invalid input,
`errors` naming each field. Tills and integrations authenticate with `Authorization: Bearer <key>`
(keys are made with `kartka keys create`).
"""


#: What opens the services for the app's lifetime (``boot.web`` passes the composition root's), inside the
#: server's event loop; the app keeps them in ``app.state.services`` (``api.state.services_of``).
OpenServices = Callable[[], AbstractAsyncContextManager[Services]]


def _lifespan(open_services: OpenServices) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        async with open_services() as services:
            app.state.services = services
            yield

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


def build_app(settings: Settings, *, clock: Clock, services: OpenServices) -> Litestar:
    """The HTTP app: routes, OpenAPI, error mapping, hooks. ``services`` opens what handlers use; the
    composition root (``boot.web.create_app``) builds them."""
    _die_with_server()
    logs.configure(settings.log_level, settings.log_format, background=True)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactSecrets) for f in access.filters):
        access.addFilter(RedactSecrets())
    openapi = ContractConfig(
        title="Kartka",
        version="1",
        description=API_DESCRIPTION.strip(),
        path="/schema",
        render_plugins=render_plugins(),
        openapi_router=openapi_router(),
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
                GOOGLE_WALLET_SCHEME: SecurityScheme(
                    type="http",
                    scheme="ECv2SigningOnly",
                    description="Google signs the callback's body itself (ECv2SigningOnly: `signature`, "
                    "`intermediateSigningKey`, `signedMessage`), nothing goes in a header; a body that does not "
                    "verify for this issuer is a 401. OpenAPI has no scheme for a signature inside the body, "
                    "so this one names the protocol.",
                ),
            }
        ),
        tags=[
            Tag(name="pos", description="The till: register, identify, price, commit, refund"),
            Tag(name="app", description="The shopper's app: phone sign-in, card, balance, history, settings"),
            Tag(name="integrations", description="Online shop and CRM"),
            Tag(name="admin", description="Staff tools"),
            Tag(
                name="promotions",
                description="Promotions as managed data: drafts, four-eyes approval, groups, personal offers, "
                "live on every till within a second",
            ),
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
            AdminPromotionController,
            AdminPromotionGroupController,
            AdminOfferController,
            MeOffersController,
            AdminCampaignController,
            AdminStoreController,
            AdminSegmentController,
            AdminSegmentReportController,
            WebhookController,
            GoogleWalletWebhookController,
            UnsubscribeController,
            PassKitController,
            CardPageController,
            PassAssetsController,
            *([] if settings.environment is Environment.PRODUCTION else [DevInboxController]),
            JoinController,
            console_assets(),
            *CONSOLE_CONTROLLERS,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        template_config=template_config(),
        state=State(
            {
                CLIENT_ADDRESSES: ClientAddresses(parse_networks(settings.trusted_proxies)),
                "join_forms": FormGuard(settings),
                "console_sessions": ConsoleSessions(settings),
            }
        ),
        lifespan=[_lifespan(services)],
        before_send=[date_header(clock)],
        openapi_config=openapi,
        plugins=[openapi.exact],
        request_max_body_size=settings.max_body_bytes,
        # One format for the app, uvicorn and the libraries (kartka.logs); api.errors logs unexpected
        # errors once, with their traceback.
        logging_config=None,
        debug=False,
    )
