"""The pure evaluation core: cart lines, customer facts, the active promotions and what their limits
still allow in → the priced cart and the reasons out. No I/O, no clock, no database: the same inputs
always give the same answer, which is what preview, backtest, calculate and commit all rely on.

Order of evaluation (``specs/promotions.md``): discount groups by priority, each seeing the prices the
earlier ones left → the redeem cap on what is left (without ``no_redeem`` lines and lines on sale) →
the tier's accrual on money actually paid → points benefits, arbitrated in their groups the same way.

A catalog compiles each promotion once, when it is built (live reload builds a new one per change):
selectors become sets, audience, where and when become flat fields, the benefit a small dispatch code,
and every promotion's place in the order promotions run an integer rank. It indexes the promotions by
the sku, category and brand their benefit is about, so a cart consults only those its lines can
trigger (and the index hands the cart the lines it found for each); the rest of the catalog costs it
nothing. A candidate is then refused in a few field comparisons (audience, where, when, limits,
condition) before any arithmetic. The "any line" promotions are candidates of every cart: for a till's
cart, which asks for no reasons (``explain=False``), those its tier, store, channel and local minute
rule out are worked out once per minute and never reach the cart.

Discounts are worked unit by unit: every unit of a line starts at the line's unit price and carries
what each promotion took off it. A promotion that needs several units (``n_for_m``, ``bundle``,
``nth_percent``, ``cart_amount_off``) spreads its discount over the units that earned it, in
proportion to their price, so returning any one of them later gives back exactly its share. A cart
expands into units only when a discount is to be worked out; points and the redeem cap work by line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from operator import attrgetter, itemgetter
from zoneinfo import ZoneInfo

from engine.promotions.model import (
    DEFAULT_GROUP,
    DEFAULT_GROUP_RULES,
    AmountOff,
    Benefit,
    Bundle,
    CartAmountOff,
    FixedPrice,
    Group,
    NForM,
    NoRedeem,
    NthPercent,
    PercentOff,
    PointsFixed,
    PointsMultiplier,
    PointsPerAmount,
    PointsPercent,
    Promotion,
    Selector,
    text_in,
)
from engine.promotions.shapes import (
    NOTHING_USED,
    Award,
    Facts,
    NotApplied,
    Note,
    Outcome,
    PricedLine,
    Used,
)
from kartka.texts import format_points, text
from wallet.money import BP, allocate, share_floor, share_round
from wallet.pricing import AppliedPromotion, CartLine

# -- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Active:
    """One active promotion revision; ``seq`` breaks priority ties (the earlier created first)."""

    promotion: Promotion
    revision: int
    seq: int
    id: str = field(init=False)

    def __post_init__(self) -> None:
        assert self.promotion.id is not None, "an active promotion has an id"
        object.__setattr__(self, "id", self.promotion.id)


def matches(selector: Selector, line: CartLine) -> bool:
    """Any listed value matches; ``{}`` matches every line; lines on sale never match."""
    if line.on_sale:
        return False
    if selector.any_line:
        return True
    return (
        line.sku in selector.skus
        or (line.category is not None and line.category in selector.categories)
        or (line.brand is not None and line.brand in selector.brands)
    )


# -- the compiled catalog ------------------------------------------------------------------------


_NO_VALUES: frozenset[str] = frozenset()


class _Match:
    """A selector compiled: its values as sets (a line is tested in three hash lookups), ``{}`` a flag.
    Compared by identity, so a cart remembers which lines each one matched in a plain dict."""

    __slots__ = ("any", "brands", "categories", "skus")

    def __init__(self, selector: Selector) -> None:
        self.any = selector.any_line
        # Most selectors list one kind of value: the others share one empty set (a set of their own each
        # would be 200 bytes apiece for a cart's line to look into).
        self.skus = frozenset(selector.skus) if selector.skus else _NO_VALUES
        self.categories = frozenset(selector.categories) if selector.categories else _NO_VALUES
        self.brands = frozenset(selector.brands) if selector.brands else _NO_VALUES

    def __call__(self, line: CartLine) -> bool:
        if line.on_sale:
            return False
        return self.any or line.sku in self.skus or line.category in self.categories or line.brand in self.brands


ANY_LINE = Selector()
_ANY = _Match(ANY_LINE)

# The benefit as a dispatch code (one integer comparison instead of a chain of isinstance checks).
_PERCENT, _AMOUNT, _FIXED, _CART, _N_FOR_M, _NTH, _BUNDLE, _NO_REDEEM = range(8)
_P_FIXED, _P_PER, _P_PERCENT, _P_MULTIPLIER = range(10, 14)
_KIND: dict[type, int] = {
    PercentOff: _PERCENT,
    AmountOff: _AMOUNT,
    FixedPrice: _FIXED,
    CartAmountOff: _CART,
    NForM: _N_FOR_M,
    NthPercent: _NTH,
    Bundle: _BUNDLE,
    NoRedeem: _NO_REDEEM,
    PointsFixed: _P_FIXED,
    PointsPerAmount: _P_PER,
    PointsPercent: _P_PERCENT,
    PointsMultiplier: _P_MULTIPLIER,
}
_NEAR_KINDS = frozenset({_N_FOR_M, _NTH, _BUNDLE})
"""Benefits that can be one unit short of another set or bundle."""
_ORDER = attrgetter("order")
_OFF = itemgetter(1)
_RANK = attrgetter("rank")


class _Rule:
    """One active promotion compiled once per catalog: everything a cart asks of it, as flat fields."""

    __slots__ = (
        "active",
        "benefit",
        "budget_count",
        "budget_discount",
        "budget_points",
        "channels",
        "cond_lines",
        "conditional",
        "ends",
        "everyone",
        "exclude",
        "expires",
        "free",
        "group",
        "group_name",
        "hours",
        "id",
        "kind",
        "limited",
        "lines",
        "min_qty",
        "min_subtotal",
        "notes",
        "order",
        "per_customer",
        "per_order",
        "personal",
        "promotion",
        "propose",
        "rank",
        "revision",
        "segments",
        "starts",
        "stores",
        "target",
        "tiers",
        "timeless",
        "titles",
        "trigger",
        "weekdays",
    )

    def __init__(self, active: Active, group: Group, match: Callable[[Selector], _Match]) -> None:
        p = active.promotion
        benefit: Benefit = p.benefit
        self.active, self.promotion, self.benefit = active, p, benefit
        self.id, self.revision = active.id, active.revision
        self.kind = _KIND[type(benefit)]
        self.propose: Callable[[_Rule, Benefit, _Cart, list[int], Set], Proposal] = _PROPOSE.get(
            self.kind, _propose_nothing
        )
        """The discount's proposal (the catalog is built after the module, so the table is there)."""
        self.group = group
        self.order = (group.priority, p.group, p.priority, active.seq)
        """Groups by priority (ties by name), then the group's members by priority, the earlier first."""
        self.rank = 0
        """Its place in ``order`` among the catalog's promotions (an integer sorts faster than a tuple)."""
        self.group_name = p.group
        lines = getattr(benefit, "lines", None)
        self.lines = match(lines) if isinstance(lines, Selector) else _ANY
        self.trigger = match(benefit.trigger) if isinstance(benefit, Bundle) else _ANY
        self.target = match(benefit.target) if isinstance(benefit, Bundle) else _ANY
        self.expires: int | None = getattr(benefit, "expires_in_days", None)
        self.titles: dict[str, str] = {}
        """Its title by language, as receipts name it (worked out on first use)."""
        self.notes: dict[tuple[str, str, str], Note] = {}
        """Its near-miss notes that say no amount, by (text, language, currency), written on first use."""

        audience = p.audience
        self.tiers = frozenset(audience.tiers) if audience.tiers else None
        self.personal = audience.personal
        self.segments = frozenset(audience.segments) if audience.segments is not None else None
        self.exclude = frozenset(audience.exclude_segments) if audience.exclude_segments else None
        self.everyone = self.tiers is None and not self.personal and self.segments is None and self.exclude is None
        self.stores = frozenset(p.where.stores) if p.where.stores else None
        self.channels = frozenset(p.where.channels) if p.where.channels else None
        when = p.when
        self.starts, self.ends = when.starts_at, when.ends_at
        self.weekdays = frozenset(when.weekdays) if when.weekdays else None
        self.hours = when.hours.minutes if when.hours is not None else None
        self.timeless = self.starts is None and self.ends is None and self.weekdays is None and self.hours is None

        condition = p.condition
        self.min_subtotal, self.min_qty = condition.min_subtotal, condition.min_qty
        self.conditional = condition.min_subtotal != 0 or condition.min_qty is not None
        self.cond_lines = match(condition.lines) if condition.lines is not None else None
        """``None``: every line, on sale or not."""

        limits = p.limits
        self.per_order = limits.per_order
        self.per_customer = limits.per_customer.count if limits.per_customer is not None else None
        budget = limits.budget
        self.budget_discount = budget.discount if budget is not None else 0
        self.budget_points = budget.points if budget is not None else 0
        self.budget_count = budget.count if budget is not None else 0
        self.limited = self.per_customer is not None or bool(
            self.budget_discount or self.budget_points or self.budget_count
        )
        self.free = (
            self.everyone
            and self.stores is None
            and self.channels is None
            and self.timeless
            and not self.limited
            and not self.conditional
        )
        """Nothing to check: it runs on every cart it is a candidate of."""

    def title(self, language: str) -> str:
        found = self.titles.get(language)
        if found is None:
            found = self.titles[language] = self.promotion.title_in(language)
        return found

    def exhausted(self, used: Used) -> bool:
        return (
            (self.per_customer is not None and used.customer >= self.per_customer)
            or bool(self.budget_count and used.orders >= self.budget_count)
            or bool(self.budget_discount and used.discount >= self.budget_discount)
            or bool(self.budget_points and used.points >= self.budget_points)
        )

    def refused_anywhere(self, tier: str, store: str | None, channel: str, local: tuple[int, int]) -> bool:
        """Refused by what every cart of one tier, store, channel and local minute shares (the tiers,
        where, the weekdays and hours of ``when``)."""
        if (self.tiers is not None and tier not in self.tiers) or (
            (self.stores is not None and store not in self.stores)
            or (self.channels is not None and channel not in self.channels)
        ):
            return True
        return not _at_local(self, *local)

    def in_audience(self, facts: Facts) -> bool:
        return not (
            (self.tiers is not None and facts.tier not in self.tiers)
            or (self.personal and self.id not in facts.offers)
            or (self.segments is not None and self.segments.isdisjoint(facts.segments))
            or (self.exclude is not None and not self.exclude.isdisjoint(facts.segments))
        )


