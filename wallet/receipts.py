"""Receipt lines: what the till prints for the shopper, in the program's language (Russian by default)."""

from __future__ import annotations

import functools
from datetime import datetime
from zoneinfo import ZoneInfo

from wallet.models import BalanceView, TierView
from wallet.money import format_amount
from wallet.texts import format_percent

_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _date(moment: datetime, zone: ZoneInfo, language: str) -> str:
    local = moment.astimezone(zone)
    if language == "ru":
        return local.strftime("%d.%m.%Y %H:%M")
    return f"{local.day} {_MONTHS_EN[local.month - 1]} {local.year} {local:%H:%M}"


def promotion_lines(language: str, promotions: list[tuple[str, int]], currency: str) -> list[str]:
    """One line per promotion applied: its title and what it took off (or that it gave points)."""
    a = functools.partial(format_amount, language=language)
    if language == "ru":
        return [f"Акция «{t}»: −{a(d)} {currency}" if d else f"Акция «{t}»" for t, d in promotions]
    return [f"Promotion «{t}»: -{a(d)} {currency}" if d else f"Promotion «{t}»" for t, d in promotions]


def quote_lines(language: str, *, discount: int, redeem: int, max_redeem: int, accrue: int, currency: str) -> list[str]:
    """Before payment: what the cart gets."""
    a = functools.partial(format_amount, language=language)
    if language == "ru":
        lines = [f"Скидка по акциям: {a(discount)} {currency}"] if discount else []
        lines.append(f"Можно оплатить баллами: до {a(max_redeem)}")
        if redeem:
            lines.append(f"Будет списано баллов: {a(redeem)}")
        lines.append(f"Будет начислено баллов: {a(accrue)}")
        return lines
    lines = [f"Promotion discount: {a(discount)} {currency}"] if discount else []
    lines.append(f"Points you may use: up to {a(max_redeem)}")
    if redeem:
        lines.append(f"Points to be used: {a(redeem)}")
    lines.append(f"Points to be earned: {a(accrue)}")
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
    a = functools.partial(format_amount, language=language)
    when = _date(available_at, zone, language)
    if language == "ru":
        lines = []
        if redeemed:
            lines.append(f"Списано баллов: {a(redeemed)}")
        lines.append(f"Начислено баллов: {a(accrued)}" + (f" (доступны с {when})" if accrued else ""))
        lines.append(f"Баланс: {a(balance.available)} баллов")
        if balance.pending:
            lines.append(f"Ожидают начисления: {a(balance.pending)}")
        lines.append(f"Уровень: {tier.name}, {format_percent(tier.rate, 'ru')}% баллами")
        if upgraded_to:
            lines.append(f"Поздравляем! Со следующей покупки ваш уровень — {upgraded_to}")
        return lines
    lines = []
    if redeemed:
        lines.append(f"Points used: {a(redeemed)}")
    lines.append(f"Points earned: {a(accrued)}" + (f" (available from {when})" if accrued else ""))
    lines.append(f"Balance: {a(balance.available)} points")
    if balance.pending:
        lines.append(f"Pending: {a(balance.pending)}")
    lines.append(f"Tier: {tier.name}, {format_percent(tier.rate, 'en')}% back in points")
    if upgraded_to:
        lines.append(f"Congratulations! From your next purchase your tier is {upgraded_to}")
    return lines


def refund_lines(language: str, *, taken_back: int, returned: int, balance: BalanceView) -> list[str]:
    a = functools.partial(format_amount, language=language)
    if language == "ru":
        return [
            f"Возврат: списано начисленных баллов {a(taken_back)}",
            f"Возвращено баллов: {a(returned)}",
            f"Баланс: {a(balance.available)} баллов",
        ]
    return [
        f"Return: points taken back {a(taken_back)}",
        f"Points given back: {a(returned)}",
        f"Balance: {a(balance.available)} points",
    ]
