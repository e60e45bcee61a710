"""Loyalty analytics: every receipt, saved segments, RFM and lifecycle, KPIs and reports
(``specs/analytics.md``). Sits above the engine and the wallet, whose tables it reads, and below
notifications, which aims campaigns at its segments."""
