"""The pure evaluation core: cart lines, customer facts, the active promotions and what their limits
still allow in → the priced cart and the reasons out. No I/O, no clock, no database: the same inputs
always give the same answer, which is what preview, backtest, calculate and commit all rely on.

Order of evaluation (``specs/promotions.md``): discount groups by priority, each seeing the prices the
earlier ones left → the redeem cap on what is left (without ``no_redeem`` lines and lines on sale) →
the tier's accrual on money actually paid → points benefits, arbitrated in their groups the same way.

A cart is worked unit by unit: every unit of a line starts at the line's unit price and carries what
each promotion took off it. A promotion that needs several units (``n_for_m``, ``bundle``,
``nth_percent``, ``cart_amount_off``) spreads its discount over the units that earned it, in
proportion to their price, so returning any one of them later gives back exactly its share.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec

from engine.promotions.model import (
    DEFAULT_GROUP,
    DEFAULT_GROUP_RULES,
    AmountOff,
    Bundle,
    CartAmountOff,
    FixedPrice,
    Group,
    Hours,
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
from kartka.texts import format_points, text
from wallet.money import BP, allocate, share_floor, share_round
from wallet.pricing import AppliedPromotion, CartLine

Reason = str
"""Why a promotion did not apply: ``audience``, ``where``, ``when``, ``condition`` or ``limit``."""


# -- inputs ------------------------------------------------------------------------------------


class Facts(msgspec.Struct, frozen=True):
    """What the core knows of the shopper and the moment."""

    at: datetime
    tier: str
    rate_bp: int
    """The tier's accrual rate."""
    customer_id: str | None = None
    store: str | None = None
    channel: str = "pos"
    offers: frozenset[str] = frozenset()
    """Promotions this customer holds a personal offer of (still valid at ``at``)."""
    segments: frozenset[str] = frozenset()
    """The customer's segments (empty until analytics provides them)."""
    language: str = "ru"
    currency: str = "BYN"


class Used(msgspec.Struct, frozen=True):
    """What a promotion's limits have counted so far: ``customer`` is this customer's orders in the
    promotion's ``per_customer`` window, the rest are its budget's totals."""

    customer: int = 0
    orders: int = 0
    discount: int = 0
    points: int = 0


NOTHING_USED = Used()


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


class Catalog:
    """The active promotions and groups, indexed by what a cart line can match, so a cart consults
    only the promotions its lines could trigger. Immutable: a change builds a new one."""

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
        self.needs_segments = any(
            a.promotion.audience.segments is not None or a.promotion.audience.exclude_segments is not None
            for a in self.promotions
        )
        """Whether any promotion is aimed at saved segments (else no cart need ask for its customer's)."""
        self._any: list[int] = []
        self._by: dict[tuple[str, str], list[int]] = defaultdict(list)
        for index, active in enumerate(self.promotions):
            selectors = _selectors(active.promotion)
            if not selectors or any(s.any_line for s in selectors):
                self._any.append(index)
                continue
            keys = {(kind, value) for s in selectors for kind, value in _keys(s)}
            for key in keys:
                self._by[key].append(index)

    def __len__(self) -> int:
        return len(self.promotions)

    def group(self, name: str) -> Group:
        return self.groups.get(name, DEFAULT_GROUP_RULES)

    def candidates(self, lines: Sequence[CartLine]) -> list[Active]:
        """The promotions some line of the cart could trigger, in creation order."""
        found = set(self._any)
        by = self._by
        for line in lines:
            if line.on_sale:
                continue
            found.update(by.get(("sku", line.sku), ()))
            if line.category is not None:
                found.update(by.get(("category", line.category), ()))
            if line.brand is not None:
                found.update(by.get(("brand", line.brand), ()))
        return [self.promotions[i] for i in sorted(found)]


EMPTY_CATALOG = Catalog()
ANY_LINE = Selector()


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


# -- outputs -----------------------------------------------------------------------------------


Applied = AppliedPromotion
"""What one promotion revision gave on one line (the port's own shape: no copying on the way out)."""


class PricedLine(msgspec.Struct, frozen=True):
    discount: int
    promotions: tuple[Applied, ...] = ()
    redeemable: bool = True
    """Points may pay for the line (not on sale, no ``no_redeem`` promotion on it)."""


class Award(msgspec.Struct, frozen=True):
    """Points a promotion gives for the order (with their own expiry when ``expires_in_days``)."""

    id: str
    revision: int
    points: int
    expires_in_days: int | None = None


