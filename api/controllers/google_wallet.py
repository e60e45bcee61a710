"""``POST /v1/webhooks/google-wallet``: Google Wallet's save and delete callbacks.

Google signs each callback (ECv2SigningOnly, ``wallet.passes.callbacks``); a body that does not verify
for this issuer is a 401 and changes nothing. A verified event is kept in the install history, once
per nonce, so a redelivery answers 200 again without counting twice.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from api.auth import GOOGLE_WALLET_SCHEME
from api.errors import problems
from api.openapi import reads_body
from api.state import provide_tx, services_of
from kartka.db import Connection
from kartka.errors import NotFound
from wallet.passes.callbacks import Envelope, GoogleRootKeys, read_envelope, record_event, verify_callback

GOOGLE_WALLET_WEBHOOK = "/v1/webhooks/google-wallet"


class CallbackRecorded(msgspec.Struct, frozen=True):
    event: str
    object_id: str
    recorded: bool
    """``false`` for a redelivery of an event kept before (same nonce)."""


def _root_keys(state: State, url: str) -> GoogleRootKeys:
    """The app's cache of Google's root keys, made on first use."""
    keys = getattr(state, "google_root_keys", None)
    if not isinstance(keys, GoogleRootKeys) or keys.url != url:
        keys = GoogleRootKeys(url)
        state.google_root_keys = keys
    return keys


class GoogleWalletWebhookController(Controller):
    tags = ["webhooks"]  # noqa: RUF012
    dependencies = {"tx": Provide(provide_tx)}  # noqa: RUF012

    @post(
        GOOGLE_WALLET_WEBHOOK,
        operation_id="webhookGoogleWallet",
        summary="Google Wallet save / delete callbacks (signed by Google: ECv2SigningOnly)",
        security=[{GOOGLE_WALLET_SCHEME: []}],
        status_code=200,
        responses=problems(401, 404, 422, 503),
        operation_class=reads_body("application/json", Envelope),
    )
    async def google_wallet_callback(
        self, request: Request[Any, Any, State], tx: NamedDependency[Connection]
    ) -> CallbackRecorded:
        services = services_of(request.app.state)
        google = services.passes.setup.google
        if google is None:
            raise NotFound("Google Wallet is not configured for this program")
        issuer = google.config.issuer_id
        now = services.clock.now()
        envelope = read_envelope(await request.body())  # a stranger's garbage never costs a fetch of the keys
        roots = await _root_keys(request.app.state, services.settings.google_root_keys_url).keys(now)
        message = verify_callback(envelope, roots=roots, issuer_id=issuer, now=now)
        recorded = await record_event(tx, message, issuer, now)
        return CallbackRecorded(event=message.event_type, object_id=message.object_id, recorded=recorded)