class Catalog:
    """The active promotions and groups, each promotion compiled once and indexed by what a cart line
    can match, so a cart consults only the promotions its lines could trigger. Immutable: a change
    builds a new one."""

    def __init__(
        self,
        promotions: Iterable[Active] = (),
        groups: Mapping[str, Group] | None = None,
        *,
        zone: ZoneInfo | None = None,
    ) -> None:
        self.promotions: tuple[Active, ...] = tuple(sorted(promotions, key=lambda a: a.seq))
        self.by_id: dict[str, Active] = {a.id: a for a in self.promotions}
        self.groups: dict[str, Group] = {DEFAULT_GROUP: DEFAULT_GROUP_RULES, **(groups or {})}
        self.zone = zone or ZoneInfo("UTC")
        self.says_applied = any(a.promotion.messages.applied for a in self.promotions)
        """Whether any promotion has a text for the cart it applied to."""
        self.needs_segments = any(
            a.promotion.audience.segments is not None or a.promotion.audience.exclude_segments is not None
            for a in self.promotions
        )
        """Whether any promotion is aimed at saved segments (else no cart need ask for its customer's)."""
        compiled: dict[Selector, _Match] = {}

        def match(selector: Selector) -> _Match:
            found = compiled.get(selector)
            if found is None:
                found = compiled[selector] = _Match(selector)
            return found

        self._rules = tuple(_Rule(a, self.group(a.promotion.group), match) for a in self.promotions)
        for rank, rule in enumerate(sorted(self._rules, key=_ORDER)):
            rule.rank = rank
        self._index = {rule.id: n for n, rule in enumerate(self._rules)}
        self._titles: dict[str, dict[str, str]] = {}
        """Language → promotion id → title, filled as receipts ask."""
        self._any: tuple[int, ...] = ()
        index: dict[str, dict[str, list[int]]] = {"sku": {}, "category": {}, "brand": {}}
        anywhere: list[int] = []
        paired: set[int] = set()
        for n, rule in enumerate(self._rules):
            selectors = _selectors(rule.promotion)
            if not selectors or any(s.any_line for s in selectors):
                anywhere.append(n)
                continue
            if len(selectors) > 1:
                paired.add(n)
            for kind, value in {key for s in selectors for key in _keys(s)}:
                index[kind].setdefault(value, []).append(n)
        self._any = tuple(anywhere)
        self._any_rules = tuple(self._rules[n] for n in anywhere)
        self._any_limited = tuple(n for n in anywhere if self._rules[n].limited)
        self._any_personal = any(self._rules[n].personal for n in anywhere)
        self._asks = any(rule.limited or rule.personal for rule in self._rules)
        """Whether a cart can meet a promotion with limits to count or a personal one (most catalogs: a few)."""
        self._found_by = [None if n in paired else rule.lines for n, rule in enumerate(self._rules)]
        """The selector the index finds each promotion by; None for a bundle, whose line the index finds
        could be its trigger's or its target's."""
        self._by_sku = {k: tuple(v) for k, v in index["sku"].items()}
        self._by_category = {k: tuple(v) for k, v in index["category"].items()}
        self._by_brand = {k: tuple(v) for k, v in index["brand"].items()}
        self._last: tuple[Sequence[CartLine] | None, list[int], dict[_Match, list[int]]] = (None, [], {})
        """What the index found for the last cart (the cart held, so ``is`` cannot match a new one at its
        address)."""
        self._minute: tuple[int, tuple[int, int] | None, dict[tuple[str, str | None, str], tuple[int, ...]]] = (
            -1,
            None,
            {},
        )
        """The current minute since the epoch, its local (weekday, minute) if the whole minute shares
        one, and per (tier, store, channel) the "any line" promotions that do not refuse every cart then."""

    def __len__(self) -> int:
        return len(self.promotions)

    def group(self, name: str) -> Group:
        return self.groups.get(name, DEFAULT_GROUP_RULES)

    def title(self, promotion_id: str, language: str) -> str | None:
        """A promotion's title in ``language`` (as receipts name it), or None for one not in the catalog."""
        titles = self._titles.get(language)
        if titles is None:
            titles = self._titles[language] = {}
        found = titles.get(promotion_id)
        if found is None:
            index = self._index.get(promotion_id)
            if index is None:
                return None
            found = titles[promotion_id] = self._rules[index].title(language)
        return found

    def candidates(self, lines: Sequence[CartLine]) -> list[Active]:
        """The promotions some line of the cart could trigger, in creation order."""
        return [rule.active for rule in self._candidates(lines)]

    def state_needed(self, lines: Sequence[CartLine]) -> tuple[list[Active], bool]:
        """What pricing this cart needs to know of its customer: the candidates with limits to count, and
        whether any is personal (the customer's offers decide it)."""
        if not self._asks:
            return [], False
        rules, found = self._rules, self._lookup(lines)[0]
        # The "any line" promotions are candidates of every cart: their part is worked out once.
        limited = [n for n in found if rules[n].limited]
        if self._any_limited:
            limited = sorted((*limited, *self._any_limited))
        return [rules[n].active for n in limited], self._any_personal or any(rules[n].personal for n in found)

    def _candidates(self, lines: Sequence[CartLine]) -> list[_Rule]:
        rules, found = self._rules, self._lookup(lines)[0]
        return [rules[n] for n in sorted((*found, *self._any))] if self._any else [rules[n] for n in found]

    def _lookup(self, lines: Sequence[CartLine]) -> tuple[list[int], dict[_Match, list[int]]]:
        """The promotions the index finds for the cart's lines (their places in the catalog, in order),
        and for those it finds by their one selector, the lines that selector matches (what
        ``_Cart.hits`` would work out again)."""
        rules = self._rules
        if not rules:
            return [], {}
        last = self._last
        if last[0] is lines:  # the same cart again: calculate asks before it prices (limits, offers)
            return last[1], last[2]
        per: dict[int, list[int]] = {}
        by_sku, by_category, by_brand = self._by_sku, self._by_category, self._by_brand
        for i, line in enumerate(lines):
            if line.on_sale:
                continue
            for hit in (by_sku.get(line.sku), by_category.get(line.category), by_brand.get(line.brand)):  # type: ignore[arg-type]
                if hit:
                    for n in hit:
                        got = per.get(n)
                        if got is None:
                            per[n] = [i]
                        elif got[-1] != i:  # a line found by its sku and its brand counts once
                            got.append(i)
        found = sorted(per)
        hits: dict[_Match, list[int]] = {}
        found_by = self._found_by
        for n, got in per.items():
            match = found_by[n]
            if match is not None:
                hits[match] = got
        self._last = (lines, found, hits)  # one assignment: safe when carts are priced in threads
        return found, hits

    def _allowed(self, facts: Facts) -> tuple[int, ...] | None:
        """The "any line" promotions that the tier, store, channel and minute do not refuse (worked out
        once per minute for each), or None when the minute has no one local time."""
        at = facts.at
        if not self._any:
            return ()
        if at.tzinfo is None:
            return None
        minute = (at - _EPOCH) // _ONE_MINUTE
        memo = self._minute
        if memo[0] != minute:
            memo = self._minute = (minute, _local_minute(minute, self.zone), {})
        local = memo[1]
        if local is None:
            return None
        key = (facts.tier, facts.store, facts.channel)
        found = memo[2].get(key)
        if found is None:
            found = memo[2][key] = tuple(
                n
                for n, rule in zip(self._any, self._any_rules, strict=True)
                if not rule.refused_anywhere(facts.tier, facts.store, facts.channel, local)
            )
        return found


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MINUTE = timedelta(minutes=1)


