"""Phones are keys: every way of typing one number gives one E.164 string."""

from __future__ import annotations

import pytest

from wallet.errors import InvalidPhone
from wallet.phones import normalize_phone


@pytest.mark.parametrize(
    "typed",
    ["+375291234567", "375291234567", "80291234567", "8 (029) 123-45-67", "+375 29 123 45 67", "291234567"],
)
def test_belarus_formats(typed: str) -> None:
    assert normalize_phone(typed, "BY") == "+375291234567"


def test_other_countries_and_regions() -> None:
    assert normalize_phone("+7 912 345-67-89", "BY") == "+79123456789"
    assert normalize_phone("8 912 345-67-89", "RU") == "+79123456789"


@pytest.mark.parametrize(
    "typed", ["", "   ", "12", "abc", "+999 123 456", "+37529123456789", "1" * 40, "+375291234567 ext. 5"]
)
def test_invalid(typed: str) -> None:
    with pytest.raises(InvalidPhone) as error:
        normalize_phone(typed, "BY")
    assert error.value.field == "phone"
