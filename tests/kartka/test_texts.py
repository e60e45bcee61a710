"""The one text layer: CLDR plurals (fractions included), one number and date format everywhere, and a
language that is a catalog file, not code."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.promotions import evaluate as core
from engine.promotions.model import parse_promotion
from engine.promotions.shapes import Facts
from kartka.texts import LOCALES_DIR, Catalog, CatalogError, catalog, format_points, points, text
from notifications.templates import render
from wallet.models import BalanceView, Expiring, TierView
from wallet.pricing import CartLine
from wallet.receipts import order_lines, refund_lines

NBSP = "\u00a0"


@pytest.mark.parametrize(
    ("minor", "ru", "en"),
    [
        (100, "1 балл", "1 point"),
        (2100, "21 балл", "21 points"),
        (200, "2 балла", "2 points"),
        (1100, "11 баллов", "11 points"),
        (0, "0 баллов", "0 points"),
        # CLDR: a number with visible fraction digits (v != 0) is "other" in Russian and in English.
        (1325, "13,25 балла", "13.25 points"),
        (150, "1,50 балла", "1.50 points"),
        (2101, "21,01 балла", "21.01 points"),
        (123_450, f"1{NBSP}234,50 балла", "1,234.50 points"),
        (-500, "-5 баллов", "-5 points"),
    ],
)
def test_points_agree_with_their_number_by_cldr(minor: int, ru: str, en: str) -> None:
    assert points(minor, "ru") == ru
    assert points(minor, "en") == en


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_fractions_always_show_two_digits_and_whole_amounts_none(minor: int) -> None:
    for language, mark in (("ru", ","), ("en", ".")):
        written = format_points(minor, language)
        if minor % 100:
            assert written.endswith(f"{mark}{abs(minor) % 100:02d}")
        else:
            assert mark not in written
        digits = written.replace(NBSP, "").replace(",", "").replace(".", "").lstrip("-")
        assert int(digits) == abs(minor) // (1 if minor % 100 else 100)


def balance(available: int, pending: int = 0) -> BalanceView:
    return BalanceView(
        available=available,
        pending=pending,
        next_available_at=None,
        expiring_soon=Expiring(points=0, at=None),
    )


TIER = TierView(code="standart", name="Standart", rate=500, spend_365d=0, next=None, to_next=None)


def test_a_receipt_writes_points_as_the_sms_does() -> None:
    """The receipt said "Баланс: 21,00 баллов" where the SMS said "21 балл"."""
    lines = order_lines(
        "ru",
        ZoneInfo("Europe/Minsk"),
        accrued=112,
        available_at=datetime(2026, 3, 3, 11, 5, tzinfo=UTC),
        redeemed=0,
        balance=balance(2100),
        tier=TIER,
        upgraded_to=None,
    )
    assert lines == [
        "Начислено баллов: 1,12 (доступны с 03.03.2026 14:05)",
        "Баланс: 21 балл",
        "Уровень: Standart, 5% баллами",
    ]
    sms = render("points_earned", "ru", {"earned": 112, "available_on": "2026-03-03", "total_available": 2100})
    assert sms.text.endswith("Баланс: 21 балл.")
    english = refund_lines("en", taken_back=1325, returned=0, balance=balance(100))
    assert english == ["Return: points taken back 13.25", "Points given back: 0", "Balance: 1 point"]
    named = refund_lines(
        "en", taken_back=150, returned=0, balance=balance(100), promotions=[("Tea", 0, 150)], currency="BYN"
    )
    assert named[0] == "Promotion «Tea»: points for the returned items 1.50"


def test_engine_messages_come_from_the_catalog() -> None:
    """A promotion with no near-miss text of its own speaks the catalog's, in the shopper's language."""
    tea = parse_promotion(
        {"id": "tea", "title": {"ru": "Чай", "en": "Tea"}, "benefit": {"type": "n_for_m", "lines": {}, "n": 3, "m": 2}}
    )
    promotions = core.Catalog([core.Active(tea, revision=1, seq=0)], None, zone=ZoneInfo("Europe/Minsk"))
    cart = [CartLine(sku="t", qty=2, unit_price=300)]
    said = {}
    for language in ("ru", "en"):
        facts = Facts(at=datetime(2026, 3, 2, tzinfo=UTC), tier="standart", rate_bp=500, language=language)
        said[language] = [m.text for m in core.evaluate(cart, facts, promotions).messages]
    assert said == {
        "ru": ["Добавьте ещё один товар по акции «Чай» — он будет бесплатным"],
        "en": ["Add one more item from «Tea» and it is free"],
    }


def test_the_brand_in_texts_is_the_programs_name() -> None:
    otp = render("otp", "ru", {"code": "048213", "minutes": 5}, brand="Веска")
    assert otp.text == "Код входа Веска: 048213. Действует 5 минут. Никому не сообщайте его."
    link = render("card_link", "en", {"url": "https://x.by/c/1", "card": "2000000000015"}, brand="Veska")
    assert (link.title, link.text) == ("Your Veska card", "Your Veska card 2000000000015: https://x.by/c/1")
    assert render("campaign", "ru", {"text": "Скидки"}, brand="Веска").title == "Веска"


def test_every_language_has_every_key_of_the_default() -> None:
    texts = catalog()
    for language in texts.languages:
        for key in texts._texts[texts.default]:
            assert key in texts._texts[language], (language, key)


BELARUSIAN = """
[language]
name = "Беларуская"

[format]
date = "dd.MM.y"
datetime = "dd.MM.y HH:mm"

[points]
one = "{n} бал"
few = "{n} балы"
many = "{n} балаў"
other = "{n} бала"

[sms.points_earned]
title = "Балы налічаны"
text = "Налічана {earned}, можна траціць з {date}. Баланс: {total}."
"""


def test_a_third_language_is_a_catalog_file(tmp_path: Path) -> None:
    """Belarusian: one more TOML file, no code. Babel knows its CLDR plural rules; what the file does
    not translate yet falls back to the default language."""
    for path in LOCALES_DIR.glob("*.toml"):
        shutil.copy(path, tmp_path)
    (tmp_path / "be.toml").write_text(BELARUSIAN, encoding="utf-8")
    texts = Catalog.load(tmp_path)
    assert texts.languages == ("ru", "be", "en")
    assert texts.resolve("be-BY") == "be"
    assert [texts.points(minor, "be") for minor in (100, 2100, 300, 1100, 500, 1325)] == [
        "1 бал",
        "21 бал",
        "3 балы",
        "11 балаў",
        "5 балаў",
        "13,25 бала",
    ]
    assert texts.text("be", "sms.points_earned.title") == "Балы налічаны"
    assert texts.text("be", "sms.otp.title") == "Код входа"  # not translated yet: the default's
    assert texts.date(date(2026, 3, 3), "be") == "03.03.2026"


def test_a_broken_catalog_or_key_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "ru.toml").write_text("points = [", encoding="utf-8")
    with pytest.raises(CatalogError):
        Catalog.load(tmp_path)
    with pytest.raises(CatalogError):
        text("ru", "no.such.key")
    with pytest.raises(CatalogError):
        text("ru", "points", n=1)  # a plural needs its count
