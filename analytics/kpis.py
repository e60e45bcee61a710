"""The KPI definitions, written once (``specs/analytics.md``, "KPIs: definitions"; docs/analytics.md).

A row of the report is built from additive counts (:class:`Counts`, summed by ``analytics.reports`` from
the rollups) by the formulas below, one per line of the spec's table, so a reader can check them
against it. Shares are fractions 0–1 (``None`` when there is nothing to divide by), money is integer
minor units and points integer hundredths. What "counts" as a receipt is decided before the counts are
summed (``analytics.kpis_rollup``): refunds net a receipt's amount, and a receipt refunded in full (or
worth nothing) does not count at all.
"""

from __future__ import annotations

from datetime import date
from fractions import Fraction
from typing import Final

import msgspec

#: 1 point = 1 currency unit (docs/program.md): a hundredth of a point is worth one minor unit.
MINOR_UNITS_PER_POINT_HUNDREDTH: Final = 1
#: "Card activation": a purchase within this many days of the card's issue.
ACTIVATION_DAYS: Final = 30
#: Shares keep six decimal places: enough for a percentage with four.
_PLACES: Final = 6


class Counts(msgspec.Struct, kw_only=True):
    """Additive figures for one row (a period, store or source); ``None`` where the row has no such figure."""

    receipts_identified: int = 0
    revenue_identified: int = 0
    receipts_anonymous: int = 0
    revenue_anonymous: int = 0
    first_receipts: int = 0
    """Identified receipts that were their customer's first counting purchase ever."""
    buyers: int = 0
    """Distinct customers with an identified receipt in the row."""
    repeat_buyers: int = 0
    """Of those, customers with two or more receipts in the row."""
    cards_issued: int | None = None
    cards_activated: int | None = None
    points_accrued: int | None = None
    points_spent: int | None = None
    points_granted: int | None = None
    points_adjusted: int | None = None
    points_expired: int | None = None
    liability_points: int | None = None
    liability_pending_points: int | None = None
    wallet_passes: int | None = None
    active_cards: int | None = None


class KpiRow(msgspec.Struct, kw_only=True):
    """One row of ``GET /v1/admin/reports/kpis``."""

    period_start: date | None
    period_end: date | None
    """Exclusive."""
    store: str | None
    source: str | None
    receipts: int
    receipts_identified: int
    receipts_anonymous: int
    revenue: int
    revenue_identified: int
    revenue_anonymous: int
    identified_share_receipts: float | None
    identified_share_revenue: float | None
    repeat_receipts: int
    repeat_share: float | None
    buyers: int
    repeat_buyers: int
    repeat_buyers_share: float | None
    average_check_identified: int | None
    average_check_anonymous: int | None
    average_check_uplift: float | None
    cards_issued: int | None
    cards_activated_30d: int | None
    card_activation_share: float | None
    points_accrued: int | None
    points_spent: int | None
    points_burn_rate: float | None
    points_granted: int | None
    points_adjusted: int | None
    points_expired: int | None
    """Points that lapsed unspent in the period."""
    liability_points: int | None
    liability_pending_points: int | None
    liability_available_points: int | None
    liability_money: int | None
    wallet_passes_installed: int | None
    active_cards: int | None
    wallet_adoption_share: float | None


def share(part: int | None, whole: int | None) -> float | None:
    """part / whole as a fraction 0–1; ``None`` when there is no whole to speak of."""
    if part is None or not whole:
        return None
    return round(part / whole, _PLACES)


def average(total: int, count: int) -> int | None:
    """total / count in whole minor units, halves rounded up (money never goes through a float)."""
    if count == 0:
        return None
    return (2 * total + count) // (2 * count)


def ratio(numerator: Fraction | None, denominator: Fraction | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(float(numerator / denominator), _PLACES)


def row(
    counts: Counts,
    *,
    period_start: date | None = None,
    period_end: date | None = None,
    store: str | None = None,
    source: str | None = None,
) -> KpiRow:
    """The spec's table, line by line."""
    c = counts
    receipts = c.receipts_identified + c.receipts_anonymous
    revenue = c.revenue_identified + c.revenue_anonymous
    # repeat share: identified receipts whose customer had an earlier identified receipt / identified
    # receipts. Every counting receipt of a customer but their first is such a receipt.
    repeat_receipts = c.receipts_identified - c.first_receipts
    # average check with and without a card: net revenue / receipts; the uplift is their ratio.
    check_identified = Fraction(c.revenue_identified, c.receipts_identified) if c.receipts_identified else None
    check_anonymous = Fraction(c.revenue_anonymous, c.receipts_anonymous) if c.receipts_anonymous else None
    available = (
        c.liability_points - c.liability_pending_points
        if c.liability_points is not None and c.liability_pending_points is not None
        else None
    )
    return KpiRow(
        period_start=period_start,
        period_end=period_end,
        store=store,
        source=source,
        receipts=receipts,
        receipts_identified=c.receipts_identified,
        receipts_anonymous=c.receipts_anonymous,
        revenue=revenue,
        revenue_identified=c.revenue_identified,
        revenue_anonymous=c.revenue_anonymous,
        # identified share: receipts with a card / all receipts; net revenue with a card / all net revenue
        identified_share_receipts=share(c.receipts_identified, receipts),
        identified_share_revenue=share(c.revenue_identified, revenue),
        repeat_receipts=repeat_receipts,
        repeat_share=share(repeat_receipts, c.receipts_identified),
        # repeat buyers: buyers with two or more receipts in the period / buyers in the period
        buyers=c.buyers,
        repeat_buyers=c.repeat_buyers,
        repeat_buyers_share=share(c.repeat_buyers, c.buyers),
        average_check_identified=average(c.revenue_identified, c.receipts_identified),
        average_check_anonymous=average(c.revenue_anonymous, c.receipts_anonymous),
        average_check_uplift=ratio(check_identified, check_anonymous),
        # card activation: of the cards issued in the period, the share with a purchase within 30 days
        cards_issued=c.cards_issued,
        cards_activated_30d=c.cards_activated,
        card_activation_share=share(c.cards_activated, c.cards_issued),
        # points burn rate: points spent in the period / points accrued in it (grants and adjustments apart)
        points_accrued=c.points_accrued,
        points_spent=c.points_spent,
        points_burn_rate=share(c.points_spent, c.points_accrued) if c.points_accrued else None,
        points_granted=c.points_granted,
        points_adjusted=c.points_adjusted,
        points_expired=c.points_expired,
        # liability: available + pending points at the end of the period, and what they are worth
        liability_points=c.liability_points,
        liability_pending_points=c.liability_pending_points,
        liability_available_points=available,
        liability_money=None if c.liability_points is None else c.liability_points * MINOR_UNITS_PER_POINT_HUNDREDTH,
        # wallet adoption: cards with an installed Apple pass or a saved Google pass / active cards
        wallet_passes_installed=c.wallet_passes,
        active_cards=c.active_cards,
        wallet_adoption_share=share(c.wallet_passes, c.active_cards),
    )
