"""How points, percentages and dates read to people: the one text layer is :mod:`kartka.texts` (its
catalogs in ``kartka/locales``); these names stay here for the wallet's callers."""

from __future__ import annotations

from kartka.texts import format_date, format_percent, format_points, points

__all__ = ["format_date", "format_percent", "format_points", "points"]