def _local_minute(minute: int, zone: ZoneInfo) -> tuple[int, int] | None:
    """(ISO weekday, minutes after local midnight) of a minute since the epoch, or None when its
    seconds do not all share them (an offset in seconds, or a change of offset within the minute)."""
    start = _EPOCH + minute * _ONE_MINUTE
    local = start.astimezone(zone)
    offset = local.utcoffset()
    if offset is None or offset % _ONE_MINUTE or (start + timedelta(seconds=59)).astimezone(zone).utcoffset() != offset:
        return None
    return local.isoweekday(), local.hour * 60 + local.minute


EMPTY_CATALOG = Catalog()


def _selectors(promotion: Promotion) -> list[Selector]:
    benefit = promotion.benefit
    if isinstance(benefit, Bundle):
        return [benefit.trigger, benefit.target]
    lines = getattr(benefit, "lines", None)
    return [lines] if isinstance(lines, Selector) else []


def _keys(selector: Selector) -> Iterable[tuple[str, str]]:
    yield from (("sku", v) for v in selector.skus)
    yield from (("category", v) for v in selector.categories)
    yield from (("brand", v) for v in selector.brands)


# -- outputs -----------------------------------------------------------------------------------


Applied = AppliedPromotion
"""What one promotion revision gave on one line (the port's own shape: no copying on the way out)."""


# -- evaluation --------------------------------------------------------------------------------


