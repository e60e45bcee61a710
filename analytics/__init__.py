"""Loyalty analytics: every receipt (with a card, from wallet's orders; without one, stored here), saved
segments, RFM and lifecycle, and the program's KPIs (``specs/analytics.md``). It reads wallet's tables and
never writes them; it writes only its own (``analytics/migrations``)."""
