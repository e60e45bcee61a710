"""``kartka promotions import FILE``: the program file's promotions, old kinds or new objects, become
stored live promotions; a second run changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from boot.cli import main as kartka
from engine.promotions.importer import read_file
from engine.promotions.model import Bundle, InvalidPromotion, NForM, Selector
from kartka.db import Connection
from tests.api.test_promotions import no_promotions_left

__all__ = ["no_promotions_left"]  # the fixture, shared: imports go live in the suite's app, which outlives the test

PROGRAM = """
redeem_cap_bp = 6000

[[promotions]]
kind = "bundle_percent"
id = "pastry-with-coffee"
title_ru = "−30% на выпечку к кофе"
title_en = "-30% on pastry with coffee"
stores = ["minsk-1"]
starts_at = 2026-03-01T00:00:00Z

[[promotions]]
kind = "n_for_m"
id = "three-for-two"
title_ru = "1+1=3"
title_en = "Buy 2, get the 3rd free"
category = "tea"

[[promotions]]
id = "double-points"
title = {en = "Double points on tea"}
benefit = {type = "points_multiplier", lines = {categories = ["tea"]}, factor_bp = 20000}
"""


def test_old_kinds_become_promotion_objects_with_the_same_effect(tmp_path: Path) -> None:
    file = tmp_path / "program.toml"
    file.write_text(PROGRAM, encoding="utf-8")
    bundle, three, double = read_file(file)
    assert bundle.benefit == Bundle(
        trigger=Selector(categories=("coffee",)), target=Selector(categories=("pastry",)), percent_bp=3000
    )
    assert (bundle.where.stores, bundle.when.starts_at is not None, bundle.title["ru"]) == (
        ("minsk-1",),
        True,
        "−30% на выпечку к кофе",
    )
    assert three.benefit == NForM(lines=Selector(categories=("tea",)), n=3, m=2)
    assert double.id == "double-points"


def test_a_bad_entry_is_named(tmp_path: Path) -> None:
    file = tmp_path / "program.toml"
    file.write_text('[[promotions]]\nid = "x"\ntitle = {en = "X"}\nbenefit = {type = "n_for_m", n = 2, m = 3}\n')
    with pytest.raises(InvalidPromotion, match=r"promotions\[0\]") as caught:
        read_file(file)
    assert caught.value.field == "promotions.0.benefit.lines"


def test_the_cli_imports_them_live_once(tmp_path: Path, database_url: str) -> None:
    file = tmp_path / "program.toml"
    file.write_text(PROGRAM, encoding="utf-8")
    runner = CliRunner()
    env = {"DATABASE_URL": database_url, "KARTKA_ENVIRONMENT": "test"}
    first = runner.invoke(kartka, ["promotions", "import", str(file)], env=env)
    assert first.exit_code == 0, first.output
    assert "pastry-with-coffee: imported" in first.output
    assert "3 imported, 0 stored already" in first.output
    second = runner.invoke(kartka, ["promotions", "import", str(file)], env=env)
    assert "0 imported, 3 stored already" in second.output, second.output


async def test_imported_promotions_are_live_and_audited(tmp_path: Path, conn: Connection) -> None:
    from engine.promotions.importer import import_promotions  # noqa: PLC0415
    from tests.conftest import START  # noqa: PLC0415

    file = tmp_path / "program.toml"
    file.write_text(PROGRAM, encoding="utf-8")
    # What the sequence hands out next (a fresh sequence's last_value is its first value, not yet given).
    before = await conn.fetchval(
        "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM promotion_catalog_versions"
    )
    results = await import_promotions(conn, read_file(file), actor="cli:ops", now=START)
    assert [r.outcome for r in results] == ["imported"] * 3
    rows = await conn.fetch("SELECT id, status, live_revision FROM promotions ORDER BY id")
    assert [(r["id"], r["status"], r["live_revision"]) for r in rows] == [
        ("double-points", "active", 1),
        ("pastry-with-coffee", "active", 1),
        ("three-for-two", "active", 1),
    ]
    actions = await conn.fetch("SELECT action FROM promotion_audit WHERE promotion_id = 'three-for-two' ORDER BY id")
    assert [a["action"] for a in actions] == ["created", "imported"]
    assert await conn.fetchval("SELECT version FROM promotion_catalog") == before + 3  # one move per promotion