class _Cart:
    """One cart being priced: its lines, its units once a discount needs them, what each promotion
    gave, and which lines and units each compiled selector matched (worked out once per cart)."""

    __slots__ = ("_hits", "_totals", "_units", "first", "given", "left", "lines", "points", "price", "unit_line")

    def __init__(self, lines: Sequence[CartLine], hits: dict[_Match, list[int]] | None = None) -> None:
        self.lines = lines
        self.unit_line: list[int] = []
        self.price: list[int] = []
        """Each unit's current price."""
        self.first: list[int] = []
        """Each line's first unit (a line's units are consecutive), then the number of units: line
        ``i``'s units are ``range(first[i], first[i + 1])``."""
        self.left: list[int] = []
        """Each line's price after the discounts so far (the sum of its units')."""
        self.given: dict[str, dict[int, int]] = {}
        """Promotion id → line → discount."""
        self.points: dict[str, dict[int, int]] = {}
        self._hits: dict[_Match, list[int]] = {} if hits is None else hits
        """Shared with the catalog's memo of this cart's lines: what a selector matches depends on them alone."""
        self._units: dict[_Match, list[int]] = {}
        self._totals: tuple[int, int] | None = None

    def totals(self) -> tuple[int, int]:
        """The whole cart's subtotal and number of units, on sale or not (a condition without lines)."""
        if self._totals is None:
            self._totals = (
                sum([line.qty * line.unit_price for line in self.lines]),
                sum([line.qty for line in self.lines]),
            )
        return self._totals

    def expand(self) -> None:
        """Units, each at its line's unit price (once per cart, and only when a discount is worked out)."""
        if self.first or not self.lines:
            return
        unit_line, price, first, left = self.unit_line, self.price, self.first, self.left
        for i, line in enumerate(self.lines):
            first.append(len(unit_line))
            qty, unit_price = line.qty, line.unit_price
            unit_line.extend([i] * qty)
            price.extend([unit_price] * qty)
            left.append(qty * unit_price)
        first.append(len(unit_line))

    def hits(self, match: _Match) -> list[int]:
        """The lines ``match`` matches, in order."""
        found = self._hits.get(match)
        if found is None:
            if match.any:
                found = [i for i, line in enumerate(self.lines) if not line.on_sale]
            else:
                skus, categories, brands = match.skus, match.categories, match.brands
                found = [
                    i
                    for i, line in enumerate(self.lines)
                    if not line.on_sale and (line.sku in skus or line.category in categories or line.brand in brands)
                ]
            self._hits[match] = found
        return found

    def units(self, match: _Match) -> list[int]:
        """The units of the lines ``match`` matches, in order."""
        found = self._units.get(match)
        if found is None:
            if not self.first:
                self.expand()
            first = self.first
            found = self._units[match] = []
            for i in self._hits.get(match) or self.hits(match):
                found.extend(range(first[i], first[i + 1]))
        return found


class _Clock:
    """The cart's moment in the program's zone, worked out once and only if a promotion has hours or
    weekdays."""

    __slots__ = ("_local", "at", "zone")

    def __init__(self, at: datetime, zone: ZoneInfo) -> None:
        self.at, self.zone = at, zone
        self._local: tuple[int, int] | None = None

    def local(self) -> tuple[int, int]:
        """(ISO weekday, minutes after local midnight)."""
        if self._local is None:
            local = self.at.astimezone(self.zone)
            self._local = (local.isoweekday(), local.hour * 60 + local.minute)
        return self._local


def evaluate(
    lines: Sequence[CartLine],
    facts: Facts,
    catalog: Catalog,
    used: Mapping[str, Used] | None = None,
    *,
    redeem_cap_bp: int = 7_000,
    available_points: int = 0,
    requested_points: int = 0,
    explain: bool = True,
) -> Outcome:
    """The priced cart. ``used`` says what each limited promotion has counted so far (absent: none).
    ``explain=False`` (pricing a till's cart) leaves ``not_applied`` empty: only preview shows which
    promotions did not apply and why."""
    used = used or {}
    found, hits = catalog._lookup(lines)
    allowed = None if explain else catalog._allowed(facts)
    if allowed is None:
        candidates = catalog._candidates(lines)
    else:  # no reasons to give: the "any line" promotions refused by tier, where or time are left out
        rules = catalog._rules  # (they refuse every cart of the minute alike, none with a near-miss text)
        candidates = [rules[n] for n in sorted((*found, *allowed))] if allowed else [rules[n] for n in found]
    cart = _Cart(lines, hits)
    runnable, not_applied, near = _screen(catalog, candidates, cart, facts, used, explain=explain)

    groups = _grouped(runnable) if runnable else []
    for group, discounts, _ in groups:
        if discounts:
            _run_discount_group(cart, group, discounts, used)

    if cart.left:  # a discount group expanded the cart: its lines' prices are kept up to date
        left = cart.left
        discount = [line.qty * line.unit_price - left[i] for i, line in enumerate(lines)]
    else:
        left = [line.qty * line.unit_price for line in lines]
        discount = [0] * len(lines)
    open_lines = [i for i, line in enumerate(lines) if not line.on_sale]
    base_lines = _redeemable(cart, runnable, open_lines)
    redeem_base = sum(left[i] for i in base_lines)
    max_redeem = max(0, min(available_points, share_floor(redeem_base, redeem_cap_bp)))
    redeem = max(0, min(requested_points, max_redeem))
    paid = list(left)
    if redeem:
        for i, part in zip(base_lines, allocate(redeem, [left[i] for i in base_lines]), strict=True):
            paid[i] -= part
    accrue = share_floor(sum(paid[i] for i in open_lines), facts.rate_bp)

    awards: list[Award] = []
    for group, _, points in groups:
        if points:
            awards.extend(_run_points_group(cart, group, points, paid, facts, used))

    messages, unused = (
        _messages(cart, runnable, facts, paid, explain=explain, texts=catalog.says_applied) if runnable else ([], [])
    )
    not_applied.extend(unused)
    redeemable = set(base_lines)
    if cart.given or cart.points:
        applied = _breakdown(cart, runnable)
        # A line's discount is the sum of what promotions took off it, none of them negative: a line
        # with none off names no first promotion.
        priced = tuple(
            [
                PricedLine(d, _first_discount(applied[i]) if d else None, applied[i], i in redeemable)
                for i, d in enumerate(discount)
            ]
        )
    else:
        priced = tuple([PricedLine(d, None, (), i in redeemable) for i, d in enumerate(discount)])
    return Outcome(
        lines=priced,
        redeem_base=redeem_base,
        max_redeem=max_redeem,
        redeem=redeem,
        accrue=accrue,
        awards=tuple(awards),
        messages=(*messages, *near),
        not_applied=tuple(not_applied),
    )


