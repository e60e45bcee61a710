"""The promotion object: the spec's JSON round-trips, and every bad object names the field at fault."""

from __future__ import annotations

import msgspec
import pytest

from engine.promotions.model import (
    Bundle,
    Group,
    InvalidPromotion,
    Promotion,
    Selector,
    parse_group,
    parse_promotion,
    text_in,
)

SPEC_EXAMPLE = b"""{
  "id": "pastry-with-coffee",
  "title": {"ru": "\xe2\x88\x9230% \xd0\xbd\xd0\xb0 \xd0\xb2\xd1\x8b\xd0\xbf\xd0\xb5\xd1\x87\xd0\xba\xd1\x83",
            "en": "-30% on pastry with coffee"},
  "audience": {"tiers": ["gold", "platinum"], "personal": false},
  "where": {"stores": ["minsk-1"], "channels": ["pos", "online", "app"]},
  "when": {"starts_at": "2025-03-01T00:00:00+03:00", "ends_at": "2025-04-01T00:00:00+03:00",
           "weekdays": [1, 2, 3, 4, 5], "hours": {"from": "07:00", "to": "11:00"}},
  "condition": {"min_subtotal": 2000, "min_qty": 1, "lines": {"categories": ["coffee"]}},
  "benefit": {"type": "bundle", "trigger": {"categories": ["coffee"]}, "target": {"categories": ["pastry"]},
              "percent_bp": 3000},
  "group": "default",
  "priority": 100,
  "limits": {"per_customer": {"count": 1, "days": 7}, "per_order": 2,
             "budget": {"discount": 5000000, "points": 0, "count": 0}},
  "messages": {"near_miss": {"ru": "\xd0\x95\xd1\x89\xd1\x91", "en": "One more"}, "applied": {"en": "Applied"}}
}"""


def test_the_spec_example_parses_and_round_trips() -> None:
    promotion = parse_promotion(SPEC_EXAMPLE)
    assert isinstance(promotion.benefit, Bundle)
    assert promotion.benefit.target == Selector(categories=("pastry",))
    assert promotion.when.hours is not None
    assert promotion.when.hours.minutes == (420, 660)
    assert parse_promotion(msgspec.json.encode(promotion)) == promotion
    assert promotion.title_in("de") == "-30% on pastry with coffee"


def test_an_empty_promotion_object_takes_the_defaults() -> None:
    promotion = parse_promotion({"title": {"en": "x"}, "benefit": {"type": "points_fixed", "points": 100}})
    assert (promotion.group, promotion.priority, promotion.audience.tiers) == ("default", 100, ())
    assert msgspec.json.encode(promotion) == b'{"title":{"en":"x"},"benefit":{"type":"points_fixed","points":100}}'


def test_every_benefit_type_parses() -> None:
    lines = {"categories": ["c"]}
    benefits = [
        {"type": "percent_off", "lines": lines, "percent_bp": 1000, "max_units": 2, "pick": "dearest"},
        {"type": "amount_off", "lines": lines, "amount": 100},
        {"type": "fixed_price", "lines": lines, "price": 0},
        {"type": "cart_amount_off", "amount": 500},
        {"type": "n_for_m", "lines": lines, "n": 3, "m": 2},
        {"type": "nth_percent", "lines": lines, "n": 3, "percent_bp": 5000},
        {"type": "bundle", "trigger": {"skus": ["a"]}, "target": {"brands": ["b"]}, "percent_bp": 3000},
        {"type": "points_fixed", "points": 5000, "expires_in_days": 14},
        {"type": "points_per_amount", "lines": {}, "points": 100, "per": 1000},
        {"type": "points_percent", "lines": lines, "rate_bp": 500, "expires_in_days": 7},
        {"type": "points_multiplier", "lines": lines, "factor_bp": 20000},
        {"type": "no_redeem", "lines": lines},
    ]
    for benefit in benefits:
        promotion = parse_promotion({"title": {"en": "x"}, "benefit": benefit})
        assert msgspec.json.decode(msgspec.json.encode(promotion.benefit)) == benefit