class Note(msgspec.Struct, frozen=True):
    code: str
    text: str


class NotApplied(msgspec.Struct, frozen=True):
    id: str
    reason: Reason


class Outcome(msgspec.Struct, frozen=True):
    lines: tuple[PricedLine, ...]
    redeem_base: int
    """Money left on lines points may pay for (not on sale, no ``no_redeem``): the cap's base."""
    max_redeem: int
    redeem: int
    accrue: int
    """The tier's accrual on money actually paid."""
    awards: tuple[Award, ...]
    """Points benefits, beyond ``accrue``."""
    messages: tuple[Note, ...]
    not_applied: tuple[NotApplied, ...]

    @property
    def discount(self) -> int:
        return sum(line.discount for line in self.lines)

    @property
    def bonus_points(self) -> int:
        return sum(award.points for award in self.awards)

    def applied(self) -> dict[str, tuple[int, int, int]]:
        """Promotion id → (revision, discount, points) over the whole cart: what its limits count."""
        totals: dict[str, tuple[int, int, int]] = {}
        for line in self.lines:
            for a in line.promotions:
                _, d, p = totals.get(a.id, (a.revision, 0, 0))
                totals[a.id] = (a.revision, d + a.discount, p + a.points)
        return totals


# -- evaluation --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Cart:
    lines: Sequence[CartLine]
    unit_line: list[int]
    price: list[int]
    """Each unit's current price."""
    given: dict[str, dict[int, int]] = field(default_factory=dict)
    """Promotion id → line → discount."""
    points: dict[str, dict[int, int]] = field(default_factory=dict)
    _units: dict[Selector, list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, lines: Sequence[CartLine]) -> _Cart:
        unit_line = [i for i, line in enumerate(lines) for _ in range(line.qty)]
        return cls(lines, unit_line, [lines[i].unit_price for i in unit_line])

    def units(self, selector: Selector) -> list[int]:
        """The units of the lines ``selector`` matches (worked out once per selector and cart)."""
        found = self._units.get(selector)
        if found is None:
            hit = [matches(selector, line) for line in self.lines]
            found = self._units[selector] = [u for u, i in enumerate(self.unit_line) if hit[i]]
        return found


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
    ``explain=False`` (pricing a till's cart) skips working out whether a promotion that gave nothing
    lost to another or found nothing to do: only preview shows that."""
    used = used or {}
    cart = _Cart.of(lines)
    not_applied: list[NotApplied] = []
    near: list[Note] = []
    runnable: list[Active] = []
    for active in catalog.candidates(lines):
        reason = _refusal(active, lines, facts, catalog.zone, used.get(active.id, NOTHING_USED))
        if reason is None:
            runnable.append(active)
            continue
        not_applied.append(NotApplied(active.id, reason))
        note = _condition_near_miss(active, lines, facts) if reason == "condition" else None
        if note is not None:
            near.append(note)

    groups = _grouped(runnable, catalog)
    for group, members in groups:
        discounts = [a for a in members if not _is_points(a) and not isinstance(a.promotion.benefit, NoRedeem)]
        if discounts:
            _run_discount_group(cart, group, discounts, used)

    discount = [0] * len(lines)
    for per_line in cart.given.values():
        for i, d in per_line.items():
            discount[i] += d
    left = [line.total - discount[i] for i, line in enumerate(lines)]
    base_lines = _redeemable(lines, runnable)
    redeemable = set(base_lines)
    redeem_base = sum(left[i] for i in base_lines)
    max_redeem = max(0, min(available_points, share_floor(redeem_base, redeem_cap_bp)))
    redeem = max(0, min(requested_points, max_redeem))
    paid = list(left)
    for i, part in zip(base_lines, allocate(redeem, [left[i] for i in base_lines]), strict=True):
        paid[i] -= part
    accrue = share_floor(sum(paid[i] for i, line in enumerate(lines) if not line.on_sale), facts.rate_bp)

    awards: list[Award] = []
    for group, members in groups:
        points = [a for a in members if _is_points(a)]
        if points:
            awards.extend(_run_points_group(cart, group, points, paid, facts, used))

    messages, unused = _messages(cart, runnable, facts, paid, explain=explain)
    not_applied.extend(unused)
    return Outcome(
        lines=tuple(
            PricedLine(discount=d, promotions=applied, redeemable=i in redeemable)
            for i, (d, applied) in enumerate(zip(discount, _breakdown(cart, runnable), strict=True))
        ),
        redeem_base=redeem_base,
        max_redeem=max_redeem,
        redeem=redeem,
        accrue=accrue,
        awards=tuple(awards),
        messages=(*messages, *near),
        not_applied=tuple(not_applied),
    )


def _grouped(runnable: list[Active], catalog: Catalog) -> list[tuple[Group, list[Active]]]:
    """Groups in the order they run, each with its promotions in the order they run."""
    by_group: dict[str, list[Active]] = defaultdict(list)
    for active in runnable:
        by_group[active.promotion.group].append(active)
    order = sorted(by_group, key=lambda g: (catalog.group(g).priority, g))
    return [(catalog.group(g), sorted(by_group[g], key=lambda a: (a.promotion.priority, a.seq))) for g in order]


def _redeemable(lines: Sequence[CartLine], runnable: list[Active]) -> list[int]:
    """Lines points may pay for: not on sale, and no ``no_redeem`` promotion applies to them."""
    barred = [a.promotion.benefit.lines for a in runnable if isinstance(a.promotion.benefit, NoRedeem)]
    return [
        i
        for i, line in enumerate(lines)
        if not line.on_sale and not any(matches(selector, line) for selector in barred)
    ]


def _messages(
    cart: _Cart, runnable: list[Active], facts: Facts, paid: list[int], *, explain: bool
) -> tuple[list[Note], list[NotApplied]]:
    """Applied and near-miss texts; promotions that found nothing to work on did not apply either."""
    gave = {pid for pid, per_line in cart.given.items() if any(per_line.values())}
    gave |= {pid for pid, per_line in cart.points.items() if any(per_line.values())}
    messages: list[Note] = []
    unused: list[NotApplied] = []
    for active in runnable:
        if isinstance(active.promotion.benefit, NoRedeem):
            continue
        if active.id in gave:
            text = text_in(active.promotion.messages.applied, facts.language)
            if text:
                messages.append(Note(f"promotion:{active.id}", text))
        elif explain and not _could_apply(active, cart, cart.lines, paid):
            unused.append(NotApplied(active.id, "condition"))  # else it lost to another of its group
        note = _benefit_near_miss(active, cart, facts)
        if note is not None:
            messages.append(note)
    return messages, unused


def _breakdown(cart: _Cart, runnable: list[Active]) -> list[tuple[Applied, ...]]:
    """Per line, what each promotion gave, in the order the promotions are listed."""
    per_line: list[list[Applied]] = [[] for _ in cart.lines]
    for active in runnable:
        given, points = cart.given.get(active.id, {}), cart.points.get(active.id, {})
        for i in sorted(given.keys() | points.keys()):
            d, p = given.get(i, 0), points.get(i, 0)
            if d or p:
                per_line[i].append(Applied(active.id, active.revision, d, p))
    return [tuple(applied) for applied in per_line]


def _could_apply(active: Active, cart: _Cart, lines: Sequence[CartLine], paid: list[int]) -> bool:
    """Whether the promotion would have given something on its own (it lost to others if so)."""
    if _is_points(active):
        selector = getattr(active.promotion.benefit, "lines", ANY_LINE)
        return any(paid[i] > 0 and matches(selector, line) for i, line in enumerate(lines))
    shelf = [lines[i].unit_price for i in cart.unit_line]
    return any(_propose(active.promotion, cart, shelf, set()).values())


def _is_points(active: Active) -> bool:
    return isinstance(active.promotion.benefit, PointsFixed | PointsPerAmount | PointsPercent | PointsMultiplier)


# -- who, where, when, on what condition, within which limits ----------------------------------------


def _refusal(active: Active, lines: Sequence[CartLine], facts: Facts, zone: ZoneInfo, used: Used) -> Reason | None:
    p = active.promotion
    if not _in_audience(active, facts):
        return "audience"
    if (p.where.stores and facts.store not in p.where.stores) or (
        p.where.channels and facts.channel not in p.where.channels
    ):
        return "where"
    if not _runs_at(p, facts.at, zone):
        return "when"
    if _exhausted(p, used):
        return "limit"
    if not _condition_holds(p, lines):
        return "condition"
    return None


def _in_audience(active: Active, facts: Facts) -> bool:
    audience = active.promotion.audience
    return not (
        (audience.tiers and facts.tier not in audience.tiers)
        or (audience.personal and active.id not in facts.offers)
        or (audience.segments is not None and not facts.segments.intersection(audience.segments))
        or (audience.exclude_segments and facts.segments.intersection(audience.exclude_segments))
    )


def _exhausted(promotion: Promotion, used: Used) -> bool:
    limits = promotion.limits
    if limits.per_customer is not None and used.customer >= limits.per_customer.count:
        return True
    budget = limits.budget
    return budget is not None and bool(
        (budget.count and used.orders >= budget.count)
        or (budget.discount and used.discount >= budget.discount)
        or (budget.points and used.points >= budget.points)
    )


def _runs_at(promotion: Promotion, at: datetime, zone: ZoneInfo) -> bool:
    when = promotion.when
    if when.starts_at is not None and at < when.starts_at:
        return False
    if when.ends_at is not None and at >= when.ends_at:
        return False
    if not when.weekdays and when.hours is None:
        return True
    local = at.astimezone(zone)
    if when.weekdays and local.isoweekday() not in when.weekdays:
        return False
    if when.hours is not None:
        start, end = _span(when.hours)
        now = local.hour * 60 + local.minute
        inside = start <= now < end if start < end else (now >= start or now < end)
        if not inside:
            return False
    return True


@functools.lru_cache(maxsize=4096)
def _span(hours: Hours) -> tuple[int, int]:
    return hours.minutes


def _condition_totals(promotion: Promotion, lines: Sequence[CartLine]) -> tuple[int, int]:
    selector = promotion.condition.lines
    chosen = [line for line in lines if selector is None or matches(selector, line)]
    return sum(line.total for line in chosen), sum(line.qty for line in chosen)


def _condition_holds(promotion: Promotion, lines: Sequence[CartLine]) -> bool:
    condition = promotion.condition
    if condition.min_subtotal == 0 and condition.min_qty is None:
        return True
    subtotal, qty = _condition_totals(promotion, lines)
    return subtotal >= condition.min_subtotal and qty >= (condition.min_qty or 0)


# -- discounts ---------------------------------------------------------------------------------


Proposal = dict[int, int]
"""Unit → discount."""


def _run_discount_group(cart: _Cart, group: Group, members: list[Active], used: Mapping[str, Used]) -> None:
    start = list(cart.price)

    def propose(active: Active, price: list[int], taken: set[int]) -> Proposal:
        """The promotion's proposal, within what its budget has left."""
        proposal = _propose(active.promotion, cart, price, taken)
        budget = active.promotion.limits.budget
        if budget is None or not budget.discount:
            return proposal
        return _scale(proposal, max(0, budget.discount - used.get(active.id, NOTHING_USED).discount))

    if group.mode in ("exclusive", "best"):
        contributions = _one_per_unit(members, lambda a, taken: propose(a, start, taken), best=group.mode == "best")
    elif group.mode == "sum":
        contributions = {a.id: propose(a, start, set()) for a in members}
        _clip_units(start, contributions)
    else:  # sequential: each applies to the price the previous one left
        contributions = {}
        now = list(start)
        for active in members:
            contributions[active.id] = proposal = propose(active, now, set())
            for u, d in proposal.items():
                now[u] -= d
    if group.max_discount_bp is not None:
        _cap_lines(cart, start, contributions, group.max_discount_bp)
    for pid, proposal in contributions.items():
        per_line = cart.given.setdefault(pid, {})
        for u, d in proposal.items():
            if d:
                cart.price[u] -= d
                line = cart.unit_line[u]
                per_line[line] = per_line.get(line, 0) + d


def _one_per_unit(
    members: list[Active], propose: Callable[[Active, set[int]], dict[int, int]], *, best: bool
) -> dict[str, dict[int, int]]:
    """``exclusive`` (``best=False``): in order, each takes what the earlier left untouched; ``best``:
    the promotion giving the most goes first, then the best of the rest on what is left, and so on.
    Every unit that took part in an application (a coffee that made its pastry cheaper) is spent."""
    taken: set[int] = set()
    chosen: dict[str, dict[int, int]] = {}
    if not best:
        for active in members:
            proposal = propose(active, taken)
            if any(proposal.values()):
                chosen[active.id] = proposal
                taken.update(proposal)
        return chosen
    # A proposal that touches none of the units just taken stays what it was: units it did not use are
    # the cheapest or the last in its order, so removing them changes nothing. Only the others are
    # worked out again, which keeps "best" near linear in the number of promotions.
    rank = {a.id: i for i, a in enumerate(members)}  # of equals, the first in the group's order wins
    offers = {}
    for a in members:
        proposal = propose(a, taken)
        offers[a.id] = (a, proposal, sum(proposal.values()))
    while offers:
        active, proposal, total = max(offers.values(), key=lambda o: (o[2], -rank[o[0].id]))
        del offers[active.id]
        if not total:
            break
        chosen[active.id] = proposal
        taken.update(proposal)
        for pid, (other, offered, _) in list(offers.items()):
            if not taken.isdisjoint(offered):
                again = propose(other, taken)
                offers[pid] = (other, again, sum(again.values()))
    return chosen


def _clip_units(start: list[int], contributions: dict[str, Proposal]) -> None:
    """No unit below zero: where a sum exceeds a unit's price, each promotion gives up its share."""
    per_unit: dict[int, list[str]] = defaultdict(list)
    for pid, proposal in contributions.items():
        for u, d in proposal.items():
            if d:
                per_unit[u].append(pid)
    for u, pids in per_unit.items():
        if sum(contributions[pid][u] for pid in pids) > start[u]:
            for pid, part in zip(pids, allocate(start[u], [contributions[pid][u] for pid in pids]), strict=True):
                contributions[pid][u] = part


def _cap_lines(cart: _Cart, start: list[int], contributions: dict[str, Proposal], cap_bp: int) -> None:
    """A group's discounts on a line never exceed ``cap_bp`` of the line's price as the group found it;
    where they would, every contribution on the line shrinks in proportion."""
    line_start: dict[int, int] = defaultdict(int)
    for u, price in enumerate(start):
        line_start[cart.unit_line[u]] += price
    on_line: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for pid, proposal in contributions.items():
        for u, d in proposal.items():
            if d:
                on_line[cart.unit_line[u]].append((pid, u))
    for line, entries in on_line.items():
        cap = share_floor(line_start[line], cap_bp)
        total = sum(contributions[pid][u] for pid, u in entries)
        if total > cap:
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


def _propose(promotion: Promotion, cart: _Cart, price: list[int], taken: set[int]) -> Proposal:
    """What ``promotion`` would take off each unit at ``price``, leaving ``taken`` units alone."""
    benefit = promotion.benefit
    per_order = promotion.limits.per_order
    out: Proposal = {}

    def units(selector: Selector) -> list[int]:
        return [u for u in cart.units(selector) if u not in taken and price[u] > 0]

    if isinstance(benefit, PercentOff):
        chosen = sorted(units(benefit.lines), key=lambda u: (price[u], u), reverse=benefit.pick == "dearest")
        room = min(benefit.max_units or len(chosen), per_order or len(chosen))
        for u in chosen[:room]:
            out[u] = share_round(price[u], benefit.percent_bp)
        out = {u: d for u, d in out.items() if d}  # a unit given nothing stays free for the next
    elif isinstance(benefit, AmountOff | FixedPrice):
        chosen = units(benefit.lines)
        each = {
            u: min(benefit.amount, price[u]) if isinstance(benefit, AmountOff) else max(0, price[u] - benefit.price)
            for u in chosen
        }
        chosen.sort(key=lambda u: (-each[u], u))
        for u in chosen[: per_order or len(chosen)]:
            if each[u]:
                out[u] = each[u]
    elif isinstance(benefit, CartAmountOff):
        chosen = units(ANY_LINE)
        total = sum(price[u] for u in chosen)
        _spread(min(benefit.amount, total), chosen, price, out)
    elif isinstance(benefit, NForM | NthPercent):
        chosen = sorted(units(benefit.lines), key=lambda u: (-price[u], u))  # dearest first
        sets = len(chosen) // benefit.n
        for k in range(min(sets, per_order or sets)):
            group = chosen[k * benefit.n : (k + 1) * benefit.n]
            if isinstance(benefit, NForM):
                value = sum(price[u] for u in group[benefit.m :])
            else:
                value = share_round(price[group[-1]], benefit.percent_bp)
            _spread(value, group, price, out)
    elif isinstance(benefit, Bundle):
        targets = sorted(units(benefit.target), key=lambda u: (-price[u], u))  # dearest first
        target_set = set(targets)  # a unit matching both serves as a target
        triggers = sorted((u for u in units(benefit.trigger) if u not in target_set), key=lambda u: (-price[u], u))
        pairs = list(zip(triggers, targets, strict=False))
        for trigger, target in pairs[: per_order or len(pairs)]:
            _spread(share_round(price[target], benefit.percent_bp), (trigger, target), price, out)
    return out


# -- points ------------------------------------------------------------------------------------


def _run_points_group(
    cart: _Cart, group: Group, members: list[Active], paid: list[int], facts: Facts, used: Mapping[str, Used]
) -> list[Award]:
    """Points benefits arbitrated like discounts, over lines and points: ``exclusive`` and ``best``
    give a line at most one of the group's awards; ``sum`` and ``sequential`` add them all."""
    lines = cart.lines

    def propose(active: Active, taken: set[int]) -> dict[int, int]:
        benefit = active.promotion.benefit
        selector = getattr(benefit, "lines", ANY_LINE)
        chosen = [i for i, line in enumerate(lines) if i not in taken and matches(selector, line) and paid[i] > 0]
        if not chosen:
            return {}
        money = sum(paid[i] for i in chosen)
        if isinstance(benefit, PointsFixed):
            total = benefit.points
        elif isinstance(benefit, PointsPerAmount):
            blocks = money // benefit.per
            total = benefit.points * min(blocks, active.promotion.limits.per_order or blocks)
        elif isinstance(benefit, PointsPercent):
            total = share_floor(money, benefit.rate_bp)
        else:
            assert isinstance(benefit, PointsMultiplier)
            total = share_floor(share_floor(money, facts.rate_bp), benefit.factor_bp - BP)
        budget = active.promotion.limits.budget
        if budget is not None and budget.points:
            total = min(total, max(0, budget.points - used.get(active.id, NOTHING_USED).points))
        return dict(zip(chosen, allocate(total, [paid[i] for i in chosen]), strict=True))

    if group.mode in ("exclusive", "best"):
        results = _one_per_unit(members, propose, best=group.mode == "best")
    else:
        results = {a.id: proposal for a in members if any((proposal := propose(a, set())).values())}
    awards = []
    for active in members:
        if active.id in results:
            proposal = results[active.id]
            cart.points[active.id] = {i: p for i, p in proposal.items() if p}
            expires = getattr(active.promotion.benefit, "expires_in_days", None)
            awards.append(Award(active.id, active.revision, sum(proposal.values()), expires))
    return awards


# -- messages ----------------------------------------------------------------------------------


def _near_text(active: Active, facts: Facts, key: str, *, amount: str = "") -> Note:
    """The promotion's own near-miss text in the shopper's language, else the catalog's ``engine.<key>``."""
    said = text_in(active.promotion.messages.near_miss, facts.language)
    if said is None:
        title = active.promotion.title_in(facts.language)
        said = text(facts.language, f"engine.{key}", title=title, currency=facts.currency, amount=amount)
    return Note(f"promotion:{active.id}", said)


def _condition_near_miss(active: Active, lines: Sequence[CartLine], facts: Facts) -> Note | None:
    """A cart that holds what the promotion is about but not enough of it hears how much more."""
    condition = active.promotion.condition
    subtotal, qty = _condition_totals(active.promotion, lines)
    if qty == 0:
        return None
    if subtotal < condition.min_subtotal:
        if subtotal * 2 < condition.min_subtotal:
            return None  # not near: a shopper told to double the cart hears noise, not an offer
        amount = format_points(condition.min_subtotal - subtotal, facts.language)
        return _near_text(active, facts, "amount_short", amount=amount)
    missing = (condition.min_qty or 0) - qty
    if missing == 1:
        return _near_text(active, facts, "one_more")
    return None


def _benefit_near_miss(active: Active, cart: _Cart, facts: Facts) -> Note | None:
    """One unit short of (another) set or bundle."""
    benefit = active.promotion.benefit
    if isinstance(benefit, NForM | NthPercent):
        if len(cart.units(benefit.lines)) % benefit.n != benefit.n - 1:
            return None
        if isinstance(benefit, NForM):
            return _near_text(active, facts, "n_for_m")
        return _near_text(active, facts, "one_more")
    if isinstance(benefit, Bundle):
        targets = cart.units(benefit.target)
        target_set = set(targets)
        triggers = [u for u in cart.units(benefit.trigger) if u not in target_set]
        if len(targets) != len(triggers):
            return _near_text(active, facts, "one_more")
    return None
