"""Provider adapters, and the lanes the worker sends through, chosen by settings.

SMS: the development inbox, Infobip or Twilio. Viber: none, the development inbox or Infobip. App push:
APNs (token auth, HTTP/2) and FCM HTTP v1 when their credentials are configured; outside production
the development inbox stands in for a push channel that has none. Wallet pass updates: APNs with the
Pass Type ID certificate, and Google Wallet's REST API; with development certificates (which Apple and
Google would refuse) they go to the development inbox instead. The remote core engine's notices (where
``KARTKA_ENGINE=http``): the engine itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kartka.clock import Clock
from kartka.db import Pool
from kartka.settings import Environment, Settings, SmsProvider, ViberProvider
from notifications.audience import Availability
from notifications.model import Channel, Provider
from notifications.providers.apns import load_apns, load_passkit_pusher
from notifications.providers.dev import DevProvider
from notifications.providers.engine import CONCURRENCY as ENGINE_CONCURRENCY
from notifications.providers.engine import RATE_PER_SECOND as ENGINE_RATE
from notifications.providers.engine import EngineProvider
from notifications.providers.fcm import load_fcm
from notifications.providers.google_wallet import GoogleWalletProvider
from notifications.providers.infobip import InfobipProvider
from notifications.providers.twilio import load_twilio
from notifications.worker import Lane
from wallet.passes.identity import is_development_service_account
from wallet.passes.service import Passes
from wallet.pricing import NoticeTaker

INFOBIP_WEBHOOK = "/v1/webhooks/infobip"
TWILIO_WEBHOOK = "/v1/webhooks/twilio"


def availability(settings: Settings) -> Availability:
    """Which channels can carry messages in this deployment (what producers may enqueue)."""
    dev = settings.environment is not Environment.PRODUCTION
    return Availability(
        viber=settings.viber_provider is not ViberProvider.NONE,
        apns=settings.apns_key_file is not None or dev,
        fcm=settings.fcm_service_account_file is not None or dev,
    )


def _infobip(settings: Settings, channel: Channel) -> InfobipProvider:
    assert settings.infobip_api_key is not None, "checked by the settings"
    return InfobipProvider(
        channel=channel,
        base_url=settings.infobip_base_url,
        api_key=settings.infobip_api_key.reveal(),
        sender=settings.infobip_sms_from if channel is Channel.SMS else settings.infobip_viber_from,
        notify_url=settings.public_base + INFOBIP_WEBHOOK,
        timeout=settings.provider_timeout_seconds,
    )


def build_providers(
    settings: Settings, pool: Pool, passes: Passes, clock: Clock, *, engine: NoticeTaker | None = None
) -> dict[Channel, Provider]:
    """One provider per channel this deployment sends on. Call inside the running event loop. ``engine``:
    the remote core engine to hand notices to (``None`` where pricing is embedded); the lane closes it."""
    dev = DevProvider(pool)
    providers: dict[Channel, Provider] = {}
    if settings.sms_provider is SmsProvider.DEV:
        providers[Channel.SMS] = dev
    elif settings.sms_provider is SmsProvider.INFOBIP:
        providers[Channel.SMS] = _infobip(settings, Channel.SMS)
    else:
        providers[Channel.SMS] = load_twilio(settings, status_callback=settings.public_base + TWILIO_WEBHOOK)
    if settings.viber_provider is ViberProvider.DEV:
        providers[Channel.VIBER] = dev
    elif settings.viber_provider is ViberProvider.INFOBIP:
        providers[Channel.VIBER] = _infobip(settings, Channel.VIBER)
    available = availability(settings)
    apns = load_apns(settings)
    if apns is not None:
        providers[Channel.APNS] = apns
    elif available.apns:
        providers[Channel.APNS] = dev
    fcm = load_fcm(settings)
    if fcm is not None:
        providers[Channel.FCM] = fcm
    elif available.fcm:
        providers[Channel.FCM] = dev
    apple, google = passes.setup.apple, passes.setup.google
    if apple is not None:
        providers[Channel.PASSKIT] = (
            dev
            if apple.identity.is_development
            else load_passkit_pusher(
                apple.identity,
                url=settings.passkit_apns_url,
                ca_file=settings.apns_ca_file,
                timeout=settings.provider_timeout_seconds,
            )
        )
    if google is not None:

        async def load_objects(numbers: Sequence[str]) -> dict[str, dict[str, Any] | None]:
            async with pool.acquire() as conn:
                return await passes.google_objects(conn, numbers, clock.now())

        providers[Channel.GWALLET] = (
            dev
            if is_development_service_account(google.service_account)
            else GoogleWalletProvider(
                base_url=google.api_url,
                service_account=google.service_account,
                config=google.config,
                load_objects=load_objects,
                timeout=settings.provider_timeout_seconds,
            )
        )
    if engine is not None:
        providers[Channel.ENGINE] = EngineProvider(engine, pool)
    return providers


def build_lanes(
    settings: Settings, pool: Pool, passes: Passes, clock: Clock, *, engine: NoticeTaker | None = None
) -> dict[Channel, Lane]:
    push = (settings.push_rate_per_second, settings.push_concurrency)
    limits = {
        Channel.SMS: (settings.sms_rate_per_second, settings.sms_concurrency),
        Channel.VIBER: (settings.viber_rate_per_second, settings.viber_concurrency),
        Channel.APNS: push,
        Channel.FCM: push,
        Channel.PASSKIT: push,
        Channel.GWALLET: push,
        Channel.ENGINE: (ENGINE_RATE, ENGINE_CONCURRENCY),
    }
    return {
        channel: Lane(provider, rate_per_second=limits[channel][0], concurrency=limits[channel][1])
        for channel, provider in build_providers(settings, pool, passes, clock, engine=engine).items()
    }
