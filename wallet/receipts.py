"""Receipt lines: what the till prints for the shopper, in the program's language (Russian by default).
The words come from the text catalog (:mod:`kartka.texts`), numbers and dates from its one formatter."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from kartka.texts import Catalog as TextCatalog
from kartka.texts import catalog, format_datetime, format_percent, format_points, points, text
from wallet.models import BalanceView, TierView


def promotion_lines(
    language: str, promotions: list[tuple[str, int]], currency: str, *, texts: TextCatalog | None = None
) -> list[str]:
    """One line per promotion applied: its title and what it took off (or that it gave points), from
    ``texts`` (the shipped catalog unless given)."""
    if not promotions:
        return []
    # Every quote and receipt names several, and a promotion's line differs from one receipt to the
    # next only in its amount: the text around the amount is filled once per promotion.
    texts = texts or catalog()
    lines = []
    for title, discount in promotions:
        if discount:
            around = _took_off(texts, language, title, currency)
            amount = texts.number(discount, language)
            lines.append(
                around[0] + amount + around[1]
                if around is not None
                else texts.text(language, "receipt.promotion_discount", title=title, amount=amount, currency=currency)
            )
        else:
            lines.append(_gave(texts, language, title))
    return lines


@functools.lru_cache(maxsize=4096)
def _took_off(texts: TextCatalog, language: str, title: str, currency: str) -> tuple[str, str] | None:
    """A discount line's text before and after its amount (the template filled as ``text`` fills it),
    or None where that cannot be told apart from the whole template filled line by line: the amount
    not named exactly once as a bare ``{amount}``, an escaped brace, a field the halves cannot fill."""
    template = texts.text(language, "receipt.promotion_discount")
    head, amount, tail = template.partition("{amount}")
    if not amount or "{amount}" in tail or "{{" in template:
        return None
    params = {"title": title, "currency": currency}
    try:
        return head.format_map(params), tail.format_map(params)
    except (KeyError, ValueError, IndexError, AttributeError):  # e.g. "{amount!r}" beside "{amount}"
        return None


@functools.lru_cache(maxsize=4096)
def _gave(texts: TextCatalog, language: str, title: str) -> str:
    return texts.text(language, "receipt.promotion", title=title)


def quote_lines(language: str, *, discount: int, redeem: int, max_redeem: int, accrue: int, currency: str) -> list[str]:
    """Before payment: what the cart gets."""
    lines = []
    if discount:
        lines.append(text(language, "receipt.discount", amount=format_points(discount, language), currency=currency))
    lines.append(text(language, "receipt.may_redeem", n=format_points(max_redeem, language)))
    if redeem:
        lines.append(text(language, "receipt.will_redeem", n=format_points(redeem, language)))
    lines.append(text(language, "receipt.will_accrue", n=format_points(accrue, language)))
    return lines


def order_lines(
    language: str,
    zone: ZoneInfo,
    *,
    accrued: int,
    available_at: datetime,
    redeemed: int,
    balance: BalanceView,
    tier: TierView,
    upgraded_to: str | None,
) -> list[str]:
    """After payment: what was earned and when it can be spent, what was spent, the balance and tier."""
    lines = []
    if redeemed:
        lines.append(text(language, "receipt.redeemed", n=format_points(redeemed, language)))
    if accrued:
        when = format_datetime(available_at.astimezone(zone), language)
        lines.append(text(language, "receipt.accrued_from", n=format_points(accrued, language), date=when))
    else:
        lines.append(text(language, "receipt.accrued", n=format_points(accrued, language)))
    lines.append(text(language, "receipt.balance", points=points(balance.available, language)))
    if balance.pending:
        lines.append(text(language, "receipt.pending", n=format_points(balance.pending, language)))
    lines.append(text(language, "receipt.tier", tier=tier.name, rate=format_percent(tier.rate, language)))
    if upgraded_to:
        lines.append(text(language, "receipt.upgraded", tier=upgraded_to))
    return lines


def refund_lines(
    language: str,
    *,
    taken_back: int,
    returned: int,
    balance: BalanceView,
    promotions: Sequence[tuple[str, int, int]] = (),
    currency: str = "",
) -> list[str]:
    """After a return: each promotion whose share goes back with the returned items (title, the discount
    those items carried, the points it gave on them), then the points taken back and given back."""
    named = [
        text(
            language,
            "receipt.promotion_returned",
            title=title,
            amount=format_points(discount, language),
            currency=currency,
        )
        if discount
        else text(language, "receipt.promotion_returned_points", title=title, n=format_points(points, language))
        for title, discount, points in promotions
    ]
    return [
        *named,
        text(language, "receipt.taken_back", n=format_points(taken_back, language)),
        text(language, "receipt.given_back", n=format_points(returned, language)),
        text(language, "receipt.balance", points=points(balance.available, language)),
    ]
