"""The program file's old ``[[promotions]]`` become stored promotions of the new model."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime

import msgspec
import pytest

from engine.promotions.evaluate import Active, Catalog, evaluate
from engine.promotions.legacy import DEFAULT_PROMOTIONS, read_legacy
from engine.promotions.model import Bundle, NForM, Selector, parse_promotion
from engine.promotions.shapes import Facts
from wallet.pricing import CartLine

OLD_FILE = """
redeem_cap_bp = 7000

[[promotions]]
kind = "bundle_percent"
id = "pastry-with-coffee"
title_ru = "−30% на выпечку к кофе"
title_en = "-30% on pastry with coffee"
trigger_category = "coffee"
target_category = "pastry"
percent_bp = 3000

[[promotions]]
kind = "n_for_m"
id = "three_for.two"
title_ru = "1+1=3"
title_en = "Buy 2, get the 3rd free"
category = "promo-3for2"
n = 3
m = 2
stores = ["minsk-1", "minsk-2"]
starts_at = 2026-12-01T00:00:00+03:00
ends_at = 2027-01-01T00:00:00+03:00
"""


def test_old_entries_convert_to_the_new_model() -> None:
    bundle, three = read_legacy(tomllib.loads(OLD_FILE))
    assert bundle.id == "pastry-with-coffee"
    assert bundle.benefit == Bundle(Selector(categories=("coffee",)), Selector(categories=("pastry",)), 3000)
    assert three.id == "three-for-two"
    assert three.title == {"ru": "1+1=3", "en": "Buy 2, get the 3rd free"}
    assert three.benefit == NForM(lines=Selector(categories=("promo-3for2",)), n=3, m=2)
    assert three.where.stores == ("minsk-1", "minsk-2")
    assert three.when.starts_at == datetime(2026, 11, 30, 21, tzinfo=UTC)
    assert (three.group, three.priority) == ("default", 100)
    # what the admin API would accept, unchanged
    assert parse_promotion(msgspec.json.encode(three)) == three


def test_bad_old_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="m must be less than n"):
        read_legacy({"promotions": [{"kind": "n_for_m", "id": "x", "title_ru": "x", "title_en": "x", "n": 2, "m": 2}]})
    with pytest.raises(msgspec.ValidationError, match="promotions"):
        read_legacy({"promotions": [{"kind": "free_lunch", "id": "x"}]})
    assert read_legacy({}) == []


def test_converted_promotions_price_as_before() -> None:
    catalog = Catalog(Active(p, 1, i) for i, p in enumerate(DEFAULT_PROMOTIONS))
    facts = Facts(at=datetime(2026, 3, 2, tzinfo=UTC), tier="standart", rate_bp=500)
    lines = [
        CartLine(sku="latte", qty=1, unit_price=500, category="coffee"),
        CartLine(sku="bun", qty=1, unit_price=300, category="pastry"),
        CartLine(sku="tea", qty=3, unit_price=200, category="promo-3for2"),
    ]
    outcome = evaluate(lines, facts, catalog)
    assert [line.discount for line in outcome.lines] == [56, 34, 200]
