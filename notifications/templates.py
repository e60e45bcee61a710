"""Message texts in Russian and English, and what a text costs as SMS.

Each template validates its parameters (they come from the outbox's JSON column, so ints and strings
only, dates as ISO strings) and takes its words from the one text catalog (:mod:`kartka.texts`), which
agrees numerals with nouns by CLDR's rules; texts stay short, because every SMS part is paid for.
:func:`sms_segments` counts parts exactly as GSM 03.38 / UCS-2 encoding does, so tests can hold each
template to its budget.

Numbers and dates are written by :mod:`kartka.texts`, as on receipts, pages and passes.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

import msgspec

from kartka import texts
from kartka.texts import minor_decimal

#: The languages the text catalog has (kartka/locales/*.toml), the default first.
LOCALES: Final = texts.catalog().languages
DEFAULT_LOCALE: Final = texts.catalog().default


class TemplateError(ValueError):
    """An unknown template or parameters it cannot be rendered from."""


class Rendered(msgspec.Struct, frozen=True):
    text: str
    title: str | None  # for app push; SMS and Viber send ``text`` only


def resolve_locale(locale: str | None) -> str:
    """``"ru"``, ``"en-GB"``, ``"EN_us"`` -> a supported locale; anything else -> Russian."""
    return texts.catalog().resolve(locale)


# -- SMS encoding -------------------------------------------------------------------------------------

#: GSM 03.38 default alphabet: one septet each.
_GSM_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: The extension table: an escape septet plus one, so two septets each.
_GSM_EXTENDED: Final = frozenset("\f^{}\\[~]|€")

_GSM_SINGLE, _GSM_PART = 160, 153  # septets; a part of a long message loses 7 to its header
_UCS2_SINGLE, _UCS2_PART = 70, 67  # UTF-16 code units


class Segments(msgspec.Struct, frozen=True):
    encoding: Literal["GSM-7", "UCS-2"]
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    parts: int  # SMS parts the text is sent (and billed) as; an empty text still takes one


def sms_segments(text: str) -> Segments:
    """How many SMS parts ``text`` takes. A character outside GSM 03.38 makes the whole text UCS-2.

    Parts are counted by packing, the way phones and providers split: an escape pair (``€``) or a
    surrogate pair (emoji) never straddles two parts, so a part may carry one unit fewer than its limit.
    """
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text):
        costs = [2 if c in _GSM_EXTENDED else 1 for c in text]
        return Segments(encoding="GSM-7", units=sum(costs), parts=_pack(costs, _GSM_SINGLE, _GSM_PART))
    costs = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return Segments(encoding="UCS-2", units=sum(costs), parts=_pack(costs, _UCS2_SINGLE, _UCS2_PART))


def _pack(costs: list[int], single: int, per_part: int) -> int:
    if sum(costs) <= single:
        return 1
    parts, used = 1, 0
    for cost in costs:
        if used + cost > per_part:
            parts, used = parts + 1, 0
        used += cost
    return parts


# -- parameters ---------------------------------------------------------------------------------------


def _param(template: str, params: Mapping[str, Any], name: str) -> Any:
    if name not in params or params[name] is None:
        raise TemplateError(f"template {template!r} needs the parameter {name!r}")
    return params[name]


def _int(template: str, params: Mapping[str, Any], name: str) -> int:
    value = _param(template, params, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TemplateError(f"template {template!r}: {name!r} must be an integer, not {value!r}")
    return value


def _str(template: str, params: Mapping[str, Any], name: str) -> str:
    value = _param(template, params, name)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TemplateError(f"template {template!r}: {name!r} must be a string, not {value!r}")
    text = str(value).strip()
    if not text:
        raise TemplateError(f"template {template!r}: {name!r} is empty")
    return text


def _date(template: str, params: Mapping[str, Any], name: str) -> date:
    value = _str(template, params, name)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise TemplateError(f"template {template!r}: {name!r} must be an ISO date like 2026-03-03") from None


# -- the templates ------------------------------------------------------------------------------------

_Render = Callable[[str, Mapping[str, Any], str], tuple[str, str]]  # (locale, params, brand) -> (title, text)


def _card_link(locale: str, params: Mapping[str, Any], brand: str) -> tuple[str, str]:
    url, card = _str("card_link", params, "url"), _str("card_link", params, "card")
    text = texts.text(locale, "sms.card_link.text", card=card, url=url, brand=brand)
    # Cyrillic is UCS-2 (70 characters a part). The card number goes when it costs a second part:
    # the card page shows it anyway.
    if sms_segments(text).parts > 1:
        text = texts.text(locale, "sms.card_link.short", url=url, brand=brand)
    return texts.text(locale, "sms.card_link.title", brand=brand), text


def _points_earned(locale: str, params: Mapping[str, Any], brand: str) -> tuple[str, str]:
    earned = _int("points_earned", params, "earned")
    available_on = texts.format_date(_date("points_earned", params, "available_on"), locale)
    total = _int("points_earned", params, "total_available")
    text = texts.text(
        locale,
        "sms.points_earned.text",
        earned=texts.points(earned, locale),
        date=available_on,
        total=texts.points(total, locale),
    )
    return texts.text(locale, "sms.points_earned.title"), text


def _tier_upgrade(locale: str, params: Mapping[str, Any], brand: str) -> tuple[str, str]:
    tier = _str("tier_upgrade", params, "tier_name")
    rate = _str("tier_upgrade", params, "rate_percent")
    with contextlib.suppress(InvalidOperation, ValueError):  # "7.5" as stored, written as the language writes it
        rate = texts.format_percent(int(Decimal(rate).scaleb(2)), locale)
    text = texts.text(locale, "sms.tier_upgrade.text", tier=tier, rate=rate)
    return texts.text(locale, "sms.tier_upgrade.title"), text


def _points_expiring(locale: str, params: Mapping[str, Any], brand: str) -> tuple[str, str]:
    amount = _int("points_expiring", params, "points")
    expires_on = texts.format_date(_date("points_expiring", params, "expires_on"), locale)
    # The verb agrees with the numeral ("сгорит 21 балл", "сгорят 12,50 балла"): a plural by the amount.
    text = texts.text(
        locale,
        "sms.points_expiring.text",
        count=minor_decimal(amount),
        points=texts.points(amount, locale),
        date=expires_on,
    )
    return texts.text(locale, "sms.points_expiring.title"), text


def _birthday_bonus(locale: str, params: Mapping[str, Any], brand: str) -> tuple[str, str]:
    amount = _int("birthday_bonus", params, "points")
    expires_on = texts.format_date(_date("birthday_bonus", params, "expires_on"), locale)
    text = texts.text(locale, "sms.birthday_bonus.text", points=texts.points(amount, locale), date=expires_on)
    return texts.text(locale, "sms.birthday_bonus.title"), text


def _otp(locale: str, params: Mapping[str, Any], brand: str) -> tuple[str, str]:
    code = _str("otp", params, "code")
    minutes = _int("otp", params, "minutes")
    duration = texts.text(locale, "units.minutes", count=minutes, n=minutes)
    text = texts.text(locale, "sms.otp.text", brand=brand, code=code, minutes=duration)
    return texts.text(locale, "sms.otp.title"), text


_SPACES: Final = re.compile(r"[ \t]{2,}")


def substitute_name(text: str, name: str | None) -> str:
    """Put the shopper's name into a marketer's text: only ``{name}`` is replaced, nothing else.

    The text is never passed to ``str.format`` (``{0.__class__}`` in it stays literal text). Without a
    name the placeholder is removed cleanly: ``", {name}"`` goes with its comma (``"Здравствуйте, {name}!"``
    -> ``"Здравствуйте!"``), as does ``"{name}, "``; a bare ``{name}`` goes with one space before it.
    """
    name = " ".join((name or "").split())
    if name:
        return text.replace("{name}", name)
    for pattern in (", {name}", "{name}, ", " {name}", "{name}"):
        text = text.replace(pattern, "")
    return _SPACES.sub(" ", text).strip()


def _campaign(locale: str, params: Mapping[str, Any], brand: str) -> tuple[str, str]:
    body = _param("campaign", params, "text")
    if not isinstance(body, str) or not body.strip():
        raise TemplateError("template 'campaign': 'text' must be a non-empty string")
    name = params.get("name")
    if name is not None and not isinstance(name, str):
        raise TemplateError(f"template 'campaign': 'name' must be a string, not {name!r}")
    return brand, substitute_name(body.strip(), name)


_TEMPLATES: Final[dict[str, _Render]] = {
    "card_link": _card_link,
    "points_earned": _points_earned,
    "tier_upgrade": _tier_upgrade,
    "points_expiring": _points_expiring,
    "birthday_bonus": _birthday_bonus,
    "otp": _otp,
    "campaign": _campaign,
}
TEMPLATES: Final = frozenset(_TEMPLATES)

#: The brand the texts name when the program's is not given (``KARTKA_PASS_ORGANIZATION``'s default).
DEFAULT_BRAND: Final = "Kartka"


def render(
    template: str,
    locale: str,
    params: Mapping[str, Any],
    *,
    opt_out_url: str | None = None,
    brand: str = DEFAULT_BRAND,
) -> Rendered:
    """The text (and push title) of ``template`` in ``locale`` (unknown locales fall back to Russian).

    ``brand`` is the program's name as shoppers know it (the sign-in code and the card link name it).
    ``opt_out_url``, for marketing messages, is appended on a line of its own. Raises
    :class:`TemplateError` for an unknown template or a missing or malformed parameter.
    """
    renderer = _TEMPLATES.get(template)
    if renderer is None:
        raise TemplateError(f"unknown template {template!r}; known: {', '.join(sorted(_TEMPLATES))}")
    language = resolve_locale(locale)
    title, text = renderer(language, params, brand)
    if opt_out_url:
        text = f"{text}\n{texts.text(language, 'sms.opt_out')}: {opt_out_url}"
    return Rendered(text=text, title=title)
