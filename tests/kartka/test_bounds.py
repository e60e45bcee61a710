"""Days typed into the console's forms: what a calendar's arithmetic around them can hold, or None."""

from __future__ import annotations

from datetime import date

import pytest

from kartka.bounds import check_day, parse_day
from kartka.errors import InvalidInput


def test_days_between_1900_and_2200_are_read_and_the_rest_refused() -> None:
    assert parse_day(" 2026-02-28 ") == date(2026, 2, 28)
    assert parse_day("1900-01-01") == date(1900, 1, 1)
    for typed in ("9999-12-31", "0001-01-01", "2200-01-01", "1899-12-31", "2026-02-30", "28.02.2026", ""):
        assert parse_day(typed) is None, typed
    check_day(date(2199, 12, 31), "to")
    with pytest.raises(InvalidInput, match="`to` must be between 1900 and 2200"):
        check_day(date(9999, 12, 31), "to")
