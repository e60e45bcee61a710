"""Notification endpoints: campaigns and stores (admin), provider delivery receipts, the unsubscribe
page the marketing messages link to, and the development inbox."""

from __future__ import annotations

import html
from string import Template
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.datastructures import ResponseHeader, State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter

from api.auth import ADMIN_SECURITY, INFOBIP_SCHEME, TWILIO_SCHEME, actor_of, require_permission
from api.errors import problems
from api.request import preferred_language
from api.state import provide_conn, provide_tx, services_of
from kartka.bounds import INT64_MAX
from kartka.db import Connection
from kartka.errors import InvalidInput, NotFound, Unauthenticated
from kartka.settings import SmsProvider, ViberProvider
from kartka.staff import Permission
from notifications import campaigns
from notifications.campaigns import Campaign, CampaignInput
from notifications.preferences import set_marketing
from notifications.providers import INFOBIP_WEBHOOK, TWILIO_WEBHOOK, infobip, twilio
from notifications.providers.dev import InboxEntry, read_inbox
from notifications.receipts import apply_receipts
from wallet import stores
from wallet.stores import Store, StoreInput

CampaignId = Annotated[int, PathParameter(ge=1, le=INT64_MAX, description="The campaign's id")]


class CampaignAccepted(msgspec.Struct, frozen=True):
    id: int
    status: str
    location: str


