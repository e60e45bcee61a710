"""Building the pricing engine from settings: for the API (pricing) and the worker (engine notices)."""

from __future__ import annotations

from engine.embedded import EmbeddedEngine
from engine.http import HttpEngine
from engine.promotions.book import PromotionBook
from engine.promotions.live import CatalogHolder
from kartka.settings import EngineKind, Settings
from wallet.pricing import Engine
from wallet.pricing import PromotionBook as BookPort
from wallet.program import Program


def remote_engine(settings: Settings, program: Program) -> HttpEngine | None:
    """The remote engine's client, or ``None`` when pricing is embedded (and no one is to be told)."""
    if settings.engine is not EngineKind.HTTP:
        return None
    assert settings.engine_url is not None, "checked by the settings"
    return HttpEngine(
        settings.engine_url,
        program,
        token=settings.engine_token.reveal() if settings.engine_token else None,
        timeout=settings.engine_timeout_ms / 1000,
        retries=settings.engine_retries,
    )


def build_engine(settings: Settings, program: Program, *, catalog: CatalogHolder | None = None) -> Engine:
    """The remote engine's client, or the embedded engine pricing with ``catalog.current`` (which live
    reload swaps); without a holder, the two promotions every program used to start with
    (``engine.promotions.legacy.DEFAULT_PROMOTIONS``)."""
    return remote_engine(settings, program) or EmbeddedEngine(program, catalog=catalog)


def promotion_book(engine: Engine) -> BookPort | None:
    """The book that prices calculate and commit with the customer's limits and offers (so a till is not
    shown a promotion already used up) and records promotions on orders, for the embedded engine (a
    remote engine keeps its own)."""
    if not isinstance(engine, EmbeddedEngine) or engine.degraded:
        return None
    return PromotionBook(engine)
