"""Building the pricing engine from settings: for the API (pricing) and the worker (engine notices)."""

from __future__ import annotations

from engine.embedded import EmbeddedEngine
from engine.http import HttpEngine
from engine.promotions.book import PromotionBook, StoredCustomerState
from engine.promotions.live import CatalogHolder, CustomerState
from kartka.db import Pool
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


def build_engine(
    settings: Settings, program: Program, *, catalog: CatalogHolder | None = None, state: CustomerState | None = None
) -> Engine:
    """The remote engine's client, or the embedded engine pricing with ``catalog.current`` (which live
    reload swaps) and asking ``state`` for offers and limits; without a holder, the two promotions
    every program used to start with (``engine.promotions.legacy.DEFAULT_PROMOTIONS``)."""
    return remote_engine(settings, program) or EmbeddedEngine(program, catalog=catalog, state=state)


def promotion_book(engine: Engine, pool: Pool | None = None) -> BookPort | None:
    """The book that counts limits and records promotions on orders, for the embedded engine (a remote
    engine keeps its own). With ``pool``, an embedded engine that has no ``CustomerState`` yet reads
    offers and limits from the database for calculate, so a till is not shown a promotion already used up."""
    if not isinstance(engine, EmbeddedEngine) or engine.degraded:
        return None
    if pool is not None and engine.state is None:
        engine.state = StoredCustomerState(pool)
    return PromotionBook(engine)