class AdminCampaignController(Controller):
    path = "/v1/admin/campaigns"
    tags = ["admin"]  # noqa: RUF012
    before_request = require_permission(Permission.CAMPAIGNS)
    security = ADMIN_SECURITY

    @post(
        "/",
        operation_id="adminCreateCampaign",
        summary="Send a marketing text to a segment (consenting shoppers only); enqueued by the workers",
        status_code=202,
        response_headers=[
            ResponseHeader(name="Location", description="The campaign, to follow its progress", documentation_only=True)
        ],
        responses=problems(401, 403),
        dependencies={"tx": Provide(provide_tx)},
    )
    async def create(
        self, data: JSONBody[CampaignInput], tx: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> Response[CampaignAccepted]:
        services = services_of(request.app.state)
        campaign_id = await campaigns.create(
            tx, data, program=services.program, now=services.clock.now(), created_by=actor_of(request)
        )
        location = f"/v1/admin/campaigns/{campaign_id}"
        return Response(
            CampaignAccepted(id=campaign_id, status="enqueuing", location=location),
            status_code=202,
            headers={"Location": location},
        )

    @get(
        "/{campaign_id:int}",
        operation_id="adminGetCampaign",
        summary="A campaign's status and counts (queued, sent, delivered, failed, cancelled)",
        responses=problems(401, 403, 404),
        dependencies={"conn": Provide(provide_conn)},
    )
    async def show(
        self, campaign_id: CampaignId, conn: NamedDependency[Connection], request: Request[Any, Any, State]
    ) -> Campaign:
        return await campaigns.get(conn, campaign_id, services_of(request.app.state).clock.now())


class AdminStoreController(Controller):
    path = "/v1/admin/stores"
    tags = ["admin"]  # noqa: RUF012
    before_request = require_permission(Permission.STORES)
    security = ADMIN_SECURITY

    @put(
        "/{code:str}",
        operation_id="adminPutStore",
        summary="Create or update a store; its time zone sets marketing quiet hours for its shoppers",
        responses=problems(401, 403),
        dependencies={"tx": Provide(provide_tx)},
    )
    async def put_store(
        self, code: FromPath[str], data: JSONBody[StoreInput], tx: NamedDependency[Connection]
    ) -> Store:
        return await stores.put_store(tx, data.at(code))


class Accepted(msgspec.Struct, frozen=True):
    updated: int


class WebhookController(Controller):
    """Delivery receipts, authenticated the way each provider does it."""

    tags = ["webhooks"]  # noqa: RUF012
    dependencies = {"tx": Provide(provide_tx)}  # noqa: RUF012

    @post(
        INFOBIP_WEBHOOK,
        operation_id="webhookInfobip",
        security=[{INFOBIP_SCHEME: []}],
        summary="Infobip delivery reports (HTTP Basic: infobip / KARTKA_INFOBIP_WEBHOOK_SECRET)",
        status_code=200,
        responses=problems(401),
    )
    async def infobip_reports(self, request: Request[Any, Any, State], tx: NamedDependency[Connection]) -> Accepted:
        services = services_of(request.app.state)
        secret = services.settings.infobip_webhook_secret
        if secret is None or not infobip.authorized(request.headers.get("authorization"), secret.reveal()):
            raise Unauthenticated("delivery reports must carry the configured Basic credentials")
        try:
            receipts = infobip.parse_reports(await request.body(), "infobip")
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidInput(f"not an Infobip delivery report: {exc}") from exc
        return Accepted(updated=await apply_receipts(tx, receipts, services.clock.now(), "infobip"))

    @post(
        TWILIO_WEBHOOK,
        operation_id="webhookTwilio",
        security=[{TWILIO_SCHEME: []}],
        summary="Twilio status callbacks (X-Twilio-Signature)",
        status_code=200,
        responses=problems(401),
    )
    async def twilio_status(self, request: Request[Any, Any, State], tx: NamedDependency[Connection]) -> Accepted:
        services = services_of(request.app.state)
        settings = services.settings
        form = await request.form()
        params = {key: str(value) for key, value in form.items()}
        token = settings.twilio_auth_token
        signature = request.headers.get("x-twilio-signature", "")
        url = settings.public_base + TWILIO_WEBHOOK
        if token is None or not twilio.verify_signature(url, params, signature, token.reveal()):
            raise Unauthenticated("the X-Twilio-Signature does not match")
        receipt = twilio.parse_status(params)
        receipts = [receipt] if receipt is not None else []
        return Accepted(updated=await apply_receipts(tx, receipts, services.clock.now(), "twilio"))


_UNSUBSCRIBE: Final = Template("""<!doctype html>
<html lang="$lang"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>$title</title>
<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}
button{font-size:1.1rem;padding:.7rem 1.2rem;border-radius:.5rem;border:0;background:#1b5e20;color:#fff}</style>
</head><body><h1>$title</h1>$body</body></html>""")

_UNSUBSCRIBE_TEXT: Final = {
    "ru": {
        "title": "Рассылка Kartka",
        "ask": "Больше не присылать вам акции и предложения? Сообщения о баллах и покупках будут приходить.",
        "button": "Отписаться",
        "done": "Готово: рекламных сообщений больше не будет. Вернуть подписку можно в приложении.",
    },
    "en": {
        "title": "Kartka offers",
        "ask": "Stop sending you offers? Messages about your points and purchases still come.",
        "button": "Unsubscribe",
        "done": "Done: no more offers. You can subscribe again in the app.",
    },
}


def _unsubscribe_page(lang: str, body: str, status: int = 200) -> Response[str]:
    text = _UNSUBSCRIBE_TEXT[lang]
    content = _UNSUBSCRIBE.substitute(lang=lang, title=html.escape(text["title"]), body=body)
    return Response(
        content, status_code=status, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"}
    )


class UnsubscribeController(Controller):
    """The link in every marketing message. GET only asks (link previews and scanners fetch links);
    the button POSTs, which records the opt-out."""

    path = "/u"
    include_in_schema = False

    @get("/{token:str}", media_type="text/html")
    async def ask(self, token: FromPath[str], request: Request[Any, Any, State]) -> Response[str]:
        services = services_of(request.app.state)
        lang = preferred_language(request) or "ru"
        try:
            services.opt_out.customer(token)
        except InvalidInput as exc:
            return _unsubscribe_page(lang, f"<p>{html.escape(exc.message)}</p>", 404)
        text = _UNSUBSCRIBE_TEXT[lang]
        form = f'<p>{html.escape(text["ask"])}</p><form method="post"><button>{text["button"]}</button></form>'
        return _unsubscribe_page(lang, form)

    @post("/{token:str}", media_type="text/html", status_code=200, dependencies={"tx": Provide(provide_tx)})
    async def confirm(
        self, token: FromPath[str], request: Request[Any, Any, State], tx: NamedDependency[Connection]
    ) -> Response[str]:
        services = services_of(request.app.state)
        lang = preferred_language(request) or "ru"
        try:
            customer_id = services.opt_out.customer(token)
        except InvalidInput as exc:
            return _unsubscribe_page(lang, f"<p>{html.escape(exc.message)}</p>", 404)
        if await tx.fetchval("SELECT 1 FROM customers WHERE id = $1", customer_id) is None:
            return _unsubscribe_page(lang, "<p>?</p>", 404)
        await set_marketing(tx, customer_id, False, services.program, services.clock.now())
        return _unsubscribe_page(lang, f"<p>{html.escape(_UNSUBSCRIBE_TEXT[lang]['done'])}</p>")


class DevInboxController(Controller):
    """What the development provider stored (mounted outside production only)."""

    path = "/dev/inbox"
    tags = ["development"]  # noqa: RUF012

    @get(
        "/",
        operation_id="devInbox",
        summary="Messages the development provider 'sent' to a phone (E.164) or device token, newest first",
        responses=problems(404),
    )
    async def inbox(
        self,
        to: Annotated[str, QueryParameter(min_length=3, max_length=4096)],
        request: Request[Any, Any, State],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> list[InboxEntry]:
        settings = services_of(request.app.state).settings
        if SmsProvider.DEV is not settings.sms_provider and ViberProvider.DEV is not settings.viber_provider:
            raise NotFound("the development provider is not in use; messages went to real providers")
        recipient = to.strip()
        if recipient.isdigit() and len(recipient) <= 15:  # a phone whose '+' arrived unescaped (as a space)
            recipient = "+" + recipient
        return await read_inbox(services_of(request.app.state).pool, recipient, limit=limit)
