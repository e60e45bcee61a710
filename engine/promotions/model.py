"""The promotion object, exactly as clients send and read it (``specs/promotions.md``).

msgspec Structs, unknown fields rejected; money in minor units, points in hundredths, rates in basis
points, times RFC 3339 with an offset. Checks that types cannot express (``n > m``, well-formed
hours, ...) run in ``__post_init__`` and say which field is at fault as ``field: message``;
:func:`parse_promotion` turns any failure into :class:`InvalidPromotion` naming the dotted path
(``benefit.n``), which the API answers with 422.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from kartka.bounds import Instant, check_instant
from kartka.errors import InvalidInput

Id = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9-]{1,64}$", description="[a-z0-9-]{1,64}")]
Value = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
"""A sku, category, brand, store, tier or segment as the rest of Kartka spells it."""
Values = Annotated[tuple[Value, ...], msgspec.Meta(max_length=1000)]
Money = Annotated[int, msgspec.Meta(ge=0, le=100_000_000_000, description="minor units")]
PositiveMoney = Annotated[int, msgspec.Meta(ge=1, le=100_000_000_000, description="minor units")]
Points = Annotated[int, msgspec.Meta(ge=1, le=10_000_000_000, description="hundredths of a point")]
Rate = Annotated[int, msgspec.Meta(ge=1, le=10_000, description="basis points (100 = 1 %)")]
Count = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]
Days = Annotated[int, msgspec.Meta(ge=1, le=3650)]
Priority = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Language = Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$")]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Texts = Annotated[dict[Language, Text], msgspec.Meta(min_length=1, max_length=50)]
"""One text per language: ``{"ru": "…", "en": "…"}``; a reader gets theirs, else ``en``, else any."""
Channel = Literal["pos", "online", "app"]
Mode = Literal["sequential", "exclusive", "sum", "best"]

DEFAULT_GROUP = "default"
_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_HHMM_END = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"


def text_in(texts: dict[str, str] | None, language: str) -> str | None:
    """The text for ``language``, falling back to English, then to any language given."""
    if not texts:
        return None
    return texts.get(language) or texts.get("en") or next(iter(texts.values()))


def _unique(field: str, values: tuple[Any, ...]) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{field}: lists a value twice")


class _Object(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Every part of a promotion: immutable, strict, and written without its defaults."""


# -- selectors --------------------------------------------------------------------------------


class Selector(_Object, frozen=True):
    """Which cart lines: a line matches when any listed value matches; ``{}`` matches every line.
    Lines on sale never match (seed 003: their price is already the lowest the store accepts)."""

    skus: Values = ()
    categories: Values = ()
    brands: Values = ()

    def __post_init__(self) -> None:
        _unique("skus", self.skus)
        _unique("categories", self.categories)
        _unique("brands", self.brands)

    @property
    def any_line(self) -> bool:
        return not (self.skus or self.categories or self.brands)


# -- benefits (a tagged union on ``type``) -----------------------------------------------------


class _Benefit(_Object, frozen=True, tag_field="type"):
    pass


class PercentOff(_Benefit, frozen=True, tag="percent_off"):
    """``percent_bp`` off each matching unit, at most ``max_units`` of them (the cheapest or dearest)."""

    lines: Selector
    percent_bp: Rate
    max_units: Count | None = None
    pick: Literal["cheapest", "dearest"] = "cheapest"


class AmountOff(_Benefit, frozen=True, tag="amount_off"):
    """``amount`` off each matching unit, never below zero."""

    lines: Selector
    amount: PositiveMoney


class FixedPrice(_Benefit, frozen=True, tag="fixed_price"):
    """Each matching unit costs ``price`` (no effect where it already costs less)."""

    lines: Selector
    price: Money


class CartAmountOff(_Benefit, frozen=True, tag="cart_amount_off"):
    """``amount`` off the cart, spread over the lines not on sale in proportion to what they cost."""

    amount: PositiveMoney


class NForM(_Benefit, frozen=True, tag="n_for_m"):
    """Of every ``n`` matching units the ``n - m`` cheapest are free ("1+1=3": n 3, m 2)."""

    lines: Selector
    n: Annotated[int, msgspec.Meta(ge=2, le=100)]
    m: Annotated[int, msgspec.Meta(ge=1, le=99)]

    def __post_init__(self) -> None:
        if self.m >= self.n:
            raise ValueError("m: must be less than n (of n units the customer pays for m)")