BASE: dict[str, object] = {"title": {"en": "x"}, "benefit": {"type": "cart_amount_off", "amount": 100}}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"benefit": {"type": "n_for_m", "lines": {}, "n": 2, "m": 2}}, "benefit.m"),
        ({"benefit": {"type": "n_for_m", "lines": {}, "n": 3}}, "benefit.m"),
        ({"benefit": {"type": "percent_off", "lines": {}, "percent_bp": 10001}}, "benefit.percent_bp"),
        ({"benefit": {"type": "bundle", "trigger": {}, "target": {}, "percent_bp": 1}}, "benefit.target"),
        ({"benefit": {"type": "free_lunch"}}, "benefit.type"),
        ({"benefit": {"type": "amount_off", "lines": {"colour": ["red"]}, "amount": 1}}, "benefit.lines.colour"),
        ({"benefit": {"type": "points_multiplier", "lines": {}, "factor_bp": 10000}}, "benefit.factor_bp"),
        ({"id": "Not_Valid"}, "id"),
        ({"colour": "red"}, "colour"),
        ({"title": {}}, "title"),
        ({"when": {"hours": {"from": "7:00", "to": "11:00"}}}, "when.hours.from"),
        ({"when": {"hours": {"from": "07:00", "to": "07:00"}}}, "when.hours.to"),
        ({"when": {"hours": {"from": "07:00"}}}, "when.hours.to"),
        ({"when": {"weekdays": [0]}}, "when.weekdays.0"),
        ({"when": {"weekdays": [1, 1]}}, "when.weekdays"),
        ({"when": {"starts_at": "2025-02-01T00:00:00Z", "ends_at": "2025-01-01T00:00:00Z"}}, "when.ends_at"),
        ({"when": {"starts_at": "2025-02-01T00:00:00"}}, "when.starts_at"),
        ({"where": {"channels": ["fax"]}}, "where.channels.0"),
        ({"audience": {"segments": ["a"], "exclude_segments": ["a"]}}, "audience.exclude_segments"),
        ({"audience": {"segments": []}}, "audience.segments"),
        ({"limits": {"per_order": 2}}, "limits.per_order"),
        ({"limits": {"per_customer": {"days": 7}}}, "limits.per_customer.count"),
        ({"limits": {"budget": {"discount": -1}}}, "limits.budget.discount"),
        ({"condition": {"min_qty": 0}}, "condition.min_qty"),
        ({"priority": -1}, "priority"),
        ({"group": "Default"}, "group"),
    ],
)
def test_a_bad_object_names_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidPromotion) as caught:
        parse_promotion({**BASE, **change})
    assert caught.value.field == field, caught.value.message
    with pytest.raises(InvalidPromotion) as again:
        parse_promotion(msgspec.json.encode({**BASE, **change}))
    assert again.value.field == field


def test_groups_default_to_exclusive_at_priority_100() -> None:
    assert parse_group({}) == Group(mode="exclusive", priority=100, max_discount_bp=None)
    assert parse_group(b'{"mode": "sum", "priority": 10, "max_discount_bp": 5000}').mode == "sum"
    with pytest.raises(InvalidPromotion) as caught:
        parse_group({"mode": "random"})
    assert caught.value.field == "mode"


def test_texts_fall_back_to_english_then_anything() -> None:
    assert text_in({"ru": "а", "en": "b"}, "ru") == "а"
    assert text_in({"ru": "а", "en": "b"}, "be") == "b"
    assert text_in({"ru": "а"}, "en") == "а"
    assert text_in(None, "en") is None
    assert Promotion(title={"ru": "а"}, benefit=Bundle(Selector(skus=("a",)), Selector(skus=("b",)), 1)).id is None
