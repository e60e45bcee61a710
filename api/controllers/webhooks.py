"""Delivery receipts from the SMS and Viber providers (webhooks), authenticated the way each provider does it."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from api.auth import INFOBIP_SCHEME, TWILIO_SCHEME
from api.errors import problems
from api.openapi import reads_body
from api.state import provide_tx, services_of
from kartka.db import Connection
from kartka.errors import InvalidInput, Unauthenticated
from notifications.providers import INFOBIP_WEBHOOK, TWILIO_WEBHOOK, infobip, twilio
from notifications.providers.infobip import InfobipReports
from notifications.providers.twilio import TwilioStatusCallback
from notifications.receipts import apply_receipts


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
        operation_class=reads_body("application/json", InfobipReports),
    )
    async def infobip_reports(self, request: Request[Any, Any, State], tx: NamedDependency[Connection]) -> Accepted:
        services = services_of(request.app.state)
        secret = services.settings.infobip_webhook_secret
        if secret is None or not infobip.authorized(request.headers.get("authorization"), secret.reveal()):
            raise Unauthenticated(
                "delivery reports must carry the configured Basic credentials", challenge='Basic realm="infobip"'
            )
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
        operation_class=reads_body("application/x-www-form-urlencoded", TwilioStatusCallback),
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
            raise Unauthenticated("the X-Twilio-Signature does not match", challenge='TwilioSignature realm="twilio"')
        receipt = twilio.parse_status(params)
        receipts = [receipt] if receipt is not None else []
        return Accepted(updated=await apply_receipts(tx, receipts, services.clock.now(), "twilio"))
