"""THROWAWAY (reviewer): old vs new evaluate on random carts/catalogs. Delete after use."""
from __future__ import annotations
import importlib.util, sys
from datetime import UTC, datetime, timedelta
from typing import Any
import msgspec
from hypothesis import given, settings, HealthCheck
from hypothesis import strategies as st
import engine.promotions.evaluate as new
from engine.promotions.model import Group, parse_promotion
from tests.engine.test_promotions_properties import lines_st, benefit_st, selector_st, MODES, bp_st

spec = importlib.util.spec_from_file_location("old_evaluate_review", "/tmp/old_evaluate_review.py")
old = importlib.util.module_from_spec(spec); sys.modules["old_evaluate_review"] = old; spec.loader.exec_module(old)

@st.composite
def case(draw):
    names = ["default", "g1", "g2"]
    groups = {n: Group(mode=draw(st.sampled_from(MODES)), priority=draw(st.integers(0, 3)),
                       max_discount_bp=draw(st.one_of(st.none(), bp_st))) for n in names}
    datas = []
    for seq, benefit in enumerate(draw(st.lists(benefit_st, min_size=1, max_size=6))):
        d: dict[str, Any] = {"id": f"p{seq}", "title": {"en": f"t{seq}", "ru": f"т{seq}"}, "benefit": benefit,
                             "group": draw(st.sampled_from(names)), "priority": draw(st.integers(0, 3))}
        if draw(st.booleans()):
            lim: dict[str, Any] = {}
            if draw(st.booleans()):
                lim["per_order"] = 1 if benefit["type"] in ("cart_amount_off", "points_fixed") else draw(st.integers(1, 3))
            if draw(st.booleans()):
                lim["per_customer"] = {"count": draw(st.integers(1, 3))}
            if draw(st.booleans()):
                lim["budget"] = {"discount": draw(st.integers(0, 5000)), "count": draw(st.integers(0, 3))}
            d["limits"] = lim
        if draw(st.booleans()):
            c: dict[str, Any] = {"min_subtotal": draw(st.integers(0, 20000))}
            if draw(st.booleans()): c["min_qty"] = draw(st.integers(1, 6))
            if draw(st.booleans()): c["lines"] = draw(selector_st)
            d["condition"] = c
        if draw(st.booleans()):
            d["audience"] = draw(st.sampled_from([{"tiers": ["gold"]}, {"tiers": ["standart"]}, {"personal": True},
                                                  {"segments": ["s1"]}, {"exclude_segments": ["s1"]}, {"segments": []}]))
        if draw(st.booleans()):
            d["when"] = draw(st.sampled_from([{"weekdays": [1]}, {"weekdays": [2, 3]}, {"hours": {"from": "08:00", "to": "10:00"}},
                                              {"hours": {"from": "22:00", "to": "02:00"}}]))
        if draw(st.booleans()):
            d["where"] = draw(st.sampled_from([{"stores": ["s1"]}, {"channels": ["online"]}]))
        if draw(st.booleans()):
            d["messages"] = {"near_miss": {"en": "near", "ru": "почти"}, "applied": {"en": "yes", "ru": "да"}}
        datas.append(d)
    used = {f"p{i}": (draw(st.integers(0, 3)), draw(st.integers(0, 3)), draw(st.integers(0, 6000)), 0)
            for i in range(len(datas)) if draw(st.booleans())}
    facts = dict(at=datetime(2026, 3, 2, 6, tzinfo=UTC) + timedelta(hours=draw(st.integers(0, 48))),
                 tier=draw(st.sampled_from(["standart", "gold"])), rate_bp=500,
                 store=draw(st.sampled_from([None, "s1", "s2"])), channel=draw(st.sampled_from(["pos", "online"])),
                 offers=frozenset(draw(st.sampled_from([[], ["p0"], ["p1", "p2"]]))),
                 segments=frozenset(draw(st.sampled_from([[], ["s1"], ["s2"]]))), language=draw(st.sampled_from(["en", "ru"])))
    pts = (draw(st.integers(0, 100_000)), draw(st.integers(0, 100_000)))
    return groups, datas, used, facts, pts, draw(st.booleans())

def run(mod, lines, groups, datas, used, facts, pts, explain):
    cat = mod.Catalog([mod.Active(parse_promotion(d), revision=1, seq=i) for i, d in enumerate(datas)], groups)
    u = {k: mod.Used(*v) for k, v in used.items()}
    out = mod.evaluate(lines, mod.Facts(**facts), cat, u, available_points=pts[0], requested_points=pts[1], explain=explain)
    return msgspec.to_builtins(out)

@settings(max_examples=4000, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines_st, case())
def test_same(lines, c):
    groups, datas, used, facts, pts, explain = c
    a = run(old, lines, groups, datas, used, facts, pts, explain)
    b = run(new, lines, groups, datas, used, facts, pts, explain)
    assert a == b
