"""Templates: numbers, Russian plurals, every template in both languages, and what each costs as SMS."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from kartka.texts import format_date, format_points, points, text
from notifications.templates import (
    LOCALES,
    TEMPLATES,
    Rendered,
    Segments,
    TemplateError,
    render,
    resolve_locale,
    sms_segments,
    substitute_name,
)

NBSP = "\u00a0"
URL = "https://kartka.by/c/0123456789abcdef0123456789"  # 46 characters
CARD = "2000000000015"

#: Realistic parameters, as the triggers write them into the outbox.
PARAMS: dict[str, dict[str, Any]] = {
    "card_link": {"url": URL, "card": CARD},
    "points_earned": {"earned": 1250, "available_on": "2026-03-16", "total_available": 14_000},
    "tier_upgrade": {"tier_name": "Platinum", "rate_percent": "5"},
    "points_expiring": {"points": 31_250, "expires_on": "2026-03-31"},
    "otp": {"code": "482913", "minutes": 5},
    "birthday_bonus": {"points": 50_000, "expires_on": "2026-04-01"},
    "campaign": {"text": "Здравствуйте, {name}! Скидка 20% на весь кофе до воскресенья.", "name": "Анна"},
}


# -- numbers, dates, words ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "ru", "en"),
    [
        (0, "0", "0"),
        (5, "0,05", "0.05"),
        (1200, "12", "12"),
        (1250, "12,50", "12.50"),
        (1205, "12,05", "12.05"),
        (99_999, "999,99", "999.99"),
        (123_450, f"1{NBSP}234,50", "1,234.50"),
        (100_000_000, f"1{NBSP}000{NBSP}000", "1,000,000"),
        (-1250, "-12,50", "-12.50"),
    ],
)
def test_format_points(minor: int, ru: str, en: str) -> None:
    assert format_points(minor, "ru") == ru
    assert format_points(minor, "en") == en


def test_format_date() -> None:
    assert format_date(date(2026, 3, 3), "ru") == "03.03.2026"
    assert format_date(date(2026, 3, 3), "en") == "3 Mar 2026"
    assert format_date(date(2026, 12, 31), "en") == "31 Dec 2026"


@pytest.mark.parametrize(
    ("locale", "resolved"),
    [("ru", "ru"), ("en", "en"), ("en-GB", "en"), ("EN_us", "en"), ("ru-BY", "ru"), ("be", "ru"), ("", "ru")],
)
def test_unknown_locales_fall_back_to_russian(locale: str, resolved: str) -> None:
    assert resolve_locale(locale) == resolved
    assert LOCALES == ("ru", "en")


@pytest.mark.parametrize(
    ("n", "word"),
    [
        (0, "баллов"),
        (1, "балл"),
        (2, "балла"),
        (3, "балла"),
        (4, "балла"),
        (5, "баллов"),
        (10, "баллов"),
        (11, "баллов"),
        (12, "баллов"),
        (14, "баллов"),
        (15, "баллов"),
        (20, "баллов"),
        (21, "балл"),
        (22, "балла"),
        (25, "баллов"),
        (101, "балл"),
        (111, "баллов"),
        (112, "баллов"),
        (1001, "балл"),
        (1024, "балла"),
    ],
)
def test_russian_plural_of_whole_points(n: int, word: str) -> None:
    assert text("ru", "points", count=n, n=n) == f"{n} {word}"
    assert points(n * 100, "ru") == f"{format_points(n * 100, 'ru')} {word}"


@pytest.mark.parametrize("minor", [50, 150, 1250, 2101, 500_005])
def test_fractional_points_take_the_genitive_singular(minor: int) -> None:
    assert points(minor, "ru").endswith(" балла")


def test_english_plural() -> None:
    assert points(100, "en") == "1 point"
    assert points(150, "en") == "1.50 points"
    assert points(0, "en") == "0 points"
    assert points(200, "en") == "2 points"


# -- templates ------------------------------------------------------------------------------------------


def test_card_link() -> None:
    assert render("card_link", "ru", PARAMS["card_link"]) == Rendered(
        text=f"Карта {CARD}: {URL}", title="Ваша карта Kartka"
    )
    assert render("card_link", "en", PARAMS["card_link"]).text == f"Your Kartka card {CARD}: {URL}"


def test_card_link_drops_the_number_rather_than_take_a_second_part() -> None:
    long_url = "https://loyalty.kartka.by/c/0123456789abcdef0123456789abcdef"  # 60 characters
    rendered = render("card_link", "ru", {"url": long_url, "card": CARD})
    assert rendered.text == f"Карта: {long_url}"
    assert sms_segments(rendered.text).parts == 1


def test_points_earned() -> None:
    ru = render("points_earned", "ru", PARAMS["points_earned"])
    assert ru.text == "Начислено 12,50 балла, можно тратить с 16.03.2026. Баланс: 140 баллов."
    assert ru.title == "Баллы начислены"
    en = render("points_earned", "en", PARAMS["points_earned"])
    assert en.text == "You earned 12.50 points, usable from 16 Mar 2026. Balance: 140 points."
    assert en.title == "Points earned"
    one = render("points_earned", "ru", {"earned": 2100, "available_on": "2026-03-03", "total_available": 2100})
    assert one.text == "Начислено 21 балл, можно тратить с 03.03.2026. Баланс: 21 балл."


def test_tier_upgrade() -> None:
    assert render("tier_upgrade", "ru", PARAMS["tier_upgrade"]).text == (
        "Поздравляем! Ваш уровень — Platinum: 5% баллами с покупок."
    )
    half = {"tier_name": "Gold", "rate_percent": "2.5"}
    assert render("tier_upgrade", "ru", half).text == "Поздравляем! Ваш уровень — Gold: 2,5% баллами с покупок."
    assert render("tier_upgrade", "en", half).text == (
        "Congratulations! Your tier is now Gold: 2.5% back in points on purchases."
    )


@pytest.mark.parametrize(
    ("minor", "ru", "en"),
    [
        (100, "31.03.2026 сгорит 1 балл — успейте потратить!", "Your 1 point expires on 31 Mar 2026."),
        (2100, "31.03.2026 сгорит 21 балл — успейте потратить!", "Your 21 points expire on 31 Mar 2026."),
        (300, "31.03.2026 сгорят 3 балла — успейте потратить!", "Your 3 points expire on 31 Mar 2026."),
        (1100, "31.03.2026 сгорят 11 баллов — успейте потратить!", "Your 11 points expire on 31 Mar 2026."),
        (31_250, "31.03.2026 сгорят 312,50 балла — успейте потратить!", "Your 312.50 points expire on 31 Mar 2026."),
    ],
)
def test_points_expiring(minor: int, ru: str, en: str) -> None:
    params = {"points": minor, "expires_on": "2026-03-31"}
    assert render("points_expiring", "ru", params) == Rendered(text=ru, title="Баллы скоро сгорят")
    assert render("points_expiring", "en", params).text == f"{en} Use them before then."


@pytest.mark.parametrize(
    ("minutes", "ru_unit", "en_unit"), [(1, "минуту", "minute"), (3, "минуты", "minutes"), (10, "минут", "minutes")]
)
def test_otp(minutes: int, ru_unit: str, en_unit: str) -> None:
    params = {"code": "048213", "minutes": minutes}
    assert render("otp", "ru", params).text == (
        f"Код входа Kartka: 048213. Действует {minutes} {ru_unit}. Никому не сообщайте его."
    )
    assert render("otp", "en", params).text == (
        f"Kartka sign-in code: 048213. Valid for {minutes} {en_unit}. Do not share it with anyone."
    )
    assert render("otp", "ru", params).title == "Код входа"


def test_birthday_bonus() -> None:
    assert render("birthday_bonus", "ru", PARAMS["birthday_bonus"]) == Rendered(
        text="С днём рождения! Дарим 500 баллов, они действуют до 01.04.2026.", title="С днём рождения!"
    )
    assert render("birthday_bonus", "en", {"points": 150, "expires_on": "2026-04-01"}).text == (
        "Happy birthday! Here are 1.50 points from us, usable until 1 Apr 2026."
    )


def test_campaign_substitutes_the_name() -> None:
    rendered = render("campaign", "ru", PARAMS["campaign"])
    assert rendered == Rendered(text="Здравствуйте, Анна! Скидка 20% на весь кофе до воскресенья.", title="Kartka")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Здравствуйте, {name}!", "Здравствуйте!"),
        ("Привет {name}! Скидка 10%.", "Привет! Скидка 10%."),
        ("{name}, для вас скидка 10%.", "для вас скидка 10%."),
        ("Скидка 10% для вас.", "Скидка 10% для вас."),
        ("{name} {name}, {name}!", "!"),
    ],
)
def test_campaign_without_a_name_removes_the_placeholder_cleanly(text: str, expected: str) -> None:
    assert substitute_name(text, None) == expected
    assert substitute_name(text, "  ") == expected
    assert render("campaign", "ru", {"text": text}).text == expected


def test_campaign_text_is_never_formatted() -> None:
    hostile = "{0.__class__} {name.__init__} {} {{name}} %s {name}"
    rendered = render("campaign", "en", {"text": hostile, "name": "{0.__class__.__mro__}"})
    assert rendered.text == "{0.__class__} {name.__init__} {} {{0.__class__.__mro__}} %s {0.__class__.__mro__}"


def test_opt_out_link_goes_on_its_own_line() -> None:
    url = "https://kartka.by/u/Zm9vYmFy"
    ru = render("campaign", "ru", PARAMS["campaign"], opt_out_url=url)
    assert ru.text.endswith(f"воскресенья.\nОтписаться: {url}")
    en = render("campaign", "en", {"text": "20% off coffee"}, opt_out_url=url)
    assert en.text == f"20% off coffee\nUnsubscribe: {url}"
    assert render("campaign", "en", {"text": "x"}, opt_out_url=None).text == "x"


@pytest.mark.parametrize("template", sorted(TEMPLATES))
@pytest.mark.parametrize("locale", ["ru", "en", "de"])
def test_every_template_has_a_title(template: str, locale: str) -> None:
    rendered = render(template, locale, PARAMS[template])
    assert rendered.title
    assert len(rendered.title) <= 25
    assert rendered.text == rendered.text.strip()


def test_unknown_locale_renders_russian() -> None:
    assert render("otp", "de", PARAMS["otp"]) == render("otp", "ru", PARAMS["otp"])


@pytest.mark.parametrize(
    ("template", "params", "message"),
    [
        ("welcome", {}, "unknown template 'welcome'"),
        ("card_link", {"card": CARD}, "needs the parameter 'url'"),
        ("points_earned", {"earned": 1, "available_on": "2026-03-03"}, "needs the parameter 'total_available'"),
        ("points_earned", {"earned": "1", "available_on": "2026-03-03", "total_available": 1}, "must be an integer"),
        ("points_earned", {"earned": True, "available_on": "2026-03-03", "total_available": 1}, "must be an integer"),
        ("points_expiring", {"points": 1, "expires_on": "31.03.2026"}, "must be an ISO date"),
        ("otp", {"code": "", "minutes": 5}, "'code' is empty"),
        ("otp", {"code": None, "minutes": 5}, "needs the parameter 'code'"),
        ("tier_upgrade", {"tier_name": ["Gold"], "rate_percent": "5"}, "must be a string"),
        ("campaign", {"text": "  "}, "non-empty string"),
        ("campaign", {"text": "Hi {name}", "name": 5}, "'name' must be a string"),
    ],
)
def test_template_errors(template: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render(template, "ru", params)
    assert issubclass(TemplateError, ValueError)


# -- SMS segments ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Segments(encoding="GSM-7", units=0, parts=1)),
        ("a" * 160, Segments(encoding="GSM-7", units=160, parts=1)),
        ("a" * 161, Segments(encoding="GSM-7", units=161, parts=2)),
        ("a" * 306, Segments(encoding="GSM-7", units=306, parts=2)),
        ("a" * 307, Segments(encoding="GSM-7", units=307, parts=3)),
        ("€" * 80, Segments(encoding="GSM-7", units=160, parts=1)),
        ("a" * 159 + "€", Segments(encoding="GSM-7", units=161, parts=2)),
        # 152 septets then an escape pair: the pair does not fit the first part's 153, so it moves whole.
        ("a" * 152 + "€" + "a" * 152, Segments(encoding="GSM-7", units=306, parts=3)),
        ("[]{}\\^~|\f", Segments(encoding="GSM-7", units=18, parts=1)),
        ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà", Segments(encoding="GSM-7", units=42, parts=1)),
        ("д" * 70, Segments(encoding="UCS-2", units=70, parts=1)),
        ("д" * 71, Segments(encoding="UCS-2", units=71, parts=2)),
        ("д" * 134, Segments(encoding="UCS-2", units=134, parts=2)),
        ("д" * 135, Segments(encoding="UCS-2", units=135, parts=3)),
        ("a" * 69 + "ç", Segments(encoding="UCS-2", units=70, parts=1)),  # ç is not GSM (Ç is)
        ("😀" * 35, Segments(encoding="UCS-2", units=70, parts=1)),
        ("😀" * 36, Segments(encoding="UCS-2", units=72, parts=2)),
        # 66 units then a surrogate pair: the pair does not fit the first part's 67, so it moves whole.
        ("д" * 66 + "😀" + "д" * 66, Segments(encoding="UCS-2", units=134, parts=3)),
        ("Hello — world", Segments(encoding="UCS-2", units=13, parts=1)),
    ],
)
def test_sms_segments(text: str, expected: Segments) -> None:
    assert sms_segments(text) == expected


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_russian_templates_fit_their_sms_budget(template: str) -> None:
    rendered = render(template, "ru", PARAMS[template])
    budget = 1 if template in ("card_link", "otp") else 2
    assert sms_segments(rendered.text).parts <= budget, rendered.text


def test_campaign_with_opt_out_fits_two_parts() -> None:
    rendered = render("campaign", "ru", PARAMS["campaign"], opt_out_url="https://kartka.by/u/0123456789abcdef")
    assert sms_segments(rendered.text).parts <= 2


def test_the_most_frequent_messages_fit_one_part_with_everyday_values() -> None:
    for earned, total in ((1250, 14_000), (2100, 100), (350, 99_900)):
        params = {"earned": earned, "available_on": "2026-03-16", "total_available": total}
        assert sms_segments(render("points_earned", "ru", params).text).parts == 1
    big = {"earned": 99_950, "available_on": "2026-03-16", "total_available": 1_234_550}
    assert sms_segments(render("points_earned", "ru", big).text).parts == 2
    for minutes in (1, 5, 10, 15, 59):
        assert sms_segments(render("otp", "ru", {"code": "482913", "minutes": minutes}).text).parts == 1


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_english_templates_stay_in_the_gsm_alphabet(template: str) -> None:
    params = dict(PARAMS[template])
    if template == "campaign":
        params = {"text": "Hi {name}! 20% off coffee until Sunday.", "name": "Anna"}
    rendered = render(template, "en", params)
    assert sms_segments(rendered.text).encoding == "GSM-7", rendered.text
    assert sms_segments(rendered.text).parts == 1
