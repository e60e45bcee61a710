"""The program file: one documented place, validated on load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wallet.program import DEFAULT_PROGRAM, ProgramError, load_program

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "program.example.toml"
KARTKA = str(Path(sys.executable).parent / "kartka")


def test_the_documented_example_loads() -> None:
    program = load_program(EXAMPLE)
    assert [t.code for t in program.tiers] == ["standart", "gold", "platinum"]
    assert program.redeem_cap_bp == 7_000


def test_defaults_are_the_seed_program() -> None:
    assert load_program(None) is DEFAULT_PROGRAM
    assert [(t.threshold, t.rate_bp) for t in DEFAULT_PROGRAM.tiers] == [(0, 500), (50_000, 1_000), (150_000, 1_500)]
    assert (DEFAULT_PROGRAM.pending_hours, DEFAULT_PROGRAM.expiry_months) == (24, 6)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("redeem_cap_bp = 12000", "redeem_cap_bp"),
        ("bonus = 1", "bonus"),
        ("[[tiers]]\ncode='gold'\nname='Gold'\nthreshold=100\nrate_bp=500", "threshold of 0"),
        ("timezone = 'Mars/Olympus'", "timezone"),
        ("[[promotions]]\nkind='n_for_m'\nid='x'\ntitle_ru='x'\ntitle_en='x'\nn=3\nm=2", "promotions import"),
        ("refund_policy = 'shrug'", "refund_policy"),
        ("pending_hours = 2000\nexpiry_months = 1", "expire before use"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_bad_files_are_refused_naming_the_problem(tmp_path: Path, text: str, words: str) -> None:
    file = tmp_path / "program.toml"
    file.write_text(text)
    with pytest.raises(ProgramError, match=words):
        load_program(file)


def test_cli_checks_and_shows_the_program(tmp_path: Path) -> None:
    ok = subprocess.run([KARTKA, "program", "check", str(EXAMPLE)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("expiry_months = 0")
    refused = subprocess.run([KARTKA, "program", "check", str(bad)], capture_output=True, text=True, check=False)
    assert refused.returncode != 0
    assert "expiry_months" in refused.stderr
    shown = subprocess.run([KARTKA, "program", "show"], capture_output=True, text=True, check=False)
    assert '"redeem_cap_bp": 7000' in shown.stdout
