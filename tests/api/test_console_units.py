"""The console's pieces that need no browser: points as people type them, the text catalog, the cookie."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.console.session import ConsoleSessions, StaffSession
from api.console.texts import TEXTS
from kartka.settings import Environment, Secret, load_settings
from kartka.staff import Role
from kartka.texts import format_points
from wallet.money import parse_points


@pytest.mark.parametrize(
    ("typed", "points"),
    [("12,50", 1250), ("12.5", 1250), ("12", 1200), ("0,01", 1), ("1 000,5", 100050), ("1\u00a0000", 100000)],
)
def test_points_are_read_as_people_type_them(typed: str, points: int) -> None:
    assert parse_points(typed) == points


@pytest.mark.parametrize("typed", ["", "12,505", "-5", "1e3", "12,", ",5", "12.5.1", "abc", "١٢"])
def test_anything_else_is_refused_not_guessed(typed: str) -> None:
    with pytest.raises(ValueError, match="not a number of points"):
        parse_points(typed)


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(["ru", "en"]))
def test_what_the_console_shows_reads_back_as_the_same_points(points: int, lang: str) -> None:
    shown = format_points(points, lang)
    if lang == "en":
        shown = shown.replace(",", "")  # English groups thousands with commas; people type them without
    assert parse_points(shown) == points


def test_both_languages_have_every_text() -> None:
    assert set(TEXTS["ru"]) == set(TEXTS["en"])
    for lang, texts in TEXTS.items():
        for key, value in texts.items():
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name}
            other = TEXTS["en" if lang == "ru" else "ru"][key]
            assert names == {name for _, name, _, _ in string.Formatter().parse(other) if name}, key


def _sessions(**settings: object) -> ConsoleSessions:
    return ConsoleSessions(
        load_settings({}, environment=Environment.TEST, **{"secret_key": Secret("k" * 40), **settings})
    )


def test_the_cookie_is_signed_and_secure_over_https() -> None:
    sessions = _sessions()
    session = StaffSession(uuid4(), uuid4(), "olga", Role.SUPPORT, int(datetime(2026, 3, 2, tzinfo=UTC).timestamp()))
    value = sessions.encode(session)
    assert sessions.decode(value) == session
    payload, _, mac = value.partition(".")
    assert sessions.decode(f"{payload}.{mac[:-2]}xx") is None
    assert sessions.decode(value.replace(payload, payload[:-2] + "AA")) is None
    assert _sessions(secret_key=Secret("j" * 40)).decode(value) is None  # another deployment's key
    assert not sessions.cookie(session).secure
    cookie = _sessions(public_url="https://kartka.example").cookie(session)
    assert cookie.secure
    assert cookie.httponly
    assert cookie.samesite == "strict"
    assert sessions.csrf(session) != _sessions().csrf(StaffSession(uuid4(), session.staff, "olga", Role.SUPPORT, 0))


def test_a_domain_refusal_names_its_field_and_speaks_the_persons_language() -> None:
    import msgspec  # noqa: PLC0415

    from analytics.segments import Rule  # noqa: PLC0415
    from api.console.kit import explain_validation  # noqa: PLC0415

    def refusal(rule: dict[str, object]) -> msgspec.ValidationError:
        with pytest.raises(msgspec.ValidationError) as caught:
            msgspec.convert(rule, Rule)
        return caught.value

    assert explain_validation("ru", refusal({"rfm_r": {"max": 9}})) == ("rfm_r", "не больше 5")
    assert explain_validation("en", refusal({"rfm_r": {"min": 0}})) == ("rfm_r", "at least 1")
    field, message = explain_validation("ru", refusal({"birthday_within_days": "soon"}))
    assert (field, message) == ("birthday_within_days", "нужно целое число")
    assert "`" not in message


def test_a_whole_number_in_a_form_is_ascii_digits_within_bounds() -> None:
    from api.console.kit import whole_number  # noqa: PLC0415

    assert whole_number(" 30 ") == 30
    assert whole_number("0") == 0
    for refused in ("", "²", "٣", "-1", "1.5", "1e3", "9" * 30):
        assert whole_number(refused) is None, refused
    assert whole_number("1000", at_most=999) is None
    assert whole_number(str(2**63)) is None
