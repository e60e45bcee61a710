"""Properties of the evaluation core over random carts, promotions and groups (pure, fast)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.promotions.evaluate import Active, Catalog, evaluate
from engine.promotions.model import Group, Mode, parse_promotion
from engine.promotions.shapes import Facts, Outcome
from wallet.money import prorate, share_floor, share_round
from wallet.pricing import CartLine

FACTS = Facts(at=datetime(2026, 3, 2, 9, tzinfo=UTC), tier="standart", rate_bp=500, language="en")
CATEGORIES = ["coffee", "pastry", "tea"]
MODES: list[Mode] = ["sequential", "exclusive", "sum", "best"]

lines_st = st.lists(
    st.builds(
        CartLine,
        sku=st.sampled_from(["a", "b", "c", "d"]),
        qty=st.integers(1, 5),
        unit_price=st.integers(0, 5000),
        category=st.sampled_from([*CATEGORIES, None]),
        brand=st.sampled_from(["x", "y", None]),
        on_sale=st.booleans(),
    ),
    min_size=1,
    max_size=6,
)
selector_st = st.one_of(
    st.just({}),
    st.builds(lambda c: {"categories": [c]}, st.sampled_from(CATEGORIES)),
    st.builds(lambda s: {"skus": [s]}, st.sampled_from(["a", "b"])),
    st.builds(lambda b: {"brands": [b]}, st.sampled_from(["x", "y"])),
)
bp_st = st.integers(1, 10_000)
benefit_st = st.one_of(
    st.builds(
        lambda s, bp, mu: {"type": "percent_off", "lines": s, "percent_bp": bp, **mu},
        selector_st,
        bp_st,
        st.sampled_from([{}, {"max_units": 2}, {"max_units": 1, "pick": "dearest"}]),
    ),
    st.builds(lambda s, a: {"type": "amount_off", "lines": s, "amount": a}, selector_st, st.integers(1, 3000)),
    st.builds(lambda s, p: {"type": "fixed_price", "lines": s, "price": p}, selector_st, st.integers(0, 3000)),
    st.builds(lambda a: {"type": "cart_amount_off", "amount": a}, st.integers(1, 20_000)),
    st.builds(
        lambda s, n, m: {"type": "n_for_m", "lines": s, "n": n, "m": min(m, n - 1)},
        selector_st,
        st.integers(2, 4),
        st.integers(1, 3),
    ),
    st.builds(
        lambda s, n, bp: {"type": "nth_percent", "lines": s, "n": n, "percent_bp": bp},
        selector_st,
        st.integers(2, 4),
        bp_st,
    ),
    st.builds(
        lambda bp: {
            "type": "bundle",
            "trigger": {"categories": ["coffee"]},
            "target": {"categories": ["pastry"]},
            "percent_bp": bp,
        },
        bp_st,
    ),
    st.builds(lambda p: {"type": "points_fixed", "points": p}, st.integers(1, 5000)),
    st.builds(
        lambda s, p, per: {"type": "points_per_amount", "lines": s, "points": p, "per": per},
        selector_st,
        st.integers(1, 500),
        st.integers(1, 2000),
    ),
    st.builds(lambda s, bp: {"type": "points_percent", "lines": s, "rate_bp": bp}, selector_st, bp_st),
    st.builds(
        lambda s, f: {"type": "points_multiplier", "lines": s, "factor_bp": f}, selector_st, st.integers(10_001, 50_000)
    ),
    st.builds(lambda s: {"type": "no_redeem", "lines": s}, selector_st),
)


@st.composite
def catalogs(draw: st.DrawFn, mode: Mode | None = None, one_group: bool = False) -> Catalog:
    names = ["default"] if one_group else ["default", "g1", "g2"]
    groups = {
        name: Group(
            mode=draw(st.sampled_from(MODES)) if mode is None else mode,
            priority=draw(st.integers(0, 3)),
            max_discount_bp=draw(st.one_of(st.none(), bp_st)),
        )
        for name in names
    }
    promotions = []
    for seq, benefit in enumerate(draw(st.lists(benefit_st, min_size=1, max_size=5))):
        extra: dict[str, Any] = {}
        if draw(st.booleans()):
            extra["limits"] = (
                {"per_order": 1}
                if benefit["type"] in ("cart_amount_off", "points_fixed")
                else {"per_order": draw(st.integers(1, 3))}
            )
        data = {
            "id": f"p{seq}",
            "title": {"en": "t"},
            "benefit": benefit,
            "group": draw(st.sampled_from(names)),
            "priority": draw(st.integers(0, 3)),
            **extra,
        }
        promotions.append(Active(parse_promotion(data), revision=1, seq=seq))
    return Catalog(promotions, groups)


def check_money(lines: list[CartLine], outcome: Outcome) -> None:
    for line, priced in zip(lines, outcome.lines, strict=True):
        assert 0 <= priced.discount <= line.total, "no line below zero"
        assert priced.discount == sum(a.discount for a in priced.promotions), "the breakdown adds up"
        assert all(a.discount >= 0 and a.points >= 0 for a in priced.promotions)
        if line.on_sale:
            assert priced.discount == 0
            assert all(a.points == 0 for a in priced.promotions)
    assert sum(a.points for p in outcome.lines for a in p.promotions) == outcome.bonus_points
    assert 0 <= outcome.redeem <= outcome.max_redeem <= share_floor(outcome.redeem_base, 7_000)
    paid = sum(line.total for line in lines) - outcome.discount - outcome.redeem
    assert paid >= 0


@settings(max_examples=100, deadline=None)
@given(lines_st, catalogs(), st.integers(0, 100_000), st.integers(0, 100_000))
def test_money_is_conserved_and_never_below_zero(
    lines: list[CartLine], catalog: Catalog, available: int, requested: int
) -> None:
    outcome = evaluate(lines, FACTS, catalog, available_points=available, requested_points=requested)
    check_money(lines, outcome)
    earning = sum(line.total - p.discount for line, p in zip(lines, outcome.lines, strict=True) if not line.on_sale)
    assert outcome.accrue == share_floor(earning - outcome.redeem, FACTS.rate_bp)


@settings(max_examples=50, deadline=None)
@given(lines_st, catalogs(one_group=True))
def test_a_group_never_exceeds_its_cap(lines: list[CartLine], catalog: Catalog) -> None:
    cap = catalog.group("default").max_discount_bp
    outcome = evaluate(lines, FACTS, catalog)
    for line, priced in zip(lines, outcome.lines, strict=True):
        if cap is not None:
            assert priced.discount <= share_floor(line.total, cap)


def percent_catalog(mode: Mode, rates: list[int]) -> Catalog:
    promotions = [
        Active(
            parse_promotion(
                {"id": f"p{i}", "title": {"en": "t"}, "benefit": {"type": "percent_off", "lines": {}, "percent_bp": bp}}
            ),
            1,
            i,
        )
        for i, bp in enumerate(rates)
    ]
    return Catalog(promotions, {"default": Group(mode=mode)})


rates_st = st.lists(bp_st, min_size=1, max_size=4)


@settings(max_examples=50, deadline=None)
@given(lines_st, rates_st)
def test_each_mode_obeys_its_definition(lines: list[CartLine], rates: list[int]) -> None:
    def unit_discounts(mode: Mode) -> list[int]:
        return [p.discount for p in evaluate(lines, FACTS, percent_catalog(mode, rates)).lines]

    for i, line in enumerate(lines):
        price = 0 if line.on_sale else line.unit_price
        # exclusive: the first that gives anything; best: the largest; sum: all on the start price, capped
        first = next((share_round(price, r) for r in rates if share_round(price, r)), 0)
        assert unit_discounts("exclusive")[i] == line.qty * first
        assert unit_discounts("best")[i] == line.qty * max(share_round(price, r) for r in rates)
        assert unit_discounts("sum")[i] == line.qty * min(price, sum(share_round(price, r) for r in rates))
        left = price
        for r in rates:
            left -= share_round(left, r)
        assert unit_discounts("sequential")[i] == line.qty * (price - left)


@settings(max_examples=50, deadline=None)
@given(lines_st, catalogs(mode="best", one_group=True))
def test_best_gives_at_least_what_any_one_gives_alone(lines: list[CartLine], catalog: Catalog) -> None:
    together = evaluate(lines, FACTS, catalog).discount
    for active in catalog.promotions:
        alone = evaluate(lines, FACTS, Catalog([active], catalog.groups)).discount
        assert together >= alone or catalog.group("default").max_discount_bp is not None


@settings(max_examples=50, deadline=None)
@given(lines_st, catalogs(), st.data())
def test_refund_shares_give_back_exactly_what_was_given(
    lines: list[CartLine], catalog: Catalog, data: st.DataObject
) -> None:
    outcome = evaluate(lines, FACTS, catalog)
    for line, priced in zip(lines, outcome.lines, strict=True):
        parts = data.draw(st.lists(st.integers(1, line.qty), max_size=line.qty))
        returns, done = [], 0
        for wanted in parts:
            part = min(wanted, line.qty - done)
            if part:
                returns.append((done, done + part))
                done += part
        if done < line.qty:
            returns.append((done, line.qty))
        for applied in priced.promotions:
            back = [
                prorate(applied.discount, after, line.qty) - prorate(applied.discount, before, line.qty)
                for before, after in returns
            ]
            assert sum(back) == applied.discount
            assert all(b >= 0 for b in back)
