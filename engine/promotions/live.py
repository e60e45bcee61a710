"""The seams between the pure core and the stored promotions: the catalog in force, swapped whole
by live reload, and what the store knows of a customer (personal offers, what limits counted)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from engine.promotions.evaluate import EMPTY_CATALOG, Catalog
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

    async def members(self, conn: Connection, customer_ids: Sequence[str]) -> Mapping[str, frozenset[str]]:
        if not self.holder.current.needs_segments:
            return {}
        return await self.source.members(conn, customer_ids)