def _screen(
    catalog: Catalog, candidates: list[_Rule], cart: _Cart, facts: Facts, used: Mapping[str, Used], *, explain: bool
) -> tuple[list[_Rule], list[NotApplied], list[Note]]:
    """The candidates that run on this cart; the others with why not (``explain``), and the near-miss
    texts of those whose condition the cart almost meets."""
    runnable: list[_Rule] = []
    not_applied: list[NotApplied] = []
    near: list[Note] = []
    clock = None
    store, channel = facts.store, facts.channel
    for rule in candidates:
        # Each check is a field or two of the compiled promotion; the cart's own sums come last.
        if rule.free:
            runnable.append(rule)
            continue
        if not rule.everyone and not rule.in_audience(facts):
            reason = "audience"
        elif (rule.stores is not None and store not in rule.stores) or (
            rule.channels is not None and channel not in rule.channels
        ):
            reason = "where"
        elif not rule.timeless and not _runs_at(rule, clock or (clock := _Clock(facts.at, catalog.zone))):
            reason = "when"
        elif rule.limited and rule.exhausted(used.get(rule.id, NOTHING_USED)):
            reason = "limit"
        elif rule.conditional and not _condition_holds(rule, totals := _condition_totals(rule, cart)):
            reason = "condition"
            note = _condition_near_miss(rule, totals, facts)
            if note is not None:
                near.append(note)
        else:
            runnable.append(rule)
            continue
        if explain:
            not_applied.append(NotApplied(rule.id, reason))
    return runnable, not_applied, near


def _grouped(runnable: list[_Rule]) -> list[tuple[Group, list[_Rule], list[_Rule]]]:
    """Groups in the order they run, each with its discounts and its points promotions in the order
    they run."""
    groups: list[tuple[Group, list[_Rule], list[_Rule]]] = []
    name = None
    discounts: list[_Rule] = []
    points: list[_Rule] = []
    for rule in sorted(runnable, key=_RANK):
        if rule.group_name != name:
            name = rule.group_name
            discounts, points = [], []
            groups.append((rule.group, discounts, points))
        if rule.kind < _NO_REDEEM:
            discounts.append(rule)
        elif rule.kind >= _P_FIXED:
            points.append(rule)
    return groups


def _redeemable(cart: _Cart, runnable: list[_Rule], open_lines: list[int]) -> list[int]:
    """Lines points may pay for: not on sale (``open_lines``), and no ``no_redeem`` promotion applies
    to them."""
    barred: set[int] = set()
    for rule in runnable:
        if rule.kind == _NO_REDEEM:
            barred.update(cart.hits(rule.lines))
    return [i for i in open_lines if i not in barred] if barred else open_lines


def _messages(
    cart: _Cart, runnable: list[_Rule], facts: Facts, paid: list[int], *, explain: bool, texts: bool
) -> tuple[list[Note], list[NotApplied]]:
    """Applied and near-miss texts; promotions that found nothing to work on did not apply either.
    ``texts``: whether any promotion of the catalog has an "applied" text (most have none)."""
    messages: list[Note] = []
    unused: list[NotApplied] = []
    if not explain and not (texts and any(rule.promotion.messages.applied for rule in runnable)):
        # A till's cart with no "applied" texts to show: only the near misses of sets and bundles.
        for rule in runnable:
            if rule.kind in _NEAR_KINDS and (note := _benefit_near_miss(rule, cart, facts)) is not None:
                messages.append(note)
        return messages, unused
    gave = {pid for pid, per_line in cart.given.items() if any(per_line.values())}
    gave |= {pid for pid, per_line in cart.points.items() if any(per_line.values())}
    for rule in runnable:
        if rule.kind == _NO_REDEEM:
            continue
        if rule.id in gave:
            said = rule.promotion.messages.applied
            if said:
                messages.append(Note(f"promotion:{rule.id}", text_in(said, facts.language) or ""))
        elif explain and not _could_apply(rule, cart, paid):
            unused.append(NotApplied(rule.id, "condition"))  # else it lost to another of its group
        if rule.kind in _NEAR_KINDS:
            note = _benefit_near_miss(rule, cart, facts)
            if note is not None:
                messages.append(note)
    return messages, unused


def _breakdown(cart: _Cart, runnable: list[_Rule]) -> list[tuple[Applied, ...]]:
    """Per line, what each promotion gave, in the order the promotions are listed."""
    per_line: list[list[Applied]] = [[] for _ in cart.lines]
    all_given, all_points = cart.given, cart.points
    for rule in runnable:
        pid, revision = rule.id, rule.revision
        given, points = all_given.get(pid), all_points.get(pid)
        # A promotion gives money or points, never both, and records no zero: one dict, read in order.
        if points is None:
            if given is not None:
                for i in sorted(given):
                    per_line[i].append(Applied(pid, revision, given[i], 0))
        elif given is None:
            for i in sorted(points):
                per_line[i].append(Applied(pid, revision, 0, points[i]))
        else:
            for i in sorted(given.keys() | points.keys()):
                d, p = given.get(i, 0), points.get(i, 0)
                if d or p:
                    per_line[i].append(Applied(pid, revision, d, p))
    return [tuple(applied) for applied in per_line]


def _first_discount(applied: tuple[Applied, ...]) -> str | None:
    """The first promotion that took money off the line (what a remote engine reports)."""
    for a in applied:
        if a.discount:
            return a.id
    return None


def _could_apply(rule: _Rule, cart: _Cart, paid: list[int]) -> bool:
    """Whether the promotion would have given something on its own (it lost to others if so)."""
    if rule.kind >= _P_FIXED:
        return any(paid[i] > 0 for i in cart.hits(rule.lines))
    cart.expand()
    shelf = [cart.lines[i].unit_price for i in cart.unit_line]
    return any(_propose(rule, cart, shelf, _NONE).values())


# -- who, where, when, on what condition, within which limits ----------------------------------------


def _runs_at(rule: _Rule, clock: _Clock) -> bool:
    at = clock.at
    if rule.starts is not None and at < rule.starts:
        return False
    if rule.ends is not None and at >= rule.ends:
        return False
    if rule.weekdays is None and rule.hours is None:
        return True
    return _at_local(rule, *clock.local())


def _at_local(rule: _Rule, weekday: int, now: int) -> bool:
    """Whether the weekdays and hours allow the local moment."""
    if rule.weekdays is not None and weekday not in rule.weekdays:
        return False
    if rule.hours is not None:
        start, end = rule.hours
        return start <= now < end if start < end else (now >= start or now < end)
    return True