class NthPercent(_Benefit, frozen=True, tag="nth_percent"):
    """Every ``n``-th matching unit gets ``percent_bp`` off: the units make sets of ``n``, dearest first,
    and the cheapest of each full set is the one discounted (as ``n_for_m`` frees the cheapest)."""

    lines: Selector
    n: Annotated[int, msgspec.Meta(ge=2, le=100)]
    percent_bp: Rate


class Bundle(_Benefit, frozen=True, tag="bundle"):
    """One ``target`` unit ``percent_bp`` off for each ``trigger`` unit ("−30% pastry with coffee")."""

    trigger: Selector
    target: Selector
    percent_bp: Rate

    def __post_init__(self) -> None:
        if self.trigger == self.target:
            raise ValueError("target: must differ from trigger")


class PointsFixed(_Benefit, frozen=True, tag="points_fixed"):
    """``points`` for the order."""

    points: Points
    expires_in_days: Days | None = None


class PointsPerAmount(_Benefit, frozen=True, tag="points_per_amount"):
    """``points`` for every full ``per`` of money paid on matching lines ("1 point per 10 roubles")."""

    lines: Selector
    points: Points
    per: PositiveMoney
    expires_in_days: Days | None = None


class PointsPercent(_Benefit, frozen=True, tag="points_percent"):
    """Extra points: ``rate_bp`` of the money paid on matching lines."""

    lines: Selector
    rate_bp: Rate
    expires_in_days: Days | None = None


class PointsMultiplier(_Benefit, frozen=True, tag="points_multiplier"):
    """The tier's accrual on matching lines times ``factor_bp`` (20000 = double points); the extra
    over the tier's own accrual is the benefit."""

    lines: Selector
    factor_bp: Annotated[int, msgspec.Meta(ge=10_001, le=1_000_000, description="10000 = ×1")]


class NoRedeem(_Benefit, frozen=True, tag="no_redeem"):
    """Points cannot pay for matching lines: they leave the base of the redeem cap."""

    lines: Selector


Benefit = (
    PercentOff
    | AmountOff
    | FixedPrice
    | CartAmountOff
    | NForM
    | NthPercent
    | Bundle
    | PointsFixed
    | PointsPerAmount
    | PointsPercent
    | PointsMultiplier
    | NoRedeem
)
DISCOUNTS = (PercentOff, AmountOff, FixedPrice, CartAmountOff, NForM, NthPercent, Bundle)
POINTS = (PointsFixed, PointsPerAmount, PointsPercent, PointsMultiplier)


# -- who, where, when, on what condition -----------------------------------------------------------


class Audience(_Object, frozen=True):
    """Who may get it; ``{}`` is every card holder. All given parts must hold."""

    tiers: Values = ()
    personal: bool = False
    """Only customers holding a personal offer of this promotion."""
    segments: Values | None = None
    """The customer is in at least one of these segments."""
    exclude_segments: Values | None = None
    """The customer is in none of these segments."""

    def __post_init__(self) -> None:
        _unique("tiers", self.tiers)
        if self.segments is not None and not self.segments:
            raise ValueError("segments: list at least one segment, or leave it out")
        both = set(self.segments or ()) & set(self.exclude_segments or ())
        if both:
            raise ValueError(f"exclude_segments: {sorted(both)[0]} is also in segments")


class Where(_Object, frozen=True):
    """Where it runs; ``{}`` is every store and channel."""

    stores: Values = ()
    channels: tuple[Channel, ...] = ()

    def __post_init__(self) -> None:
        _unique("stores", self.stores)
        _unique("channels", self.channels)


class Hours(_Object, frozen=True):
    """Local time of day, ``from`` inclusive, ``to`` exclusive; ``22:00``–``02:00`` runs overnight."""

    from_: Annotated[str, msgspec.Meta(pattern=_HHMM)] = msgspec.field(name="from")
    to: Annotated[str, msgspec.Meta(pattern=_HHMM_END)]

    def __post_init__(self) -> None:
        if self.from_ == self.to or (self.from_ == "00:00" and self.to == "24:00"):
            raise ValueError("to: must differ from from (leave hours out for all day)")

    @property
    def minutes(self) -> tuple[int, int]:
        """(from, to) as minutes after local midnight."""
        return _minutes(self.from_), _minutes(self.to)


class When(_Object, frozen=True):
    """When it runs, read in the program's time zone; every given part must hold."""

    starts_at: Instant | None = None
    ends_at: Instant | None = None
    weekdays: Annotated[tuple[Annotated[int, msgspec.Meta(ge=1, le=7)], ...], msgspec.Meta(max_length=7)] = ()
    """ISO weekdays, 1 = Monday."""
    hours: Hours | None = None

    def __post_init__(self) -> None:
        check_instant(self.starts_at, "starts_at")
        check_instant(self.ends_at, "ends_at")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at: must come after starts_at")
        _unique("weekdays", self.weekdays)


