"""Phone numbers: the customer's key, always stored in E.164."""

from __future__ import annotations

import phonenumbers

from wallet.errors import InvalidPhone

MAX_RAW_LENGTH = 32

_E = phonenumbers.NumberParseException
_PARSE_ERRORS = {
    _E.INVALID_COUNTRY_CODE: "the country code is unknown",
    _E.NOT_A_NUMBER: "it does not look like a phone number",
    _E.TOO_SHORT_AFTER_IDD: "it is too short",
    _E.TOO_SHORT_NSN: "it is too short",
    _E.TOO_LONG: "it is too long",
}


def normalize_phone(raw: str, region: str, *, field: str = "phone") -> str:
    """Parse what a person typed (``8 029 123-45-67``, ``+375291234567``) into E.164 or raise."""
    text = raw.strip()
    if not text:
        raise InvalidPhone("a phone number is required", field=field)
    if len(text) > MAX_RAW_LENGTH:
        raise InvalidPhone(f"a phone number has at most {MAX_RAW_LENGTH} characters", field=field)
    if text.startswith("00"):  # the international prefix much of Europe dials, typed instead of "+"
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        reason = _PARSE_ERRORS.get(exc.error_type, "it cannot be read as a phone number")
        raise InvalidPhone(f"{text!r} is not a phone number: {reason}", field=field) from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(
            f"{text!r} is not a valid phone number"
            + ("" if text.startswith("+") else f" for region {region}; add the country code, e.g. +375..."),
            field=field,
        )
    if number.extension:
        raise InvalidPhone(f"{text!r} has an extension; give the mobile number alone", field=field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def try_normalize_phone(raw: str, region: str) -> str | None:
    try:
        return normalize_phone(raw, region)
    except InvalidPhone:
        return None


def country_of(e164: str) -> str:
    """The ISO country a number in E.164 belongs to (``BY``), or ``001`` for non-geographic numbers:
    what the budgets of texts per country count by."""
    return phonenumbers.region_code_for_number(phonenumbers.parse(e164)) or "ZZ"