def _condition_totals(rule: _Rule, cart: _Cart) -> tuple[int, int]:
    if rule.cond_lines is None:
        return cart.totals()
    lines = cart.lines
    chosen = cart.hits(rule.cond_lines)
    return sum(lines[i].total for i in chosen), sum(lines[i].qty for i in chosen)


def _condition_holds(rule: _Rule, totals: tuple[int, int]) -> bool:
    """Whether the subtotal and number of units the condition counts meet it."""
    return totals[0] >= rule.min_subtotal and totals[1] >= (rule.min_qty or 0)


# -- discounts ---------------------------------------------------------------------------------


_HALF = BP // 2
Proposal = dict[int, int]
"""Unit → discount."""
Set = set[int] | frozenset[int]
_NONE: frozenset[int] = frozenset()
"""No unit taken yet."""


def _run_discount_group(cart: _Cart, group: Group, members: list[_Rule], used: Mapping[str, Used]) -> None:
    cart.expand()
    if len(members) == 1:  # every mode gives one promotion exactly what it proposes on its own
        rule = members[0]
        proposal = _proposal(cart, cart.price, used, rule, _NONE)  # proposals only read the prices
        if proposal:
            _apply_one(cart, rule.id, proposal, group.max_discount_bp)
        return
    contributions: dict[str, Proposal]
    start = cart.price[:]  # the prices the group found: each mode proposes against these
    mode = group.mode
    if mode in {"exclusive", "best"}:
        contributions = _one_per_unit(members, partial(_proposal, cart, start, used), best=mode == "best")
    elif mode == "sum":
        contributions = {r.id: _proposal(cart, start, used, r, _NONE) for r in members}
        _clip_units(start, contributions)
    else:  # sequential: each applies to the price the previous one left
        contributions = {}
        now = list(start)
        for rule in members:
            contributions[rule.id] = proposal = _proposal(cart, now, used, rule, _NONE)
            for u, d in proposal.items():
                now[u] -= d
    _apply(cart, contributions, group.max_discount_bp)


def _proposal(cart: _Cart, price: list[int], used: Mapping[str, Used], rule: _Rule, taken: Set) -> Proposal:
    """The promotion's proposal, within what its budget has left (the rule and the units taken last:
    a group binds the rest with ``partial``)."""
    proposal = rule.propose(rule, rule.benefit, cart, price, taken)
    if not rule.budget_discount:
        return proposal
    return _scale(proposal, max(0, rule.budget_discount - used.get(rule.id, NOTHING_USED).discount))


def _apply_one(cart: _Cart, pid: str, proposal: Proposal, cap_bp: int | None) -> None:
    """``_apply`` for a group of one promotion."""
    unit_line, left = cart.unit_line, cart.left
    per_line: dict[int, int] = {}
    for u, d in proposal.items():
        if d:
            line = unit_line[u]
            per_line[line] = per_line.get(line, 0) + d
    if not per_line:
        return
    if cap_bp is not None:
        for line, total in per_line.items():
            if total > left[line] * cap_bp // BP:  # share_floor, inlined
                contributions = {pid: proposal}
                _cap_lines(cart, contributions, cap_bp, per_line)  # the cap binds: shrink, then apply
                _apply(cart, contributions, None)
                return
    price = cart.price
    for u, d in proposal.items():
        price[u] -= d
    cart.given[pid] = per_line  # a promotion runs in one group only: its entry is new
    for line, d in per_line.items():
        left[line] -= d


def _apply(cart: _Cart, contributions: dict[str, Proposal], cap_bp: int | None) -> None:  # noqa: PLR0912
    """The group's discounts taken off the units and recorded per line, within the group's cap."""
    unit_line = cart.unit_line
    given: dict[str, dict[int, int]] = {}
    for pid, proposal in contributions.items():
        per_line: dict[int, int] = {}
        for u, d in proposal.items():
            if d:
                line = unit_line[u]
                per_line[line] = per_line.get(line, 0) + d
        if per_line:
            given[pid] = per_line
    left = cart.left
    if cap_bp is not None:
        if len(given) == 1:
            on_line = next(iter(given.values()))
        else:
            on_line = {}
            for per_line in given.values():
                for line, d in per_line.items():
                    on_line[line] = on_line.get(line, 0) + d
        for line, total in on_line.items():
            if total > left[line] * cap_bp // BP:  # share_floor, inlined
                _cap_lines(cart, contributions, cap_bp, on_line)  # the cap binds: shrink, then apply
                _apply(cart, contributions, None)
                return
    price = cart.price
    for proposal in contributions.values():
        for u, d in proposal.items():
            price[u] -= d
    for pid, per_line in given.items():
        cart.given[pid] = per_line  # a promotion runs in one group only: its entry is new
        for line, d in per_line.items():
            left[line] -= d


def _one_per_unit(
    members: list[_Rule], propose: Callable[[_Rule, Set], dict[int, int]], *, best: bool
) -> dict[str, dict[int, int]]:
    """``exclusive`` (``best=False``): in order, each takes what the earlier left untouched; ``best``:
    the promotion giving the most goes first, then the best of the rest on what is left, and so on.
    Every unit that took part in an application (a coffee that made its pastry cheaper) is spent."""
    taken: set[int] = set()
    chosen: dict[str, dict[int, int]] = {}
    if not best:
        for rule in members:
            proposal = propose(rule, taken)
            if any(proposal.values()):
                chosen[rule.id] = proposal
                taken.update(proposal)
        return chosen
    # A proposal that touches none of the units just taken stays what it was: units it did not use are
    # the cheapest or the last in its order, so removing them changes nothing. Only the others are
    # worked out again, which keeps "best" near linear in the number of promotions.
    offers = {}
    for r in members:
        proposal = propose(r, taken)
        offers[r.id] = (r, proposal, sum(proposal.values()))
    while offers:
        rule, proposal, total = max(offers.values(), key=_MOST)  # of equals, the first in the group's order
        del offers[rule.id]
        if not total:
            break
        chosen[rule.id] = proposal
        taken.update(proposal)
        for pid, (other, offered, _) in list(offers.items()):
            if not taken.isdisjoint(offered):
                again = propose(other, taken)
                offers[pid] = (other, again, sum(again.values()))
    return chosen


def _most(offer: tuple[_Rule, dict[int, int], int]) -> tuple[int, int]:
    return offer[2], -offer[0].rank


_MOST = _most


def _clip_units(start: list[int], contributions: dict[str, Proposal]) -> None:
    """No unit below zero: where a sum exceeds a unit's price, each promotion gives up its share."""
    if not _any_over(start, contributions):  # the usual case: nothing to list
        return
    per_unit: dict[int, list[str]] = {}
    for pid, proposal in contributions.items():
        for u, d in proposal.items():
            if d:
                per_unit.setdefault(u, []).append(pid)
    for u, pids in per_unit.items():
        if len(pids) > 1 and sum(contributions[pid][u] for pid in pids) > start[u]:
            for pid, part in zip(pids, allocate(start[u], [contributions[pid][u] for pid in pids]), strict=True):
                contributions[pid][u] = part


