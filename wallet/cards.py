"""Card numbers: 13 digits ending in an EAN-13 check digit, so a till prints and scans them as EAN-13
and a mistyped digit is caught before any lookup.

The default prefix ``2`` is GS1's range for in-store numbers, which never collides with a product
barcode on the same scanner. The rest is drawn from ``secrets``: knowing one card tells nothing about
another.
"""

from __future__ import annotations

import re
import secrets

CARD_LENGTH = 13
_DIGITS = re.compile(r"[0-9]{13}")


def ean13_check_digit(first12: str) -> int:
    if len(first12) != 12 or not first12.isdigit():
        raise ValueError("EAN-13 check digit needs exactly 12 digits")
    digits = first12.encode()  # ASCII codes: each digit is 48 too many, 48 * (6 + 3 * 6) = 1152 in all
    total = sum(digits[0::2]) + 3 * sum(digits[1::2]) - 1152
    return -total % 10


def is_valid_card_number(number: str) -> bool:
    return bool(_DIGITS.fullmatch(number)) and ean13_check_digit(number[:12]) == int(number[12])


def generate_card_number(prefix: str) -> str:
    if not prefix.isdigit() or not 1 <= len(prefix) <= 4:
        raise ValueError("card prefix must be 1-4 digits")
    body = prefix + "".join(str(secrets.randbelow(10)) for _ in range(12 - len(prefix)))
    return body + str(ean13_check_digit(body))


def card_page_url(public_base: str, page_token: str) -> str:
    """The card page's address (``/c/{token}``), the one place it is made: the SMS, the app and the
    passes all link here. The token itself is made only by the ``cards.page_token`` column's default
    (new cards, and ``SET page_token = DEFAULT`` on rotation and closing)."""
    return f"{public_base.rstrip('/')}/c/{page_token}"
