"""The seams between the pure core and the stored promotions: the catalog in force, swapped whole
by live reload, and what the store knows of a customer (personal offers, what limits counted)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from engine.promotions.evaluate import EMPTY_CATALOG, Active, Catalog, Used
from kartka.db import Connection
from wallet.pricing import SegmentSource


class CatalogHolder:
    """The catalog in force. Live reload builds a new immutable :class:`Catalog` and assigns it to
    ``current`` in one step; a cart reads ``current`` once, so it never sees half a change."""

    __slots__ = ("current",)

    def __init__(self, catalog: Catalog = EMPTY_CATALOG) -> None:
        self.current = catalog

    def swap(self, catalog: Catalog) -> Catalog:
        """Put ``catalog`` in force; returns the one it replaces."""
        previous, self.current = self.current, catalog
        return previous


class CustomerState(Protocol):
    """What stored promotions know of a customer, asked only when a cart meets a promotion that
    needs it (a personal one, or one with limits)."""

    async def read(
        self, customer_id: str | None, *, personal: bool, counted: Sequence[Active], at: datetime
    ) -> tuple[frozenset[str], Mapping[str, Used]]:
        """In one visit to the database: the promotions the customer holds a personal offer of, valid at
        ``at`` (when ``personal`` and there is a customer), and what each of ``counted``'s limits has
        counted so far (this customer's orders in its ``per_customer`` window, its budget's totals)."""
        ...


class SegmentsWhenAimed:
    """The order service's segment source: asks ``source`` (analytics' saved segments, one read per
    cart) only while a promotion in force is aimed at segments; otherwise a cart costs no lookup."""

    def __init__(self, source: SegmentSource, holder: CatalogHolder) -> None:
        self.source = source
        self.holder = holder

    async def segments(self, conn: Connection, customer_id: str) -> frozenset[str]:
        if not self.holder.current.needs_segments:
            return frozenset()
        return await self.source.segments(conn, customer_id)
