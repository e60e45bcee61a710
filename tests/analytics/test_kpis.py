"""The KPI formulas on their own (analytics.kpis): the spec's examples, and properties over any counts."""

from __future__ import annotations

from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.kpis import Counts, average, row, share


def test_the_seed_examples() -> None:
    # 10 receipts, 7 with a card -> 0.7; with card twice the check without -> uplift 2.
    counts = Counts(
        receipts_identified=7,
        revenue_identified=14_000,
        receipts_anonymous=3,
        revenue_anonymous=3_000,
        first_receipts=2,
        buyers=4,
        repeat_buyers=3,
        cards_issued=100,
        cards_activated=99,
        points_accrued=1_000,
        points_spent=250,
        liability_points=5_000,
        liability_pending_points=700,
        wallet_passes=30,
        active_cards=120,
    )
    r = row(counts, period_start=date(2026, 2, 1), period_end=date(2026, 3, 1))
    assert (r.receipts, r.identified_share_receipts) == (10, 0.7)
    assert r.identified_share_revenue == round(14_000 / 17_000, 6)
    assert (r.repeat_receipts, r.repeat_share) == (5, round(5 / 7, 6))
    assert r.repeat_buyers_share == 0.75
    assert (r.average_check_identified, r.average_check_anonymous, r.average_check_uplift) == (2_000, 1_000, 2.0)
    assert r.card_activation_share == 0.99
    assert r.points_burn_rate == 0.25
    assert (r.liability_available_points, r.liability_money) == (4_300, 5_000)
    assert r.wallet_adoption_share == 0.25


def test_nothing_to_divide_is_null_not_zero() -> None:
    r = row(Counts())
    assert r.identified_share_receipts is None
    assert r.repeat_share is None
    assert r.average_check_identified is None
    assert r.average_check_uplift is None
    assert r.card_activation_share is None
    assert r.points_burn_rate is None
    assert r.liability_money is None


def test_averages_round_half_up_in_whole_minor_units() -> None:
    assert average(7_750, 7) == 1_107
    assert average(5, 2) == 3
    assert average(4, 3) == 1
    assert average(0, 3) == 0
    assert average(10, 0) is None


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # pure; a loaded machine starves draws
@given(
    identified=st.integers(0, 10**6),
    anonymous=st.integers(0, 10**6),
    revenue=st.integers(0, 10**12),
    data=st.data(),
)
def test_shares_are_fractions_between_zero_and_one(
    identified: int, anonymous: int, revenue: int, data: st.DataObject
) -> None:
    firsts = data.draw(st.integers(0, identified))
    buyers = data.draw(st.integers(0, identified))
    repeat = data.draw(st.integers(0, buyers // 2 if buyers else 0))
    revenue_identified = data.draw(st.integers(identified, max(identified, revenue)))
    revenue_anonymous = data.draw(st.integers(anonymous, anonymous + 10**9))
    r = row(
        Counts(
            receipts_identified=identified,
            revenue_identified=revenue_identified,
            receipts_anonymous=anonymous,
            revenue_anonymous=revenue_anonymous,
            first_receipts=firsts,
            buyers=buyers,
            repeat_buyers=repeat,
        )
    )
    for value in (r.identified_share_receipts, r.identified_share_revenue, r.repeat_share, r.repeat_buyers_share):
        assert value is None or 0 <= value <= 1
    assert r.receipts == identified + anonymous
    assert r.revenue == revenue_identified + revenue_anonymous
    if identified and anonymous:
        assert r.identified_share_receipts == share(identified, identified + anonymous)
