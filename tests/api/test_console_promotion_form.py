"""The promotion editor's form without a browser: every benefit type of the contract survives the way
from a stored promotion into the form and back, numbers and dates are read as people type them, and the
domain's refusals land on the input they are about."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from api.console.promotion_form import (
    BENEFIT_FIELDS,
    BENEFIT_TYPES,
    FormErrors,
    form_of,
    input_of,
    promotion_of,
    read,
)
from engine.promotions.model import parse_promotion
from engine.promotions.store import diff

ZONE = ZoneInfo("Europe/Minsk")
MILK = {"skus": ["milk", "kefir"], "categories": ["dairy"]}
BENEFITS: dict[str, dict[str, Any]] = {
    "percent_off": {"lines": MILK, "percent_bp": 1250, "max_units": 2, "pick": "dearest"},
    "amount_off": {"lines": {"brands": ["savushkin"]}, "amount": 50},
    "fixed_price": {"lines": MILK, "price": 199},
    "cart_amount_off": {"amount": 500},
    "n_for_m": {"lines": MILK, "n": 3, "m": 2},
    "nth_percent": {"lines": {}, "n": 3, "percent_bp": 5000},
    "bundle": {"trigger": {"categories": ["coffee"]}, "target": {"categories": ["pastry"]}, "percent_bp": 3000},
    "points_fixed": {"points": 5000, "expires_in_days": 7},
    "points_per_amount": {"lines": MILK, "points": 100, "per": 1000, "expires_in_days": 30},
    "points_percent": {"lines": MILK, "rate_bp": 500},
    "points_multiplier": {"lines": MILK, "factor_bp": 15000},
    "no_redeem": {"lines": {"categories": ["tobacco"]}},
}
EVERYTHING: dict[str, Any] = {
    "id": "all-of-it",
    "title": {"ru": "Всё сразу", "en": "All of it"},
    "audience": {"tiers": ["gold", "platinum"], "personal": True, "segments": ["new"], "exclude_segments": ["vip"]},
    "where": {"stores": ["minsk-1", "minsk-2"], "channels": ["pos", "app"]},
    "when": {
        "starts_at": "2026-03-02T07:00:00+03:00",
        "ends_at": "2026-04-01T00:00:00+03:00",
        "weekdays": [1, 2, 3, 4, 5],
        "hours": {"from": "07:00", "to": "24:00"},
    },
    "condition": {"min_subtotal": 2000, "min_qty": 2, "lines": {"categories": ["coffee"]}},
    "group": "weekday",
    "priority": 20,
    "limits": {"per_customer": {"count": 1, "days": 7}, "per_order": 2, "budget": {"discount": 5_000_000, "count": 10}},
    "messages": {"near_miss": {"ru": "Ещё один!", "en": "One more!"}, "applied": {"en": "Done"}},
}


def _t(key: str) -> str:
    return f"<{key}>"


def test_the_editor_covers_every_benefit_type_of_the_contract() -> None:
    assert set(BENEFIT_TYPES) == set(BENEFITS) == set(BENEFIT_FIELDS)


@pytest.mark.parametrize("kind", BENEFIT_TYPES)
def test_every_benefit_type_goes_into_the_form_and_back_unchanged(kind: str) -> None:
    extra = EVERYTHING if kind == "percent_off" else {"title": {"en": kind}}
    if kind in ("cart_amount_off", "points_fixed"):
        extra = EVERYTHING | {"limits": {"per_order": 1}}
    stored = parse_promotion({**extra, "benefit": {"type": kind, **BENEFITS[kind]}})
    form = form_of(stored, ZONE)
    assert form["benefit.type"] == kind
    assert promotion_of(form, ZONE, _t) == stored


def test_numbers_and_times_are_read_as_people_type_them() -> None:
    form = read(
        {
            "title.ru": "Молоко",
            "benefit.type": "percent_off",
            "benefit.percent_bp": "12,5",
            "benefit.lines.skus": "milk, kefir,",
            "benefit.amount": "not read: amount_off is not the type chosen",
            "benefit.factor_bp": "nor this",
            "when.starts_at": "2026-03-02T09:00",
            "condition.min_subtotal": "1 000,50",
            "limits.budget.points": "12.5",
        }
    )
    form["when.weekdays"] = ["6", "7"]
    assert msgspec.json.decode(msgspec.json.encode(promotion_of(form, ZONE, _t))) == {
        "title": {"ru": "Молоко"},
        "benefit": {"type": "percent_off", "lines": {"skus": ["milk", "kefir"]}, "percent_bp": 1250},
        "when": {"starts_at": "2026-03-02T09:00:00+03:00", "weekdays": [6, 7]},
        "condition": {"min_subtotal": 100050},
        "limits": {"budget": {"points": 1250}},
    }


@pytest.mark.parametrize(
    ("typed", "errors"),
    [
        ({"benefit.percent_bp": "thirty"}, {"benefit.percent_bp": "<pf.bad.percent>"}),
        ({"benefit.percent_bp": "12,345"}, {"benefit.percent_bp": "<pf.bad.percent>"}),
        (
            {"benefit.max_units": "2.5", "when.ends_at": "soon"},
            {"benefit.max_units": "<pf.bad.int>", "when.ends_at": "<pf.bad.datetime>"},
        ),
    ],
)
def test_what_is_no_number_or_date_is_named_before_the_domain_is_asked(
    typed: dict[str, str], errors: dict[str, str]
) -> None:
    form = read({"title.en": "Milk", "benefit.type": "percent_off", "benefit.percent_bp": "10"} | typed)
    with pytest.raises(FormErrors) as caught:
        promotion_of(form, ZONE, _t)
    assert caught.value.errors == errors


@pytest.mark.parametrize(
    ("typed", "field", "says"),
    [
        ({"benefit.type": "n_for_m", "benefit.n": "2", "benefit.m": "2"}, "benefit.m", "must be less than n"),
        ({"benefit.type": "percent_off", "benefit.percent_bp": "120"}, "benefit.percent_bp", "<= 10000"),
        ({"benefit.type": "percent_off", "benefit.percent_bp": "10", "title.en": ""}, "title.ru", "title"),
        (
            {"benefit.type": "percent_off", "benefit.percent_bp": "10", "limits.per_customer.days": "7"},
            "limits.per_customer.count",
            "count",
        ),
        ({"benefit.type": "bundle", "benefit.percent_bp": "30"}, "benefit.target.skus", "must differ from trigger"),
        (
            {
                "benefit.type": "percent_off",
                "benefit.percent_bp": "10",
                "when.hours.from": "7am",
                "when.hours.to": "11:00",
            },
            "when.hours.from",
            "matching regex",
        ),
        ({"benefit.type": "percent_off", "benefit.percent_bp": "10", "id": "Not An Id"}, "id", "matching regex"),
        (
            {"benefit.type": "percent_off", "benefit.percent_bp": "10", "when.starts_at": "9999-12-31T23:59"},
            "when.starts_at",
            "must be between 1900 and 2200",
        ),
        (
            {"benefit.type": "percent_off", "benefit.percent_bp": "10", "when.ends_at": "1899-12-31T23:59"},
            "when.ends_at",
            "must be between 1900 and 2200",
        ),
    ],
)
def test_the_domains_refusal_lands_on_the_input_it_is_about(typed: dict[str, str], field: str, says: str) -> None:
    form = read({"title.en": "Milk"} | typed)
    with pytest.raises(FormErrors) as caught:
        promotion_of(form, ZONE, _t)
    assert list(caught.value.errors) == [field]
    assert says in caught.value.errors[field]


def test_a_field_the_editor_has_no_input_for_is_said_above_the_form() -> None:
    assert input_of("benefit.lines.skus.3") == "benefit.lines.skus"
    assert input_of("limits.per_customer") == "limits.per_customer.count"
    assert input_of("body") == ""
    assert input_of(None) == ""


def test_the_history_names_only_what_changed() -> None:
    """An edit's diff compares the stored JSON (lists) with the new object (a struct's tuples)."""
    stored = parse_promotion({"title": {"en": "Milk"}, "benefit": {"type": "no_redeem", "lines": {"skus": ["milk"]}}})
    edited = parse_promotion({"title": {"en": "Milk!"}, "benefit": {"type": "no_redeem", "lines": {"skus": ["milk"]}}})
    before = msgspec.json.decode(msgspec.json.encode(stored))
    assert [(c.field, c.old, c.new) for c in diff(before, msgspec.to_builtins(edited))] == [
        ("title.en", "Milk", "Milk!")
    ]
