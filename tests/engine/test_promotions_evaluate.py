"""The evaluation core, benefit by benefit with answers worked by hand, and arbitration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine.promotions.evaluate import Active, Catalog, evaluate
from engine.promotions.model import Group, parse_promotion
from engine.promotions.shapes import Facts, NotApplied, Outcome, Used
from wallet.pricing import CartLine

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 12:00 in Minsk
FACTS = Facts(at=AT, tier="standart", rate_bp=500, customer_id="c1", store="minsk-1", language="en")


def promo(pid: str, benefit: dict[str, Any], seq: int = 0, **rest: Any) -> Active:
    data = {"id": pid, "title": {"en": pid.title()}, "benefit": benefit, **rest}
    return Active(parse_promotion(data), revision=1, seq=seq)


def line(sku: str, qty: int, price: int, category: str | None = None, **rest: Any) -> CartLine:
    return CartLine(sku=sku, qty=qty, unit_price=price, category=category, **rest)


def run(
    lines: list[CartLine],
    *promotions: Active,
    groups: dict[str, Group] | None = None,
    facts: Facts = FACTS,
    used: dict[str, Used] | None = None,
    available_points: int = 0,
    requested_points: int = 0,
) -> Outcome:
    catalog = Catalog(promotions, groups, zone=ZoneInfo("Europe/Minsk"))
    return evaluate(lines, facts, catalog, used, available_points=available_points, requested_points=requested_points)


def discounts(outcome: Outcome) -> list[int]:
    return [p.discount for p in outcome.lines]


COFFEE = {"categories": ["coffee"]}
PASTRY = {"categories": ["pastry"]}


def test_one_plus_one_is_three() -> None:
    three_for_two = promo("three-for-two", {"type": "n_for_m", "lines": {"categories": ["tea"]}, "n": 3, "m": 2})
    outcome = run([line("a", 2, 300, "tea"), line("b", 1, 150, "tea"), line("c", 1, 999, "milk")], three_for_two)
    # dearest first: 300, 300, 150 form one set, the 150 is free, spread 300:300:150 over the set
    assert outcome.discount == 150
    assert discounts(outcome) == [120, 30, 0]
    assert outcome.lines[0].promotions[0].id == "three-for-two"
    assert outcome.lines[0].promotions[0].revision == 1


def test_half_price_on_every_third() -> None:
    every_third = promo("every-third", {"type": "nth_percent", "lines": {}, "n": 3, "percent_bp": 5000})
    outcome = run([line("a", 4, 1000), line("b", 2, 400)], every_third)
    # sets: (1000, 1000, 1000) → 500 off; (1000, 400, 400) → 200 off
    assert outcome.discount == 700
    assert sum(outcome.lines[0].promotions[0].discount for _ in [0]) + outcome.lines[1].discount == 700


def test_pastry_with_coffee_discounts_one_pastry_per_coffee() -> None:
    bundle = promo("pastry", {"type": "bundle", "trigger": COFFEE, "target": PASTRY, "percent_bp": 3000})
    outcome = run([line("latte", 1, 500, "coffee"), line("croissant", 2, 300, "pastry")], bundle)
    assert outcome.discount == 90  # 30 % of one croissant, spread over coffee and croissant 500:300
    assert discounts(outcome) == [56, 34]
    assert [m.code for m in outcome.messages] == ["promotion:pastry"]  # a second coffee would help


def test_percent_off_with_max_units_takes_the_cheapest_or_dearest() -> None:
    cheap = promo("p", {"type": "percent_off", "lines": {}, "percent_bp": 1000, "max_units": 2})
    dear = promo("p", {"type": "percent_off", "lines": {}, "percent_bp": 1000, "max_units": 2, "pick": "dearest"})
    cart = [line("a", 1, 1000), line("b", 1, 2000), line("c", 1, 3005)]
    assert discounts(run(cart, cheap)) == [100, 200, 0]
    assert discounts(run(cart, dear)) == [0, 200, 301]  # 300.5 rounds half up


def test_amount_off_never_below_zero_and_fixed_price_only_where_dearer() -> None:
    amount = promo("a", {"type": "amount_off", "lines": {}, "amount": 250})
    assert discounts(run([line("a", 2, 1000), line("b", 1, 100)], amount)) == [500, 100]
    fixed = promo("f", {"type": "fixed_price", "lines": {}, "price": 500})
    assert discounts(run([line("a", 2, 1000), line("b", 1, 100)], fixed)) == [1000, 0]


def test_cart_amount_off_spreads_in_proportion_and_skips_sale_lines() -> None:
    off = promo("c", {"type": "cart_amount_off", "amount": 600})
    outcome = run([line("a", 1, 1000), line("b", 1, 2000), line("s", 1, 5000, on_sale=True)], off)
    assert discounts(outcome) == [200, 400, 0]
    assert discounts(run([line("a", 1, 100)], off)) == [100]


def test_points_benefits() -> None:
    cart = [line("a", 1, 10_000, "coffee"), line("b", 1, 5_000, "tea")]
    fixed = promo("f", {"type": "points_fixed", "points": 1000, "expires_in_days": 14})
    outcome = run(cart, fixed)
    assert outcome.awards[0].points == 1000
    assert outcome.awards[0].expires_in_days == 14
    assert [p.promotions[0].points for p in outcome.lines] == [667, 333]
    per = promo("per", {"type": "points_per_amount", "lines": COFFEE, "points": 100, "per": 1000})
    assert run(cart, per).bonus_points == 1000  # 100.00 paid on coffee: 10 × 1 point
    pct = promo("pct", {"type": "points_percent", "lines": {}, "rate_bp": 200})
    assert run(cart, pct).bonus_points == 300
    double = promo("x2", {"type": "points_multiplier", "lines": COFFEE, "factor_bp": 20000})
    outcome = run(cart, double)
    assert outcome.accrue == 750  # the tier's 5 % of 150.00
    assert outcome.bonus_points == 500  # coffee's 5 % once more


def test_points_count_only_money_actually_paid() -> None:
    pct = promo("pct", {"type": "points_percent", "lines": {}, "rate_bp": 1000})
    outcome = run([line("a", 1, 10_000)], pct, available_points=100_000, requested_points=4_000)
    assert outcome.redeem == 4_000
    assert outcome.accrue == 300
    assert outcome.bonus_points == 600


def test_no_redeem_lines_leave_the_cap_base() -> None:
    nr = promo("nr", {"type": "no_redeem", "lines": {"categories": ["tobacco"]}})
    cart = [line("a", 1, 10_000), line("t", 1, 5_000, "tobacco"), line("s", 1, 1_000, on_sale=True)]
    outcome = run(cart, nr, available_points=100_000, requested_points=100_000)
    assert outcome.redeem_base == 10_000
    assert outcome.max_redeem == 7_000
    assert run(cart, available_points=100_000).redeem_base == 15_000


def test_exclusive_group_gives_a_unit_one_discount_first_by_priority() -> None:
    ten = promo("ten", {"type": "percent_off", "lines": {}, "percent_bp": 1000}, seq=1, priority=5)
    half = promo("half", {"type": "percent_off", "lines": {}, "percent_bp": 5000}, seq=0, priority=10)
    assert discounts(run([line("a", 1, 1000)], ten, half)) == [100]


def test_best_group_gives_the_most() -> None:
    groups = {"default": Group(mode="best")}
    ten = promo("ten", {"type": "percent_off", "lines": {}, "percent_bp": 1000}, priority=1)
    half = promo("half", {"type": "percent_off", "lines": {}, "percent_bp": 5000}, priority=2)
    assert discounts(run([line("a", 1, 1000)], ten, half, groups=groups)) == [500]


def test_sum_and_sequential_groups() -> None:
    ten = promo("ten", {"type": "percent_off", "lines": {}, "percent_bp": 1000}, group="g")
    half = promo("half", {"type": "percent_off", "lines": {}, "percent_bp": 5000}, group="g")
    cart = [line("a", 1, 1000)]
    assert discounts(run(cart, ten, half, groups={"g": Group(mode="sum")})) == [600]
    assert discounts(run(cart, ten, half, groups={"g": Group(mode="sequential")})) == [550]
    capped = {"g": Group(mode="sum", max_discount_bp=2500)}
    outcome = run(cart, ten, half, groups=capped)
    assert discounts(outcome) == [250]
    assert sorted(a.discount for a in outcome.lines[0].promotions) == [42, 208]


def test_groups_run_in_priority_order_on_what_the_earlier_left() -> None:
    groups = {"first": Group(priority=1), "then": Group(priority=2)}
    half = promo("half", {"type": "percent_off", "lines": {}, "percent_bp": 5000}, group="then")
    minus = promo("minus", {"type": "amount_off", "lines": {}, "amount": 200}, group="first")
    assert discounts(run([line("a", 1, 1000)], half, minus, groups=groups)) == [600]  # 200, then half of 800


def test_audience_where_when_condition_and_limits_say_why_not() -> None:
    gold = promo("gold", {"type": "cart_amount_off", "amount": 1}, audience={"tiers": ["gold"]})
    personal = promo("personal", {"type": "cart_amount_off", "amount": 1}, audience={"personal": True})
    segment = promo("segment", {"type": "cart_amount_off", "amount": 1}, audience={"segments": ["vip"]})
    elsewhere = promo("elsewhere", {"type": "cart_amount_off", "amount": 1}, where={"stores": ["brest"]})
    online = promo("online", {"type": "cart_amount_off", "amount": 1}, where={"channels": ["online"]})
    mornings = promo(
        "mornings", {"type": "cart_amount_off", "amount": 1}, when={"hours": {"from": "07:00", "to": "11:00"}}
    )
    weekend = promo("weekend", {"type": "cart_amount_off", "amount": 1}, when={"weekdays": [6, 7]})
    later = promo("later", {"type": "cart_amount_off", "amount": 1}, when={"starts_at": "2026-04-01T00:00:00Z"})
    big = promo("big", {"type": "cart_amount_off", "amount": 1}, condition={"min_subtotal": 5000})
    once = promo("once", {"type": "cart_amount_off", "amount": 1}, limits={"per_customer": {"count": 1}})
    spent = promo("spent", {"type": "cart_amount_off", "amount": 1}, limits={"budget": {"count": 5}})
    tea = promo("tea", {"type": "percent_off", "lines": {"categories": ["tea"]}, "percent_bp": 1})
    everything = [gold, personal, segment, elsewhere, online, mornings, weekend, later, big, once, spent]
    used = {"once": Used(customer=1), "spent": Used(orders=5)}
    outcome = run([line("a", 1, 4000)], *everything, tea, used=used)
    assert outcome.discount == 0
    assert set(outcome.not_applied) == {
        NotApplied("gold", "audience"),
        NotApplied("personal", "audience"),
        NotApplied("segment", "audience"),
        NotApplied("elsewhere", "where"),
        NotApplied("online", "where"),
        NotApplied("mornings", "when"),
        NotApplied("weekend", "when"),
        NotApplied("later", "when"),
        NotApplied("big", "condition"),
        NotApplied("once", "limit"),
        NotApplied("spent", "limit"),
    }  # tea is not even consulted: nothing in the cart could trigger it
    assert [m.text for m in outcome.messages] == ["Add 10 BYN more and «Big» applies"]
    facts = Facts(
        at=AT,
        tier="gold",
        rate_bp=1000,
        store="brest",
        channel="online",
        offers=frozenset({"personal"}),
        segments=frozenset({"vip"}),
    )
    assert run([line("a", 1, 4000)], gold, personal, segment, elsewhere, online, facts=facts).not_applied == ()


def test_budget_discount_caps_what_is_left() -> None:
    budget = promo("b", {"type": "percent_off", "lines": {}, "percent_bp": 5000}, limits={"budget": {"discount": 1000}})
    outcome = run([line("a", 2, 1000)], budget, used={"b": Used(discount=700)})
    assert outcome.discount == 300


def test_per_order_limits_the_applications() -> None:
    sets = promo("s", {"type": "n_for_m", "lines": {}, "n": 2, "m": 1}, limits={"per_order": 1})
    assert run([line("a", 4, 100)], sets).discount == 100
    units = promo("u", {"type": "amount_off", "lines": {}, "amount": 50}, limits={"per_order": 3})
    assert run([line("a", 5, 100)], units).discount == 150


def test_applied_and_near_miss_messages_in_the_shoppers_language() -> None:
    three = promo(
        "three",
        {"type": "n_for_m", "lines": {}, "n": 3, "m": 2},
        messages={"near_miss": {"ru": "Ещё один — бесплатно", "en": "One more is free"}, "applied": {"en": "3 for 2!"}},
    )
    outcome = run([line("a", 2, 100)], three)
    assert [m.text for m in outcome.messages] == ["One more is free"]
    outcome = run([line("a", 3, 100)], three)
    assert [m.text for m in outcome.messages] == ["3 for 2!"]
