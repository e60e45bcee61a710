"""The compiled pricing core (``engine.promotions.native``) answers exactly as the plain module does, and
is used only while it is the build of the sources as they are."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.promotions import cart, catalog_of
from engine.promotions import evaluate as core
from engine.promotions.model import Group, parse_promotion
from engine.promotions.native import FORMAT, SOURCE, built_files, compiled, current, native_path, sources, stamp
from engine.promotions.shapes import Facts, Used
from tests.engine.test_promotions_properties import MODES, benefit_st, bp_st, lines_st
from wallet.pricing import CartLine
from wallet.program import DEFAULT_PROGRAM

needs_build = pytest.mark.skipif(
    not compiled(), reason="the core runs as plain Python here (no current build): nothing to compare it with"
)


def _plain() -> ModuleType:
    """``evaluate.py`` as plain Python, whichever build ``engine.promotions.evaluate`` is."""
    name = "kartka_plain_evaluate"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SOURCE)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    return sys.modules[name]


PLAIN = _plain()


def _twin(catalog: core.Catalog) -> Any:
    """The same catalog built by the plain module."""
    return PLAIN.Catalog(
        [PLAIN.Active(a.promotion, a.revision, a.seq) for a in catalog.promotions], catalog.groups, zone=catalog.zone
    )


def _same(lines: list[CartLine], facts: Facts, catalog: core.Catalog, twin: Any, **kwargs: Any) -> None:
    ours = core.evaluate(lines, facts, catalog, **kwargs)
    plain = PLAIN.evaluate(lines, facts, twin, **kwargs)
    assert msgspec.json.encode(ours) == msgspec.json.encode(plain)
    assert [a.id for a in catalog.candidates(lines)] == [a.id for a in twin.candidates(lines)]
    limited, personal = catalog.state_needed(lines)
    assert ([a.id for a in limited], personal) == (
        [a.id for a in twin.state_needed(lines)[0]],
        twin.state_needed(lines)[1],
    )


def test_ci_prices_with_the_compiled_core() -> None:
    """CI builds the core (``engine.build_native --required``): what it tests is what the image runs."""
    if not os.environ.get("CI"):
        pytest.skip("outside CI the core may run as plain Python (no compiler)")
    assert compiled(), "CI runs the plain pricing core: engine/promotions/_native is missing or stale"


@needs_build
def test_the_benchmark_catalog_prices_alike_at_every_hour_with_and_without_reasons() -> None:
    assert str(PLAIN.__file__).endswith(".py")
    assert not str(core.__file__).endswith(".py")
    catalog = catalog_of(500, limited=True)
    twin = _twin(catalog)
    rng = random.Random(11)
    used = {"limited-0": Used(orders=3, discount=10**11 - 50), "limited-1": Used(customer=1_000_000)}
    start = datetime(2026, 12, 2, 3, tzinfo=UTC)  # through the morning hours' promotions and out of them
    for n in range(240):
        facts = Facts(
            at=start + timedelta(minutes=7 * n),
            tier=rng.choice(["standart", "gold"]),
            rate_bp=500,
            language=rng.choice(["ru", "en"]),
        )
        lines = list(cart(rng))
        for explain in (False, True):
            _same(
                lines,
                facts,
                catalog,
                twin,
                used=used if n % 2 else None,
                available_points=rng.randrange(20_000),
                requested_points=rng.randrange(20_000),
                explain=explain,
                redeem_cap_bp=DEFAULT_PROGRAM.redeem_cap_bp,
            )
        for language in ("ru", "en"):
            assert catalog.title("p-3", language) == twin.title("p-3", language)


WHO = st.fixed_dictionaries(
    {},
    optional={
        "audience": st.sampled_from(
            [{"tiers": ["gold"]}, {"personal": True}, {"segments": ["s1"]}, {"exclude_segments": ["s2"]}]
        ),
        "where": st.sampled_from([{"stores": ["minsk-1"]}, {"channels": ["online"]}]),
        "when": st.sampled_from(
            [
                {"weekdays": [1, 2]},
                {"hours": {"from": "08:00", "to": "11:00"}},
                {"hours": {"from": "22:00", "to": "02:00"}},
            ]
        ),
        "condition": st.sampled_from([{"min_subtotal": 3000}, {"min_qty": 3, "lines": {"categories": ["coffee"]}}]),
        "limits": st.sampled_from(
            [{"per_customer": {"count": 1}}, {"budget": {"discount": 500}}, {"budget": {"points": 300, "count": 2}}]
        ),
    },
)


@st.composite
def rich_catalogs(draw: st.DrawFn) -> core.Catalog:
    """Catalogs whose promotions have audiences, places, hours, conditions and limits too."""
    groups = {
        name: Group(mode=draw(st.sampled_from(MODES)), priority=draw(st.integers(0, 3)), max_discount_bp=draw(bp_st))
        for name in ("default", "g1")
    }
    promotions = []
    for seq, benefit in enumerate(draw(st.lists(benefit_st, min_size=1, max_size=6))):
        data = {
            "id": f"p{seq}",
            "title": {"en": "t", "ru": "т"},
            "benefit": benefit,
            "group": draw(st.sampled_from(list(groups))),
            "priority": draw(st.integers(0, 3)),
            **draw(WHO),
        }
        promotions.append(core.Active(parse_promotion(data), revision=1, seq=seq))
    return core.Catalog(promotions, groups, zone=DEFAULT_PROGRAM.zone)


facts_st = st.builds(
    Facts,
    at=st.datetimes(datetime(2026, 3, 2), datetime(2026, 3, 9), timezones=st.just(UTC)),
    tier=st.sampled_from(["standart", "gold"]),
    rate_bp=st.integers(0, 1000),
    customer_id=st.just("c1"),
    store=st.sampled_from([None, "minsk-1", "brest-2"]),
    channel=st.sampled_from(["pos", "online", "app"]),
    offers=st.frozensets(st.sampled_from(["p0", "p1", "p2"])),
    segments=st.frozensets(st.sampled_from(["s1", "s2"])),
    language=st.sampled_from(["ru", "en"]),
)
used_st = st.dictionaries(
    st.sampled_from(["p0", "p1", "p2", "p3"]),
    st.builds(Used, customer=st.integers(0, 2), orders=st.integers(0, 3), discount=st.integers(0, 600)),
)


@needs_build
@settings(max_examples=200, deadline=None)
@given(lines_st, rich_catalogs(), facts_st, used_st, st.integers(0, 100_000), st.booleans())
def test_random_catalogs_carts_and_shoppers_price_alike(
    lines: list[CartLine], catalog: core.Catalog, facts: Facts, used: dict[str, Used], points: int, explain: bool
) -> None:
    twin = _twin(catalog)
    _same(lines, facts, catalog, twin, used=used, available_points=points, requested_points=points, explain=explain)


def _tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A source tree whose core imports wallet.money, which imports kartka.bounds; a built folder."""
    root = tmp_path / "tree"
    for folder in ("engine/promotions", "wallet", "kartka"):
        (root / folder).mkdir(parents=True)
    source = root / "engine" / "promotions" / "evaluate.py"
    source.write_text("import json\n\nfrom wallet.money import BP\n")
    (root / "wallet" / "money.py").write_text("from kartka.bounds import LIMIT\n\nBP = 10_000\n")
    (root / "kartka" / "bounds.py").write_text("LIMIT = 1\n")
    built = tmp_path / "_native"
    built.mkdir()
    return root, source, built


