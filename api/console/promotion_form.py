"""The promotion editor's form, both ways: what a person typed → the promotion object the admin API
takes, and a stored promotion → the form's fields to edit it again.

Each input is named by the object's own dotted path (``benefit.percent_bp``, ``when.hours.from``), so
an error of the domain's validation (:func:`engine.promotions.model.parse_promotion` names the field at
fault) lands next to the input it is about. This module only reads numbers and dates as people type
them (``12,50`` money, ``30`` per cent, a local date and time); every rule of what a promotion may be
stays in the domain.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import msgspec

from engine.promotions.model import Promotion, parse_promotion
from engine.promotions.store import flatten
from kartka.errors import DomainError

Kind = Literal["text", "int", "money", "points", "percent", "factor", "list", "check", "checks", "datetime", "days"]
Form = dict[str, Any]
"""Input name → what was typed: a string, or a list of strings for a group of checkboxes."""

BENEFIT_TYPES: Final = (
    "percent_off",
    "amount_off",
    "fixed_price",
    "cart_amount_off",
    "n_for_m",
    "nth_percent",
    "bundle",
    "points_fixed",
    "points_per_amount",
    "points_percent",
    "points_multiplier",
    "no_redeem",
)
#: The fields of each benefit type (``specs/promotions.md``, "Benefits"); the editor shows only these.
BENEFIT_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "percent_off": ("lines", "percent_bp", "max_units", "pick"),
    "amount_off": ("lines", "amount"),
    "fixed_price": ("lines", "price"),
    "cart_amount_off": ("amount",),
    "n_for_m": ("lines", "n", "m"),
    "nth_percent": ("lines", "n", "percent_bp"),
    "bundle": ("trigger", "target", "percent_bp"),
    "points_fixed": ("points", "expires_in_days"),
    "points_per_amount": ("lines", "points", "per", "expires_in_days"),
    "points_percent": ("lines", "rate_bp", "expires_in_days"),
    "points_multiplier": ("lines", "factor_bp"),
    "no_redeem": ("lines",),
}
SELECTORS: Final = ("lines", "trigger", "target")
SELECTOR_PARTS: Final = ("skus", "categories", "brands")
BENEFIT_KINDS: Final[dict[str, Kind]] = {
    "percent_bp": "percent",
    "max_units": "int",
    "pick": "text",
    "amount": "money",
    "price": "money",
    "n": "int",
    "m": "int",
    "points": "points",
    "per": "money",
    "rate_bp": "percent",
    "factor_bp": "factor",
    "expires_in_days": "int",
}
CHANNELS: Final = ("pos", "online", "app")
WEEKDAYS: Final = ("1", "2", "3", "4", "5", "6", "7")


def _selector(prefix: str) -> dict[str, Kind]:
    return {f"{prefix}.{part}": "list" for part in SELECTOR_PARTS}


#: Every input of the editor outside the benefit's own, by its path in the promotion object.
FIELDS: Final[dict[str, Kind]] = {
    "id": "text",
    "title.ru": "text",
    "title.en": "text",
    "audience.tiers": "checks",
    "audience.personal": "check",
    "audience.segments": "list",
    "audience.exclude_segments": "list",
    "where.stores": "list",
    "where.channels": "checks",
    "when.starts_at": "datetime",
    "when.ends_at": "datetime",
    "when.weekdays": "days",
    "when.hours.from": "text",
    "when.hours.to": "text",
    "condition.min_subtotal": "money",
    "condition.min_qty": "int",
    **_selector("condition.lines"),
    "group": "text",
    "priority": "int",
    "limits.per_customer.count": "int",
    "limits.per_customer.days": "int",
    "limits.per_order": "int",
    "limits.budget.discount": "money",
    "limits.budget.points": "points",
    "limits.budget.count": "int",
    "messages.near_miss.ru": "text",
    "messages.near_miss.en": "text",
    "messages.applied.ru": "text",
    "messages.applied.en": "text",
    "benefit.type": "text",
    **{f"benefit.{name}": kind for name, kind in BENEFIT_KINDS.items()},
    **{name: kind for selector in SELECTORS for name, kind in _selector(f"benefit.{selector}").items()},
}
_SCALE: Final[dict[str, int]] = {"money": 2, "points": 2, "percent": 2, "factor": 4}
"""Decimal places a person types: money and points in hundredths, per cent in basis points, a
multiplier in ten-thousandths (``2`` is 20000: double points)."""


class FormErrors(Exception):
    """What could not be read or what the domain refused, by input name (``""``: the form as a whole)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def read(data: Mapping[str, Any] | Any) -> Form:
    """The editor's inputs from a submitted form (a multi-dict: ``getall`` for checkbox groups)."""
    form: Form = {}
    for name, kind in FIELDS.items():
        if kind in ("checks", "days"):
            form[name] = [str(v) for v in data.getall(name, [])] if hasattr(data, "getall") else data.get(name, [])
        else:
            value = data.get(name)
            form[name] = str(value).strip() if value is not None else ""
    return form


