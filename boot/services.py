"""Every service the processes use, built once, in one place.

``build_services`` is the object graph: it makes each service from the settings and hands it the ports
it needs (the notifier as the wallet's ``WalletEvents``, Google's REST client as its ``WalletObjects``,
the pricing engine as its ``Engine``). ``open_services`` adds what has to be opened and closed around
it (the pool, HTTP clients). The API (``boot.web``), the worker (``boot.worker``) and the commands
(``boot.cli``) all take their services from here, so a service is built the same way everywhere.

Adding a service: a field on ``Services``, one line in ``build_services``; if HTTP handlers use it,
the same field on the ``api.state.Services`` protocol (what the API may reach); if it holds something
to close, close it in ``open_services``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from analytics.receipts import ReceiptImporter, ReceiptService
from analytics.reports import KpiService
from analytics.segments import SegmentLookup
from boot.schema import SCHEMA
from engine.promotions.legacy import default_catalog
from engine.promotions.live import CatalogHolder, SegmentsWhenAimed
from engine.promotions.offers import ShopperOffers
from engine.promotions.reload import LiveCatalog
from engine.promotions.store import PromotionAdmin
from engine.promotions.trial import Trials
from engine.setup import build_engine, promotion_book, remote_engine
from kartka.clock import Clock
from kartka.crypto import derive_key
from kartka.db import Pool, connect, create_pool
from kartka.keys import KeyVerifier
from kartka.migrate import Schema
from kartka.ratelimit import RateLimiter, TextBudget
from kartka.settings import Settings, redact_url
from kartka.staff import Passwords, StaffSignIn
from kartka.tokens import Tokens
from notifications.preferences import OptOutLinks
from notifications.providers import availability, build_lanes
from notifications.providers.google_wallet import load_wallet_objects
from notifications.triggers import Notifier
from notifications.worker import Dispatcher, WorkerConfig
from wallet.customers import CustomerService
from wallet.importer import Importer
from wallet.join import JoinService
from wallet.orders import OrderService
from wallet.passes.google import WalletObjects
from wallet.passes.service import Passes
from wallet.passes.setup import WalletSetup, load_wallet_setup
from wallet.pricing import NO_SEGMENTS, Engine
from wallet.program import Program, load_program
from wallet.qrtokens import QrTokens
from wallet.signin import SignInConfig, SignInService

logger = logging.getLogger("kartka")

#: Builds the pricing engine for a program; tests pass one that talks to their fake engine.
EngineFactory = Callable[[Program], Engine]


@dataclass(slots=True)
class Services:
    """The services of one process. Not frozen only so that ``api.state.Services``, a protocol of plain
    attributes, matches it; nothing assigns to it after ``build_services``."""

    settings: Settings
    pool: Pool
    clock: Clock
    program: Program
    schema: Schema
    engine: Engine
    keys: KeyVerifier
    notifier: Notifier
    opt_out: OptOutLinks
    customers: CustomerService
    importer: Importer
    orders: OrderService
    tokens: Tokens
    passwords: Passwords
    signin: SignInService
    staff_signin: StaffSignIn
    qr_tokens: QrTokens
    passes: Passes
    limiter: RateLimiter
    texts: TextBudget
    join: JoinService
    promotions: PromotionAdmin
    shopper_offers: ShopperOffers
    catalog: LiveCatalog | None
    """The stored promotions this process prices with, kept current (``None`` when a remote engine prices;
    started by the API process, ``boot.web``)."""
    trials: Trials | None
    receipts: ReceiptService
    receipt_importer: ReceiptImporter
    kpis: KpiService


def build_services(
    settings: Settings,
    *,
    pool: Pool,
    clock: Clock,
    program: Program,
    engine: Engine,
    wallet: WalletSetup | None = None,
    google_objects: WalletObjects | None = None,
    holder: CatalogHolder | None = None,
) -> Services:
    """The object graph. Opens nothing: whatever needs opening or closing is passed in (``open_services``).
    ``holder`` is the catalog the embedded engine prices with; the live catalog swaps it."""
    secret = settings.secret_key.reveal()
    notifier = Notifier(program=program, public_base=settings.public_base, available=availability(settings))
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
    limiter = RateLimiter(derive_key(secret, "rate"))
    segments = SegmentLookup(program, clock)  # saved segments' members: calculate's, preview's and backtest's
    # Asked by calculate and the shopper's offers only while a live promotion is aimed at segments.
    live_segments = SegmentsWhenAimed(segments, holder) if holder else NO_SEGMENTS
    orders = OrderService(
        program=program,
        engine=engine,
        customers=customers,
        clock=clock,
        book=promotion_book(engine),
        segments=live_segments,
    )
    texts = TextBudget(
        limiter,
        per_hour=settings.sms_budget_per_hour,
        per_country_per_hour=settings.sms_budget_per_country_per_hour,
        countries=settings.sms_country_budgets,
        home=settings.default_region,
    )
    passwords = passwords_of(settings)
    catalog = None if engine.remote else live_catalog(settings, pool, program, holder)
    return Services(
        settings=settings,
        pool=pool,
        clock=clock,
        program=program,
        schema=SCHEMA,
        engine=engine,
        keys=KeyVerifier(pool, settings.key_cache_seconds, unlistened_seconds=settings.key_cache_unlistened_seconds),
        notifier=notifier,
        opt_out=opt_out_links(settings),
        customers=customers,
        importer=Importer(pool, region=settings.default_region, card_prefix=settings.card_prefix),
        orders=orders,
        tokens=tokens,
        passwords=passwords,
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
        passes=Passes(
            setup=wallet or load_wallet_setup(settings, program),
            customers=customers,
            public_base=settings.public_base,
            google_api=google_objects,
        ),
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
        promotions=PromotionAdmin(remote=engine.remote, approval=program.promotion_approval),
        shopper_offers=ShopperOffers(catalog=catalog, customers=customers, program=program, segments=live_segments),
        catalog=catalog,
        trials=Trials(catalog=catalog, customers=customers, orders=orders, program=program, segments=segments)
        if catalog is not None
        else None,
        receipts=ReceiptService(program=program, clock=clock),
        receipt_importer=ReceiptImporter(pool, clock),
        kpis=KpiService(program),
    )


def live_catalog(settings: Settings, pool: Pool, program: Program, holder: CatalogHolder | None) -> LiveCatalog:
    """The stored promotions, reloaded on every change (over LISTEN, or a poll while it is away) and
    swapped whole into ``holder``; until a stored promotion goes live, the two starter promotions run."""
    catalog = LiveCatalog(pool, lambda: connect(settings, application="kartka-api-promotions", background=False))
    if holder is not None:
        starters = default_catalog(program)
        catalog.on_swap(lambda snapshot: holder.swap(snapshot.catalog(program.zone) if snapshot.stored else starters))
    return catalog


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    clock: Clock,
    application: str = "kartka-api",
    background: bool = False,
    engine: EngineFactory | None = None,
    google: bool = True,
) -> AsyncIterator[Services]:
    """The services with their pool and clients open, closed on the way out. Call inside the event loop
    that will use them (the pool's connections and the HTTP clients belong to it). ``google``: open the
    client that inserts Google Wallet objects for save links (only the API hands out save links)."""
    if settings.database_url is None:
        raise RuntimeError("DATABASE_URL is not set; `kartka serve` starts an embedded PostgreSQL for you")
    logger.info("connecting to %s", redact_url(settings.database_url.reveal()))
    program = load_program(settings.program_file)
    holder = CatalogHolder(default_catalog(program))
    pricing = engine(program) if engine else build_engine(settings, program, catalog=holder)
    google_objects = None
    try:
        pool = await create_pool(settings, application=application, background=background)
        try:
            wallet = load_wallet_setup(settings, program)
            if google:
                google_objects = load_wallet_objects(wallet.google, timeout=settings.google_save_timeout_seconds)
            yield build_services(
                settings,
                pool=pool,
                clock=clock,
                program=program,
                engine=pricing,
                wallet=wallet,
                google_objects=google_objects,
                holder=holder,
            )
        finally:
            if google_objects is not None:
                await google_objects.aclose()
            try:
                await asyncio.wait_for(pool.close(), timeout=settings.db_command_timeout_seconds)
            except TimeoutError:  # a frozen database does not answer goodbye either
                pool.terminate()
    finally:
        await pricing.close()


def make_dispatcher(services: Services) -> Dispatcher:
    """The worker's dispatcher; call inside the running event loop (the providers open HTTP clients).
    The remote engine's notices go through a client of their own, which the dispatcher closes."""
    settings = services.settings
    return Dispatcher(
        services.pool,
        build_lanes(
            settings,
            services.pool,
            services.passes,
            services.clock,
            engine=remote_engine(settings, services.program),
        ),
        clock=services.clock,
        opt_out=services.opt_out,
        config=worker_config(settings),
        program=services.program,
    )


def passwords_of(settings: Settings) -> Passwords:
    return Passwords(memory_kib=settings.argon2_memory_kib, rounds=settings.argon2_rounds)


def opt_out_links(settings: Settings) -> OptOutLinks:
    return OptOutLinks(secret=settings.secret_key.reveal(), public_base=settings.public_base)


def signin_config(settings: Settings) -> SignInConfig:
    return SignInConfig(
        code_length=settings.otp_length,
        ttl_seconds=settings.otp_ttl_seconds,
        max_attempts=settings.otp_max_attempts,
        max_attempts_per_code=settings.otp_max_attempts_per_code,
        resend_seconds=settings.otp_resend_seconds,
        resend_max_seconds=settings.otp_resend_max_seconds,
        per_ip_per_hour=settings.otp_per_ip_per_hour,
        checks_per_ip_per_hour=settings.signin_per_ip_per_hour,
    )


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