class Condition(_Object, frozen=True):
    """What the cart must hold: sums and counts over ``lines`` (all lines when left out), at their
    shelf prices before any promotion."""

    min_subtotal: Money = 0
    min_qty: Count | None = None
    lines: Selector | None = None


# -- limits and texts --------------------------------------------------------------------------


class PerCustomer(_Object, frozen=True):
    """At most ``count`` orders using it per ``days`` (rolling), or ever when ``days`` is left out."""

    count: Count
    days: Days | None = None


class Budget(_Object, frozen=True):
    """Totals over the promotion's life; 0 is no limit."""

    discount: Money = 0
    points: Annotated[int, msgspec.Meta(ge=0, le=10_000_000_000_000)] = 0
    count: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)] = 0

    @property
    def limited(self) -> bool:
        return bool(self.discount or self.points or self.count)


class Limits(_Object, frozen=True):
    per_customer: PerCustomer | None = None
    per_order: Count | None = None
    """At most this many applications in one cart (units discounted, sets of ``n``, bundles, points
    awards: see ``docs/promotions.md``)."""
    budget: Budget | None = None


class Messages(_Object, frozen=True):
    near_miss: Texts | None = None
    """Shown when the cart is one step away ("add one more item and it is free")."""
    applied: Texts | None = None
    """Shown when it applied."""


# -- the promotion and its group -----------------------------------------------------------------


class Promotion(_Object, frozen=True):
    title: Texts
    benefit: Benefit
    id: Id | None = None
    """Given by the client, or generated when it is created."""
    audience: Audience = Audience()
    where: Where = Where()
    when: When = When()
    condition: Condition = Condition()
    group: Id = DEFAULT_GROUP
    priority: Priority = 100
    """Lower runs first within its group."""
    limits: Limits = Limits()
    messages: Messages = Messages()

    def __post_init__(self) -> None:
        if isinstance(self.benefit, CartAmountOff | PointsFixed) and self.limits.per_order not in (None, 1):
            raise ValueError("limits.per_order: can only be 1 for a benefit given once per order")

    def title_in(self, language: str) -> str:
        return text_in(self.title, language) or (self.id or "")


class Group(_Object, frozen=True):
    """An arbitration group: how its promotions combine on a line, and when it runs."""

    mode: Mode = "exclusive"
    priority: Priority = 100
    """Lower runs first; each group sees the prices the earlier groups left."""
    max_discount_bp: Rate | None = None
    """The group's discounts on a line never exceed this share of the line's price."""


DEFAULT_GROUP_RULES = Group()


# -- parsing with the field at fault named -------------------------------------------------------


class InvalidPromotion(InvalidInput):
    code = "invalid-promotion"


_AT = re.compile(r"^(?P<message>.*?)(?: - at (?:`key` in )?`\$(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED = re.compile(r"(?:unknown|missing required) field `([^`]+)`")
_OWN = re.compile(r"^(?P<field>[a-z_.]+): (?P<message>.+)$", re.DOTALL)


def _invalid(exc: msgspec.ValidationError | msgspec.DecodeError) -> InvalidPromotion:
    """The dotted path of the field at fault, from msgspec's ``… - at `$.benefit.n``` and our own
    ``field: message`` texts."""
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any text
    message, path = match["message"], (match["path"] or "").lstrip(".")
    path = re.sub(r"\[(\d+)\]", r".\1", path)
    named = _NAMED.search(message)
    own = _OWN.match(message)
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    elif own:
        path = f"{path}.{own['field']}" if path else own["field"]
        message = own["message"]
    field = path.replace("from_", "from") or "body"
    return InvalidPromotion(f"{field}: {message}", field=field)


def parse_promotion(data: bytes | str | dict[str, Any]) -> Promotion:
    """A promotion from JSON text or decoded JSON, or :class:`InvalidPromotion` naming the field."""
    try:
        if isinstance(data, dict):
            return msgspec.convert(data, Promotion)
        return msgspec.json.decode(data, type=Promotion)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _invalid(exc) from None


def parse_group(data: bytes | str | dict[str, Any]) -> Group:
    """An arbitration group's rules, or :class:`InvalidPromotion` naming the field."""
    try:
        if isinstance(data, dict):
            return msgspec.convert(data, Group)
        return msgspec.json.decode(data, type=Group)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _invalid(exc) from None


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)