def _any_over(start: list[int], contributions: dict[str, Proposal]) -> bool:
    """Whether the promotions' discounts on some unit add up to more than its price."""
    on_unit: dict[int, int] = {}
    for proposal in contributions.values():
        for u, d in proposal.items():
            if d:
                before = on_unit.get(u)
                if before is None:
                    on_unit[u] = d
                elif before + d > start[u]:
                    return True
                else:
                    on_unit[u] = before + d
    return False


def _cap_lines(cart: _Cart, contributions: dict[str, Proposal], cap_bp: int, on_line: dict[int, int]) -> None:
    """A group's discounts on a line (``on_line``, their sums) never exceed ``cap_bp`` of the line's
    price as the group found it; where they would, every contribution on the line shrinks in proportion."""
    unit_line, left = cart.unit_line, cart.left
    for line, total in on_line.items():
        cap = share_floor(left[line], cap_bp)
        if total > cap:  # only then is the line's every contribution listed and shrunk
            entries = [
                (pid, u)
                for pid, proposal in contributions.items()
                for u, d in proposal.items()
                if d and unit_line[u] == line
            ]
            parts = allocate(cap, [contributions[pid][u] for pid, u in entries])
            for (pid, u), part in zip(entries, parts, strict=True):
                contributions[pid][u] = part


def _scale(proposal: Proposal, room: int) -> Proposal:
    """At most ``room`` in all, each unit giving up its share."""
    total = sum(proposal.values())
    if total <= room:
        return proposal
    units = list(proposal)
    return dict(zip(units, allocate(room, [proposal[u] for u in units]), strict=True))


def _spread(discount: int, units: Sequence[int], price: Sequence[int], into: Proposal) -> None:
    """One application's discount over the units that earned it, in proportion to their price."""
    for u, part in zip(units, allocate(discount, [price[u] for u in units]), strict=True):
        into[u] = into.get(u, 0) + part


def _open(cart: _Cart, match: _Match, price: list[int], taken: Set) -> list[int]:
    """The units ``match`` matches that are still to be had: not taken, not already free; in order
    (written out in the proposals that run most)."""
    if taken:
        return [u for u in cart.units(match) if u not in taken and price[u] > 0]
    return [u for u in cart.units(match) if price[u] > 0]


def _dearest_first(units: list[int], price: list[int]) -> list[int]:
    """By price, the dearest first, ties in unit order (a stable sort keeps ``units``' order)."""
    return sorted(units, key=price.__getitem__, reverse=True)


def _propose(rule: _Rule, cart: _Cart, price: list[int], taken: Set) -> Proposal:
    """What the promotion would take off each unit at ``price``, leaving ``taken`` units alone."""
    return rule.propose(rule, rule.benefit, cart, price, taken)


def _propose_nothing(rule: _Rule, benefit: Benefit, cart: _Cart, price: list[int], taken: Set) -> Proposal:
    """Points and ``no_redeem`` take nothing off a unit."""
    return {}


def _percent_off(rule: _Rule, benefit: Benefit, cart: _Cart, price: list[int], taken: Set) -> Proposal:
    assert isinstance(benefit, PercentOff)
    if taken:  # _open, written out
        chosen = [u for u in cart.units(rule.lines) if u not in taken and price[u] > 0]
    else:
        chosen = [u for u in cart.units(rule.lines) if price[u] > 0]
    if benefit.pick == "dearest":  # the dearest first, of equal prices the last unit first
        chosen = sorted(chosen, key=lambda u: (price[u], u), reverse=True)
    else:  # the cheapest first, of equal prices the first unit first
        chosen = sorted(chosen, key=price.__getitem__)
    room = min(benefit.max_units or len(chosen), rule.per_order or len(chosen))
    bp = benefit.percent_bp
    out: Proposal = {}
    for u in chosen[:room]:
        d = (price[u] * bp + _HALF) // BP  # share_round, inlined: this runs for every unit
        if d:  # a unit given nothing stays free for the next
            out[u] = d
    return out


def _amount_off(rule: _Rule, benefit: Benefit, cart: _Cart, price: list[int], taken: Set) -> Proposal:
    """``amount_off`` and ``fixed_price``: so much off each unit, the units given most first."""
    if taken:  # _open, written out
        chosen = [u for u in cart.units(rule.lines) if u not in taken and price[u] > 0]
    else:
        chosen = [u for u in cart.units(rule.lines) if price[u] > 0]
    if isinstance(benefit, AmountOff):
        amount = benefit.amount
        each = [(u, amount if amount < price[u] else price[u]) for u in chosen]
    else:  # a unit already at or below the price is given nothing (it sorts last and is left out)
        assert isinstance(benefit, FixedPrice)
        fixed = benefit.price
        each = [(u, price[u] - fixed) for u in chosen]
    each.sort(key=_OFF, reverse=True)  # the most off first, then in order (the sort is stable)
    return {u: off for u, off in each[: rule.per_order or len(each)] if off > 0}


def _cart_amount_off(rule: _Rule, benefit: Benefit, cart: _Cart, price: list[int], taken: Set) -> Proposal:
    assert isinstance(benefit, CartAmountOff)
    chosen = _open(cart, _ANY, price, taken)
    out: Proposal = {}
    _spread(min(benefit.amount, sum(price[u] for u in chosen)), chosen, price, out)
    return out


def _sets(rule: _Rule, benefit: Benefit, cart: _Cart, price: list[int], taken: Set) -> Proposal:
    """``n_for_m`` and ``nth_percent``: sets of ``n`` units, the dearest first."""
    assert isinstance(benefit, NForM | NthPercent)
    units, n = cart.units(rule.lines), benefit.n
    out: Proposal = {}
    if len(units) < n:  # not one set, whatever is taken (most carts meet a set promotion with one unit)
        return out
    chosen = [u for u in units if u not in taken and price[u] > 0] if taken else [u for u in units if price[u] > 0]
    sets = len(chosen) // n
    if not sets:
        return out
    chosen = _dearest_first(chosen, price)
    for k in range(min(sets, rule.per_order or sets)):
        group = chosen[k * n : (k + 1) * n]
        if isinstance(benefit, NForM):
            value = sum(price[u] for u in group[benefit.m :])
        else:
            value = share_round(price[group[-1]], benefit.percent_bp)
        # _spread, inlined: the sets share no unit, so each unit's part is its first
        for u, part in zip(group, allocate(value, [price[u] for u in group]), strict=True):
            out[u] = part
    return out