def promotion_of(form: Form, zone: ZoneInfo, message: Callable[[str], str]) -> Promotion:
    """The promotion the form describes, or :class:`FormErrors`: first what could not be read as a
    number or a date (``message(key)`` says it in the person's language), then the domain's verdict."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {}
    kind_of = form.get("benefit.type") or ""
    wanted = BENEFIT_FIELDS.get(kind_of, ())
    for name, kind in FIELDS.items():
        raw = form.get(name)
        if name == "benefit.type" or not raw:
            continue
        if name.startswith("benefit."):
            field = name.split(".")[1]
            if field not in wanted:
                continue
        try:
            value = typed(raw, kind, zone)
        except ValueError:
            errors[name] = message(f"pf.bad.{kind}")
            continue
        _put(body, name, value)
    if errors:
        raise FormErrors(errors)
    if kind_of:
        benefit = body.setdefault("benefit", {})
        benefit["type"] = kind_of
        for selector in SELECTORS:
            if selector in wanted:
                benefit.setdefault(selector, {})
    try:
        return parse_promotion(body)
    except DomainError as exc:
        raise FormErrors({input_of(exc.field): said(exc)}) from None


def said(exc: DomainError) -> str:
    """The domain's message without the field it names first (it is shown beside that field)."""
    prefix = f"{exc.field}: "
    return exc.message.removeprefix(prefix) if exc.field else exc.message


def input_of(field: str | None) -> str:
    """The input an error of the domain is about: ``benefit.lines.skus.0`` → ``benefit.lines.skus``,
    ``title`` → ``title.ru``, ``limits.per_customer`` → its first input; ``""`` when none is."""
    if not field:
        return ""
    field = re.sub(r"(\.\d+)+$", "", field)
    if field in FIELDS:
        return field
    deeper = next((name for name in FIELDS if name.startswith(f"{field}.")), None)
    if deeper is not None:
        return deeper
    while "." in field:
        field = field.rsplit(".", 1)[0]
        if field in FIELDS:
            return field
    return ""


def form_of(promotion: Promotion, zone: ZoneInfo) -> Form:
    """The editor's inputs for a stored promotion (the inverse of :func:`promotion_of`)."""
    flat = flatten(msgspec.to_builtins(promotion))
    form: Form = {}
    for name, kind in FIELDS.items():
        form[name] = shown(name, flat.get(name), zone, kind=kind)
    form["benefit.type"] = promotion.benefit.__struct_config__.tag
    return form


def shown(name: str, value: Any, zone: ZoneInfo, *, kind: Kind | None = None) -> Any:  # noqa: PLR0911 - one per kind
    """A value of the promotion object as the editor writes it (``3000`` basis points → ``30``); a
    list for checkbox groups, else text."""
    kind = kind or FIELDS.get(name, "text")
    if kind in ("checks", "days"):
        return [str(v) for v in value or ()]
    if value is None or value in ([], {}):
        return ""
    if kind == "check":
        return "yes" if value else ""
    if kind == "list":
        return ", ".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
    if kind in _SCALE and isinstance(value, int):
        return _decimal(value, _SCALE[kind])
    if kind == "datetime":
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M")
    return str(value)


def typed(raw: Any, kind: Kind, zone: ZoneInfo) -> Any:  # noqa: PLR0911 - one per kind
    """What a person typed into an input of ``kind``, as the promotion object holds it; ValueError when
    it is not a number or date at all."""
    if kind == "checks":
        return [str(v) for v in raw]
    if kind == "days":
        return [int(v) for v in raw]
    if kind == "check":
        return raw == "yes"
    if kind == "int":
        if not re.fullmatch(r"[0-9]{1,12}", raw):
            raise ValueError(raw)
        return int(raw)
    if kind == "list":
        return [part.strip() for part in raw.split(",") if part.strip()]
    if kind in _SCALE:
        return scaled(raw, _SCALE[kind])
    if kind == "datetime":
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        return moment.isoformat()
    return raw


def scaled(text: str, places: int) -> int:
    """``12,50`` with 2 places → 1250; more places than allowed, or no number, is a ValueError."""
    compact = re.sub(r"[\s\u00a0\u202f]", "", text).replace(",", ".")
    if not re.fullmatch(r"[0-9]{1,12}(\.[0-9]+)?", compact):
        raise ValueError(text)
    try:
        scaled = Decimal(compact).scaleb(places)
    except InvalidOperation:
        raise ValueError(text) from None
    if scaled != scaled.to_integral_value():
        raise ValueError(text)
    return int(scaled)


def _decimal(value: int, places: int) -> str:
    whole, part = divmod(value, 10**places)
    if not part:
        return str(whole)
    digits = str(part).rjust(places, "0")
    return f"{whole}.{digits.rstrip('0') if places > 2 else digits}"


def _put(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        body = body.setdefault(part, {})
    body[leaf] = value
