"""How points, percentages and dates read to people, in Russian and English: one place for the
messages, receipts, the card page and both wallets' passes.

Points are minor units (``1250`` = 12.50 points). Whole amounts print without a fraction (``12``),
others with two decimals (``12,50`` / ``12.50``); thousands are grouped with a no-break space in Russian
(``1 234,50``, as on receipts) and a comma in English (``1,234.50``). Any language but English reads
as Russian, the program's own.
"""

from __future__ import annotations

from datetime import date
from typing import Final

_MONTHS_EN: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_points(minor: int, language: str) -> str:
    """``1250`` -> ``12,50`` (ru) / ``12.50`` (en); ``1200`` -> ``12``; ``123450`` -> ``1 234,50`` / ``1,234.50``."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    if language != "en":
        grouped = f"{whole:,}".replace(",", "\u00a0")
        return f"{sign}{grouped}" + (f",{cents:02d}" if cents else "")
    return f"{sign}{whole:,}" + (f".{cents:02d}" if cents else "")


def format_date(day: date, language: str) -> str:
    """``03.03.2026`` (ru) / ``3 Mar 2026`` (en)."""
    if language != "en":
        return f"{day.day:02d}.{day.month:02d}.{day.year}"
    return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year}"


def format_percent(bp: int, language: str) -> str:
    """Basis points as a percentage without trailing zeros: ``500`` -> ``5``, ``750`` -> ``7,5`` / ``7.5``."""
    whole, rest = divmod(bp, 100)
    if rest == 0:
        return str(whole)
    return f"{whole}{'.' if language == 'en' else ','}{f'{rest:02d}'.rstrip('0')}"


def ru_plural(n: int, one: str, few: str, many: str) -> str:
    """The Russian noun form after the integer ``n``: 1 балл, 2–4 балла, 5–20 баллов, 21 балл, 111 баллов."""
    n = abs(n)
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


def points_word(minor: int, language: str) -> str:
    """The noun that follows :func:`format_points`: a fraction takes the genitive singular ("12,50 балла")."""
    if language != "en":
        if minor % 100:
            return "балла"
        return ru_plural(minor // 100, "балл", "балла", "баллов")
    return "point" if abs(minor) == 100 else "points"


def points(minor: int, language: str) -> str:
    """``1250`` -> ``12,50 балла`` / ``12.50 points``."""
    return f"{format_points(minor, language)} {points_word(minor, language)}"
