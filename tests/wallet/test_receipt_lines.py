"""The receipt's promotion lines: what the till prints for each promotion applied."""

from __future__ import annotations

from wallet.receipts import promotion_lines


def test_each_promotion_is_named_with_what_it_took_off_in_the_programs_language() -> None:
    lines = [("Минус треть", 2_254), ("Баллы x2", 0), ("Большая", 123_456)]

    assert promotion_lines("ru", lines, "BYN") == [
        "Акция «Минус треть»: −22,54 BYN",
        "Акция «Баллы x2»",
        "Акция «Большая»: −1\xa0234,56 BYN",
    ]
    assert promotion_lines("en", lines[:2], "EUR") == ["Promotion «Минус треть»: -22.54 EUR", "Promotion «Баллы x2»"]


def test_a_title_is_printed_as_written_braces_and_all() -> None:
    # A marketer's title is a value, never a template: "{amount}" in it stays text.
    assert promotion_lines("ru", [("{amount} {title}", 100), ("{x}", 0)], "BYN") == [
        "Акция «{amount} {title}»: −1 BYN",
        "Акция «{x}»",
    ]


def test_the_same_promotion_on_two_receipts_differs_only_in_its_amount() -> None:
    first = promotion_lines("ru", [("Минус треть", 1_000)], "BYN")
    second = promotion_lines("ru", [("Минус треть", 2_050)], "BYN")

    assert (first, second) == (["Акция «Минус треть»: −10 BYN"], ["Акция «Минус треть»: −20,50 BYN"])
    assert promotion_lines("ru", [], "BYN") == []
