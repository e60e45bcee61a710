"""The receipt's promotion lines: what the till prints for each promotion applied."""

from __future__ import annotations

import pytest

from kartka.texts import Catalog, catalog
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


@pytest.mark.parametrize("language", ["ru", "en", "en-GB", "xx"])
@pytest.mark.parametrize("title", ["Минус треть", "{amount}", "{{x}}", "a}b{"])
@pytest.mark.parametrize("amount", [1, 100, 2_254, 123_456_789])
def test_a_line_reads_as_the_catalogs_text_would_write_it(language: str, title: str, amount: int) -> None:
    texts = catalog()
    written = texts.text(
        language, "receipt.promotion_discount", title=title, amount=texts.number(amount, language), currency="BYN"
    )

    assert promotion_lines(language, [(title, amount), (title, 0)], "BYN") == [
        written,
        texts.text(language, "receipt.promotion", title=title),
    ]


@pytest.mark.parametrize(
    "template",
    [
        "−{amount} {currency}: «{title}»",  # the amount first
        "«{title}»",  # no amount
        "«{title}»: {amount} ({amount})",  # twice
        "«{title}» {{discount}}: {amount}",  # an escaped brace
        "«{title}»: {amount!r} = {amount}",  # a conversion beside the bare field
        "«{title:>12}»: {amount:>10} {currency}",  # format specs
    ],
)
def test_any_template_a_translator_writes_is_filled_as_text_fills_it(template: str) -> None:
    texts = Catalog({"ru": {"receipt": {"promotion_discount": template, "promotion": "«{title}»"}}})
    amount = texts.number(2_254, "ru")

    assert promotion_lines("ru", [("P", 2_254)], "BYN", texts=texts) == [
        template.format_map({"title": "P", "amount": amount, "currency": "BYN"})
    ]