def _bundle(rule: _Rule, benefit: Benefit, cart: _Cart, price: list[int], taken: Set) -> Proposal:
    assert isinstance(benefit, Bundle)
    targets = _dearest_first(_open(cart, rule.target, price, taken), price)
    target_set = set(targets)  # a unit matching both serves as a target
    triggers = _dearest_first([u for u in _open(cart, rule.trigger, price, taken) if u not in target_set], price)
    pairs = list(zip(triggers, targets, strict=False))
    out: Proposal = {}
    for trigger, target in pairs[: rule.per_order or len(pairs)]:
        _spread(share_round(price[target], benefit.percent_bp), (trigger, target), price, out)
    return out


_PROPOSE: dict[int, Callable[[_Rule, Benefit, _Cart, list[int], Set], Proposal]] = {
    _PERCENT: _percent_off,
    _AMOUNT: _amount_off,
    _FIXED: _amount_off,
    _CART: _cart_amount_off,
    _N_FOR_M: _sets,
    _NTH: _sets,
    _BUNDLE: _bundle,
}


# -- points ------------------------------------------------------------------------------------


def _run_points_group(
    cart: _Cart, group: Group, members: list[_Rule], paid: list[int], facts: Facts, used: Mapping[str, Used]
) -> list[Award]:
    """Points benefits arbitrated like discounts, over lines and points: ``exclusive`` and ``best``
    give a line at most one of the group's awards; ``sum`` and ``sequential`` add them all."""
    rate_bp = facts.rate_bp
    if len(members) == 1:  # every mode gives one promotion what it proposes on its own (_points inlined)
        rule = members[0]
        chosen = [i for i in cart.hits(rule.lines) if paid[i] > 0]
        if not chosen:
            return []
        weights = [paid[i] for i in chosen]
        total = _points_total(rule, sum(weights), rate_bp, used)
        if not total:
            return []
        cart.points[rule.id] = {i: p for i, p in zip(chosen, allocate(total, weights), strict=True) if p}
        return [Award(rule.id, rule.revision, total, rule.expires)]
    if group.mode in ("exclusive", "best"):
        results = _one_per_unit(members, partial(_points, cart, paid, rate_bp, used), best=group.mode == "best")
    else:
        results = {
            r.id: proposal for r in members if any((proposal := _points(cart, paid, rate_bp, used, r, _NONE)).values())
        }
    awards = []
    for rule in members:
        won = results.get(rule.id)
        if won is not None:
            cart.points[rule.id] = {i: p for i, p in won.items() if p}
            awards.append(Award(rule.id, rule.revision, sum(won.values()), rule.expires))
    return awards


def _points(
    cart: _Cart, paid: list[int], rate_bp: int, used: Mapping[str, Used], rule: _Rule, taken: Set
) -> dict[int, int]:
    """A points promotion's proposal: line → points, leaving ``taken`` lines alone (the rule and the
    lines taken last, as ``_proposal``)."""
    if taken:
        chosen = [i for i in cart.hits(rule.lines) if i not in taken and paid[i] > 0]
    else:
        chosen = [i for i in cart.hits(rule.lines) if paid[i] > 0]
    if not chosen:
        return {}
    weights = [paid[i] for i in chosen]
    return dict(zip(chosen, allocate(_points_total(rule, sum(weights), rate_bp, used), weights), strict=True))


def _points_total(rule: _Rule, money: int, rate_bp: int, used: Mapping[str, Used]) -> int:
    """The points a promotion gives on ``money`` paid for its lines, within what its budget has left."""
    kind, benefit = rule.kind, rule.benefit
    if kind == _P_PERCENT:
        assert isinstance(benefit, PointsPercent)
        total = share_floor(money, benefit.rate_bp)
    elif kind == _P_MULTIPLIER:
        assert isinstance(benefit, PointsMultiplier)
        total = share_floor(share_floor(money, rate_bp), benefit.factor_bp - BP)
    elif kind == _P_FIXED:
        assert isinstance(benefit, PointsFixed)
        total = benefit.points
    else:
        assert isinstance(benefit, PointsPerAmount)
        blocks = money // benefit.per
        total = benefit.points * min(blocks, rule.per_order or blocks)
    if rule.budget_points:
        total = min(total, max(0, rule.budget_points - used.get(rule.id, NOTHING_USED).points))
    return total


# -- messages ----------------------------------------------------------------------------------


def _near_text(rule: _Rule, facts: Facts, key: str, *, amount: str = "") -> Note:
    """The promotion's own near-miss text in the shopper's language, else the catalog's ``engine.<key>``."""
    memo = (key, facts.language, facts.currency)
    if not amount and (note := rule.notes.get(memo)) is not None:
        return note
    said = text_in(rule.promotion.messages.near_miss, facts.language)
    if said is None:
        title = rule.title(facts.language)
        said = text(facts.language, f"engine.{key}", title=title, currency=facts.currency, amount=amount)
    note = Note(f"promotion:{rule.id}", said)
    if not amount:
        rule.notes[memo] = note
    return note


def _condition_near_miss(rule: _Rule, totals: tuple[int, int], facts: Facts) -> Note | None:
    """A cart that holds what the promotion is about (``totals``: its subtotal and number of units)
    but not enough of it hears how much more."""
    subtotal, qty = totals
    if qty == 0:
        return None
    if subtotal < rule.min_subtotal:
        if subtotal * 2 < rule.min_subtotal:
            return None  # not near: a shopper told to double the cart hears noise, not an offer
        amount = format_points(rule.min_subtotal - subtotal, facts.language)
        return _near_text(rule, facts, "amount_short", amount=amount)
    missing = (rule.min_qty or 0) - qty
    if missing == 1:
        return _near_text(rule, facts, "one_more")
    return None


def _benefit_near_miss(rule: _Rule, cart: _Cart, facts: Facts) -> Note | None:
    """One unit short of (another) set or bundle."""
    benefit = rule.benefit
    if isinstance(benefit, NForM | NthPercent):
        if len(cart.units(rule.lines)) % benefit.n != benefit.n - 1:
            return None
        if isinstance(benefit, NForM):
            return _near_text(rule, facts, "n_for_m")
        return _near_text(rule, facts, "one_more")
    if isinstance(benefit, Bundle):
        targets = cart.units(rule.target)
        target_set = set(targets)
        triggers = [u for u in cart.units(rule.trigger) if u not in target_set]
        if len(targets) != len(triggers):
            return _near_text(rule, facts, "one_more")
    return None
