"""Building the notifier (for producers) and the dispatcher (for workers) from settings."""

from __future__ import annotations

from kartka.clock import Clock
from kartka.db import Pool
from kartka.settings import Settings
from notifications.preferences import OptOutLinks
from notifications.providers import availability, build_lanes
from notifications.triggers import Notifier
from notifications.worker import Dispatcher, WorkerConfig
from wallet.customers import CustomerService
from wallet.passes.service import Passes
from wallet.passes.setup import load_wallet_setup
from wallet.program import Program


def make_notifier(settings: Settings, program: Program) -> Notifier:
    return Notifier(program=program, public_base=settings.public_base, available=availability(settings))


def opt_out_links(settings: Settings) -> OptOutLinks:
    return OptOutLinks(secret=settings.secret_key.reveal(), public_base=settings.public_base)


def worker_config(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        batch=settings.outbox_batch,
        loops=settings.outbox_loops,
        max_attempts=settings.outbox_max_attempts,
        lease_seconds=settings.outbox_lease_seconds,
        poll_seconds=settings.outbox_poll_seconds,
        backoff_seconds=settings.outbox_backoff_seconds,
        backoff_max_seconds=settings.outbox_backoff_max_seconds,
        viber_fallback_seconds=settings.viber_fallback_seconds,
        brand=settings.pass_organization,
    )


def make_passes(settings: Settings, program: Program, clock: Clock) -> Passes:
    """What builds wallet passes, from the settings (development certificates made where needed)."""
    customers = CustomerService(
        region=settings.default_region,
        card_prefix=settings.card_prefix,
        program=program,
        events=make_notifier(settings, program),
        clock=clock,
    )
    return Passes(setup=load_wallet_setup(settings, program), customers=customers, public_base=settings.public_base)


def make_dispatcher(settings: Settings, pool: Pool, program: Program, clock: Clock) -> Dispatcher:
    """The worker's dispatcher; call inside the running event loop (providers open HTTP clients)."""
    return Dispatcher(
        pool,
        build_lanes(settings, pool, make_passes(settings, program, clock), clock),
        clock=clock,
        opt_out=opt_out_links(settings),
        config=worker_config(settings),
        program=program,
    )
