"""The compiled pricing core (``engine.promotions.native``) answers exactly as the plain module does, and
is used only while it is the build of the source beside it."""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.promotions import cart, catalog_of
from engine.promotions import evaluate as core
from engine.promotions.native import SOURCE, compiled, current, native_path, source_digest, stamp
from engine.promotions.shapes import Facts, Used
from tests.engine.test_promotions_properties import catalogs, lines_st
from wallet.pricing import CartLine
from wallet.program import DEFAULT_PROGRAM


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


def _twin(catalog: core.Catalog) -> object:
    """The same catalog built by the plain module."""
    return PLAIN.Catalog(
        [PLAIN.Active(a.promotion, a.revision, a.seq) for a in catalog.promotions], catalog.groups, zone=catalog.zone
    )


def _same(lines: list[CartLine], facts: Facts, catalog: core.Catalog, twin: object, **kwargs: object) -> None:
    ours = core.evaluate(lines, facts, catalog, **kwargs)  # type: ignore[arg-type]
    plain = PLAIN.evaluate(lines, facts, twin, **kwargs)
    assert msgspec.json.encode(ours) == msgspec.json.encode(plain)


def test_ci_prices_with_the_compiled_core() -> None:
    """CI builds the core (``engine.build_native --required``): what it tests is what the image runs."""
    if not os.environ.get("CI"):
        pytest.skip("outside CI the core may run as plain Python (no compiler)")
    assert compiled(), "CI runs the plain pricing core: engine/promotions/_native is missing or stale"


def test_the_benchmark_catalog_prices_alike_at_every_hour_with_and_without_reasons() -> None:
    assert str(PLAIN.__file__).endswith(".py")
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


@settings(max_examples=150, deadline=None)
@given(lines_st, catalogs(), st.integers(0, 100_000), st.booleans())
def test_random_catalogs_price_alike(lines: list[CartLine], catalog: core.Catalog, points: int, explain: bool) -> None:
    facts = Facts(at=datetime(2026, 3, 2, 9, tzinfo=UTC), tier="standart", rate_bp=500, language="en")
    _same(lines, facts, catalog, _twin(catalog), available_points=points, requested_points=points, explain=explain)


def test_a_build_counts_only_while_its_source_is_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "evaluate.py"
    source.write_text("x = 1\n")
    built = tmp_path / "_native"
    built.mkdir()
    assert not current(built, source)  # no build
    stamp(built).write_text(source_digest(source) + "\n")
    assert current(built, source)
    source.write_text("x = 2\n")  # edited after the build: the plain module runs
    assert not current(built, source)
    monkeypatch.setenv("KARTKA_PURE_PYTHON_ENGINE", "1")
    assert native_path(["somewhere"]) == ["somewhere"]