def _stamp_it(built: Path, source: Path, root: Path, **changes: Any) -> None:
    for name in built_files():
        (built / name).write_bytes(b"")
    made = {"format": FORMAT, "sources": sources(source, root), "files": built_files(), "made_by": ["mypy", "2"]}
    stamp(built).write_text(json.dumps(made | changes))


def test_a_build_is_used_only_while_every_source_it_was_made_from_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, source, built = _tree(tmp_path)
    assert not current(built, source, root)  # no build
    _stamp_it(built, source, root)
    # Every module the core imports, directly or through another (json is not ours).
    assert set(sources(source, root)) == {"engine/promotions/evaluate.py", "wallet/money.py", "kartka/bounds.py"}
    assert current(built, source, root)
    assert native_path(["src"], built, source, root) == [str(built), "src"]
    monkeypatch.setenv("KARTKA_PURE_PYTHON_ENGINE", "1")
    assert native_path(["src"], built, source, root) == ["src"]  # asked for plain Python
    monkeypatch.delenv("KARTKA_PURE_PYTHON_ENGINE")
    bounds = root / "kartka" / "bounds.py"
    bounds.write_text("LIMIT = 2\n")  # a module the core reads types through changed: the build is not it
    assert not current(built, source, root)
    assert native_path(["src"], built, source, root) == ["src"]
    bounds.write_text("LIMIT = 1\n")
    assert current(built, source, root)
    (built / built_files()[1]).unlink()  # half a build
    assert not current(built, source, root)


@pytest.mark.parametrize(
    "changes",
    [
        {"format": 1},  # a stamp that hashed fewer sources
        {"files": [1]},
        {"files": []},
        {"sources": {"engine/promotions/evaluate.py\u0000": "x"}},
        {"sources": {"../outside.py": "x", "engine/promotions/evaluate.py": "x"}},
        {"sources": {"/dev/zero": "x", "engine/promotions/evaluate.py": "x"}},
        {"sources": {"\ud800": "x"}},
        {"sources": ["engine/promotions/evaluate.py"]},
    ],
)
def test_a_stamp_in_any_state_means_plain_python_never_an_error(tmp_path: Path, changes: dict[str, Any]) -> None:
    """The check runs when engine.promotions is imported: whatever the stamp holds, the app starts."""
    root, source, built = _tree(tmp_path)
    _stamp_it(built, source, root, **changes)
    assert not current(built, source, root)
    stamp(built).write_text("[" * 100_000)  # deeper than the JSON parser goes
    assert not current(built, source, root)
