"""Card numbers: EAN-13, random, and checked by the database too."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from kartka.db import Connection
from wallet.cards import ean13_check_digit, generate_card_number, is_valid_card_number


def test_known_ean13_numbers() -> None:
    for number in ("4006381333931", "5901234123457", "4600051000057"):
        assert is_valid_card_number(number)
    assert not is_valid_card_number("4006381333932")
    assert not is_valid_card_number("400638133393")
    assert not is_valid_card_number("40063813339a1")


def test_generated_numbers_are_valid_prefixed_and_not_sequential() -> None:
    numbers = [generate_card_number("2") for _ in range(2_000)]
    assert all(is_valid_card_number(n) and n.startswith("2") for n in numbers)
    assert len(set(numbers)) == len(numbers)
    as_ints = sorted(int(n[:12]) for n in numbers)
    gaps = {b - a for a, b in itertools.pairwise(as_ints)}
    assert len(gaps) > 1_000  # no fixed stride to guess the next card from


@given(st.text(alphabet="0123456789", min_size=12, max_size=12))
def test_every_digit_error_is_caught(body: str) -> None:
    number = body + str(ean13_check_digit(body))
    assert is_valid_card_number(number)
    for position in range(13):
        for digit in "0123456789":
            if digit != number[position]:
                typo = number[:position] + digit + number[position + 1 :]
                assert not is_valid_card_number(typo)


async def test_database_check_agrees_with_python(conn: Connection) -> None:
    numbers = [generate_card_number("2") for _ in range(200)]
    typos = [n[:12] + str((int(n[12]) + 1) % 10) for n in numbers]
    rows = await conn.fetch(
        "SELECT n, ean13_valid(n) AS ok FROM unnest($1::text[]) AS n",
        numbers + typos + ["123", "abcdefghijklm"],
    )
    assert {r["n"]: r["ok"] for r in rows} == {
        n: is_valid_card_number(n) for n in numbers + typos + ["123", "abcdefghijklm"]
    }
