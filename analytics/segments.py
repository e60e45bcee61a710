"""Saved segments: a rule over customer facts, compiled to one parameterised SQL condition.

A rule's fields are all optional and ANDed; an empty rule is every live customer. The rule is evaluated
against ``customer_facts`` (one row per live customer, kept fresh by the worker: see
:mod:`analytics.segments_facts`), so a preview or a count is one scan of one narrow table. The
:class:`Compiler` is the one place a rule becomes SQL: one method per field, every value a ``$n``
parameter, never text spliced into the query. ``any_of`` / ``none_of`` inline the other segments'
rules (as they are now); a rule that would reach itself is refused when it is saved.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Final, Literal
from uuid import UUID

import msgspec

from analytics.segments_facts import no_jit
from kartka.bounds import Instant, MoneyBound, check_instant
from kartka.clock import Clock
from kartka.db import Connection, Pool
from kartka.errors import Conflict, InvalidInput, NotFound
from wallet.models import Source
from wallet.program import Program

SEGMENT_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
SegmentId = Annotated[str, msgspec.Meta(pattern=SEGMENT_ID_PATTERN)]
#: Ids that name a page beside the segments (``/console/segments/new``, ``/rfm``, ``/preview``).
RESERVED_IDS: Final = frozenset({"new", "rfm", "preview"})
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
Points = Annotated[int, msgspec.Meta(ge=-(10**15), le=10**15)]
Days = Annotated[int, msgspec.Meta(ge=0, le=36_500)]
LifecycleStage = Literal["new", "no_purchase", "one_purchase", "active", "churn_risk", "churned"]
LIFECYCLE_ORDER: Final = ("new", "no_purchase", "one_purchase", "active", "churn_risk", "churned")
SAMPLE: Final = 20
PAGE: Final = 100
#: How deep ``any_of`` / ``none_of`` may nest (a cycle is refused anyway; this bounds the SQL's size).
MAX_DEPTH: Final = 8


def _check_range(low: int | None, high: int | None, name: str) -> None:
    if low is not None and high is not None and low > high:
        raise ValueError(f"{name}: min must not exceed max")


class MoneyRange(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Minor units, both bounds inclusive."""

    min: MoneyBound | None = None
    max: MoneyBound | None = None

    def __post_init__(self) -> None:
        _check_range(self.min, self.max, "range")


class CountRange(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    min: Count | None = None
    max: Count | None = None

    def __post_init__(self) -> None:
        _check_range(self.min, self.max, "range")


class PointsRange(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Available points in hundredths (a debt makes a balance negative), both bounds inclusive."""

    min: Points | None = None
    max: Points | None = None

    def __post_init__(self) -> None:
        _check_range(self.min, self.max, "range")


Score = Annotated[int, msgspec.Meta(ge=1, le=5)]


class ScoreRange(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """An RFM score (1-5), both bounds inclusive."""

    min: Score | None = None
    max: Score | None = None

    def __post_init__(self) -> None:
        _check_range(self.min, self.max, "range")


class Period(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """``after`` inclusive, ``before`` exclusive."""

    before: Instant | None = None
    after: Instant | None = None

    def __post_init__(self) -> None:
        check_instant(self.before, "before")
        check_instant(self.after, "after")
        if self.before is not None and self.after is not None and self.after >= self.before:
            raise ValueError("after must be earlier than before")


class LastPurchase(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Either instants (``after`` inclusive, ``before`` exclusive) or whole days ago, both inclusive."""

    before: Instant | None = None
    after: Instant | None = None
    days_ago_min: Days | None = None
    days_ago_max: Days | None = None

    def __post_init__(self) -> None:
        Period(before=self.before, after=self.after)  # the same checks
        relative = self.days_ago_min is not None or self.days_ago_max is not None
        if relative and (self.before is not None or self.after is not None):
            raise ValueError("give either before/after or days_ago_min/days_ago_max, not both")
        _check_range(self.days_ago_min, self.days_ago_max, "days_ago")


class Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Conditions on a customer's facts, all optional, all of them must hold."""

    tiers: tuple[Code, ...] | None = None
    spend_365d: MoneyRange | None = None
    """Money paid in the last 365 days (the program's RFM window), refunds netted."""
    orders_365d: CountRange | None = None
    """Purchases in the same window; a fully refunded one does not count."""
    last_purchase: LastPurchase | None = None
    """Customers who never bought match no ``last_purchase`` condition."""
    registered: Period | None = None
    sources: tuple[Source, ...] | None = None
    home_stores: tuple[Code, ...] | None = None
    balance: PointsRange | None = None
    birthday_within_days: Annotated[int, msgspec.Meta(ge=0, le=366)] | None = None
    """The birthday falls today or in the next N days (the program's time zone)."""
    consent_marketing: bool | None = None
    rfm: tuple[Code, ...] | None = None
    """RFM segments by name (the program's ``[rfm]`` map)."""
    rfm_r: ScoreRange | None = None
    """The recency score, 1-5 (5: the most recent); customers without a purchase in the window have none."""
    rfm_f: ScoreRange | None = None
    """The frequency score, 1-5 (5: the most purchases): a cell of the RFM grid is an ``rfm_r`` and an ``rfm_f``."""
    rfm_m: ScoreRange | None = None
    """The monetary score, 1-5 (5: the biggest spenders)."""
    lifecycle: tuple[LifecycleStage, ...] | None = None
    has_wallet_pass: bool | None = None
    any_of: Annotated[tuple[SegmentId, ...], msgspec.Meta(max_length=20)] | None = None
    """In at least one of these saved segments."""
    none_of: Annotated[tuple[SegmentId, ...], msgspec.Meta(max_length=20)] | None = None
    """In none of these saved segments."""

    def refs(self) -> set[str]:
        return set(self.any_of or ()) | set(self.none_of or ())


class SegmentInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    rule: Rule = Rule()


class PreviewInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rule: Rule = Rule()


class Segment(msgspec.Struct, frozen=True):
    id: str
    title: str
    rule: Rule
    size: int
    """Customers in the segment when it was last counted (on save, and by the daily job)."""
    computed_at: datetime
    created_at: datetime
    updated_at: datetime


class Member(msgspec.Struct, frozen=True):
    customer_id: UUID
    phone: str | None
    name: str | None
    card_number: str | None
    tier: str
    spend_365d: int
    orders_365d: int
    last_purchase_at: datetime | None
    balance: int
    rfm: str | None
    lifecycle: str | None


class Preview(msgspec.Struct, frozen=True):
    size: int
    sample: list[Member]
    """Up to 20 members, whichever the scan finds first."""


class MemberPage(msgspec.Struct, frozen=True):
    items: list[Member]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; absent on the last one."""


class SegmentCycle(InvalidInput):
    code = "segment-cycle"


class SegmentInUse(Conflict):
    code = "segment-in-use"


# -- the compiler -----------------------------------------------------------------------------------


class Compiler:
    """Compiles rules to SQL conditions over ``customer_facts f``; values go to :attr:`args`.

    ``resolve`` maps saved segment ids to their rules (for ``any_of`` / ``none_of``); ``args`` may
    already hold parameters of the query the condition is put into (numbering continues after them).
    """

    def __init__(
        self, *, now: datetime, program: Program, resolve: Mapping[str, Rule], args: list[Any] | None = None
    ) -> None:
        self.now = now
        self.program = program
        self.resolve = resolve
        self.args: list[Any] = [] if args is None else args

    def param(self, value: Any, cast: str) -> str:
        self.args.append(value)
        return f"${len(self.args)}::{cast}"

    def condition(self, rule: Rule, path: tuple[str, ...] = ()) -> str:
        """The rule as one SQL condition (``true`` for an empty rule); ``path``: the segments it is inside."""
        parts = [*self._lists(rule), *self._ranges(rule), *self._flags(rule), *self._refs(rule, path)]
        return " AND ".join(parts) or "true"

    def _lists(self, rule: Rule) -> list[str]:
        """Fields that name values: the customer's is one of them."""
        lists = (
            ("f.tier_code", rule.tiers),
            ("f.source", None if rule.sources is None else tuple(s.value for s in rule.sources)),
            ("f.home_store", rule.home_stores),
            ("f.rfm_segment", rule.rfm),
            ("f.lifecycle", rule.lifecycle),
        )
        return [f"{col} = ANY({self.param(list(values), 'text[]')})" for col, values in lists if values is not None]

    def _ranges(self, rule: Rule) -> list[str]:
        parts = []
        if rule.spend_365d is not None:
            parts += self._range("f.spend_365d", rule.spend_365d.min, rule.spend_365d.max, "bigint")
        if rule.orders_365d is not None:
            parts += self._range("f.orders_365d", rule.orders_365d.min, rule.orders_365d.max, "integer")
        if rule.balance is not None:
            parts += self._range("f.balance", rule.balance.min, rule.balance.max, "bigint")
        for column, scores in (("f.rfm_r", rule.rfm_r), ("f.rfm_f", rule.rfm_f), ("f.rfm_m", rule.rfm_m)):
            if scores is not None:
                parts += self._range(column, scores.min, scores.max, "smallint") or [f"{column} IS NOT NULL"]
        if rule.last_purchase is not None:
            parts += self._last_purchase(rule.last_purchase)
        if rule.registered is not None:
            parts += self._period("f.registered_at", rule.registered.before, rule.registered.after)
        if rule.birthday_within_days is not None:
            days = birthday_days(self.now.astimezone(self.program.zone).date(), rule.birthday_within_days)
            parts.append(f"f.birthday_md = ANY({self.param(days, 'smallint[]')})")
        return parts

    def _flags(self, rule: Rule) -> list[str]:
        flags = (("f.consent_marketing", rule.consent_marketing), ("f.has_wallet_pass", rule.has_wallet_pass))
        return [f"{column} = {self.param(value, 'boolean')}" for column, value in flags if value is not None]

    def _refs(self, rule: Rule, path: tuple[str, ...]) -> list[str]:
        parts = []
        if rule.any_of is not None:
            parts.append("(" + (" OR ".join(self._ref(ref, path) for ref in rule.any_of) or "false") + ")")
        if rule.none_of:
            parts.append("NOT (" + " OR ".join(self._ref(ref, path) for ref in rule.none_of) + ")")
        return parts

    def _range(self, column: str, low: int | None, high: int | None, cast: str) -> list[str]:
        parts = []
        if low is not None:
            parts.append(f"{column} >= {self.param(low, cast)}")
        if high is not None:
            parts.append(f"{column} <= {self.param(high, cast)}")
        return parts

    def _period(self, column: str, before: datetime | None, after: datetime | None) -> list[str]:
        parts = []
        if after is not None:
            parts.append(f"{column} >= {self.param(after, 'timestamptz')}")
        if before is not None:
            parts.append(f"{column} < {self.param(before, 'timestamptz')}")
        return parts

    def _last_purchase(self, rule: LastPurchase) -> list[str]:
        parts = self._period("f.last_purchase_at", rule.before, rule.after)
        if rule.days_ago_min is not None:  # at least N days ago: on or before now - N days
            cutoff = self.now - timedelta(days=rule.days_ago_min)
            parts.append(f"f.last_purchase_at <= {self.param(cutoff, 'timestamptz')}")
        if rule.days_ago_max is not None:
            cutoff = self.now - timedelta(days=rule.days_ago_max)
            parts.append(f"f.last_purchase_at >= {self.param(cutoff, 'timestamptz')}")
        return parts or ["f.last_purchase_at IS NOT NULL"]

    def _ref(self, segment_id: str, path: tuple[str, ...]) -> str:
        if segment_id in path:
            raise SegmentCycle(f"segment {segment_id} reaches itself: {' -> '.join((*path, segment_id))}")
        if len(path) >= MAX_DEPTH:
            raise InvalidInput(f"segments nest deeper than {MAX_DEPTH} levels", field="rule")
        rule = self.resolve.get(segment_id)
        if rule is None:
            raise InvalidInput(f"no segment {segment_id!r}", field="rule")
        # NULL (a customer who never bought, asked about a purchase) counts as "not in it" under NOT.
        return f"coalesce(({self.condition(rule, (*path, segment_id))}), false)"


def birthday_days(today: date, within: int) -> list[int]:
    """MMDD of today and the next ``within`` days; a 29 February birthday is kept on 28 February."""
    days = []
    for n in range(within + 1):
        day = today + timedelta(days=n)
        days.append(day.month * 100 + day.day)
        leap = (day.year % 4 == 0 and day.year % 100 != 0) or day.year % 400 == 0
        if day.month == 2 and day.day == 28 and not leap:
            days.append(229)
    return sorted(set(days))


# -- the store --------------------------------------------------------------------------------------


async def _rules(conn: Connection) -> dict[str, Rule]:
    return {row["id"]: msgspec.convert(row["rule"], Rule) for row in await conn.fetch("SELECT id, rule FROM segments")}


def _check_names(rule: Rule, program: Program) -> None:
    if rule.tiers is not None:
        known = {t.code for t in program.tiers}
        wrong = sorted(set(rule.tiers) - known)
        if wrong:
            raise InvalidInput(f"rule.tiers: unknown tier(s) {wrong}; known: {sorted(known)}", field="rule.tiers")
    if rule.rfm is not None:
        known = set(program.rfm.segments)
        wrong = sorted(set(rule.rfm) - known)
        if wrong:
            raise InvalidInput(f"rule.rfm: unknown segment(s) {wrong}; known: {sorted(known)}", field="rule.rfm")


def _find_cycle(graph: Mapping[str, set[str]], start: str) -> list[str] | None:
    """A path from ``start`` back to itself through ``graph``'s edges, if there is one."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return [*path, nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def compile_rule(rule: Rule, *, now: datetime, program: Program, resolve: Mapping[str, Rule]) -> tuple[str, list[Any]]:
    compiler = Compiler(now=now, program=program, resolve=resolve)
    return compiler.condition(rule), compiler.args


async def count(conn: Connection, rule: Rule, *, now: datetime, program: Program, resolve: Mapping[str, Rule]) -> int:
    where, args = compile_rule(rule, now=now, program=program, resolve=resolve)
    async with conn.transaction():
        await no_jit(conn)
        size: int = await conn.fetchval(f"SELECT count(*) FROM customer_facts f WHERE {where}", *args)
    return size


class SegmentChanged(Conflict):
    code = "segment-changed"


#: ``put``'s ``expect`` for a save that must create: an existing segment of that id is refused.
NEW: Final = "new"


async def put(
    conn: Connection,
    segment_id: str,
    data: SegmentInput,
    *,
    program: Program,
    now: datetime,
    actor: str | None,
    expect: datetime | str | None = None,
) -> tuple[Segment, bool]:
    """Create or replace a segment (counted at once); True when it was created.

    ``expect`` guards against overwriting what the caller never saw: :data:`NEW` refuses an existing
    id, a time refuses a segment changed since (its ``updated_at`` differs); None replaces whatever is
    there (the admin API's PUT)."""
    _check_names(data.rule, program)
    async with conn.transaction():
        return await _put(conn, segment_id, data, program=program, now=now, actor=actor, expect=expect)


async def _put(
    conn: Connection,
    segment_id: str,
    data: SegmentInput,
    *,
    program: Program,
    now: datetime,
    actor: str | None,
    expect: datetime | str | None,
) -> tuple[Segment, bool]:
    if segment_id in RESERVED_IDS:
        raise InvalidInput(f"{segment_id!r} is a reserved word, not a segment id", field="id")
    # Two saves that would close a cycle between them must not pass each other's check.
    await conn.execute("LOCK TABLE segments IN SHARE ROW EXCLUSIVE MODE")
    if expect is not None:
        current = await conn.fetchval("SELECT updated_at FROM segments WHERE id = $1", segment_id)
        if expect == NEW and current is not None:
            raise SegmentChanged(f"a segment {segment_id!r} already exists", field="id")
        if isinstance(expect, datetime) and current != expect:
            raise SegmentChanged(f"segment {segment_id!r} was changed or deleted since it was opened", field="id")
    rules = await _rules(conn)
    missing = sorted(data.rule.refs() - set(rules) - {segment_id})
    if missing:
        raise InvalidInput(f"rule names unknown segment(s) {missing}", field="rule")
    graph = {sid: r.refs() for sid, r in rules.items()}
    graph[segment_id] = data.rule.refs()
    cycle = _find_cycle(graph, segment_id)
    if cycle is not None:
        raise SegmentCycle(f"segments would reach themselves: {' -> '.join(cycle)}", field="rule")
    rules[segment_id] = data.rule
    size = await count(conn, data.rule, now=now, program=program, resolve=rules)
    row = await conn.fetchrow(
        """
        INSERT INTO segments (id, title, rule, refs, size, computed_at, created_at, updated_at, updated_by)
        VALUES ($1, $2, $3, $4, $5, $6, $6, $6, $7)
        ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, rule = EXCLUDED.rule, refs = EXCLUDED.refs,
               size = EXCLUDED.size, computed_at = EXCLUDED.computed_at, updated_at = EXCLUDED.updated_at,
               updated_by = EXCLUDED.updated_by
        RETURNING *, (xmax = 0) AS created
        """,
        segment_id,
        data.title,
        msgspec.to_builtins(data.rule),
        sorted(data.rule.refs()),
        size,
        now,
        actor,
    )
    assert row is not None
    return _segment(row), row["created"]


def _segment(row: Any) -> Segment:
    return Segment(
        id=row["id"],
        title=row["title"],
        rule=msgspec.convert(row["rule"], Rule),
        size=row["size"],
        computed_at=row["computed_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def get(conn: Connection, segment_id: str) -> Segment:
    row = await conn.fetchrow("SELECT * FROM segments WHERE id = $1", segment_id)
    if row is None:
        raise NotFound(f"no segment {segment_id!r}", field="id")
    return _segment(row)


async def list_all(conn: Connection) -> list[Segment]:
    return [_segment(row) for row in await conn.fetch("SELECT * FROM segments ORDER BY id")]


async def delete(conn: Connection, segment_id: str) -> None:
    """Remove a segment no other segment names (a campaign already enqueued keeps its recipients)."""
    async with conn.transaction():
        await _delete(conn, segment_id)


async def _delete(conn: Connection, segment_id: str) -> None:
    await conn.execute("LOCK TABLE segments IN SHARE ROW EXCLUSIVE MODE")
    users = await conn.fetchval("SELECT array_agg(id ORDER BY id) FROM segments WHERE $1 = ANY(refs)", segment_id)
    if users:
        raise SegmentInUse(f"segment {segment_id!r} is named by {list(users)}; change those first", field="id")
    if await conn.fetchval("DELETE FROM segments WHERE id = $1 RETURNING 1", segment_id) is None:
        raise NotFound(f"no segment {segment_id!r}", field="id")


async def recount(conn: Connection, *, program: Program, now: datetime) -> int:
    """Count every saved segment again (the daily job, after the facts and scores moved)."""
    rules = await _rules(conn)
    for segment_id, rule in rules.items():
        size = await count(conn, rule, now=now, program=program, resolve=rules)
        await conn.execute("UPDATE segments SET size = $2, computed_at = $3 WHERE id = $1", segment_id, size, now)
    return len(rules)


async def condition_for(conn: Connection, segment_id: str, *, now: datetime, program: Program, args: list[Any]) -> str:
    """The saved segment's condition over ``customer_facts f``, its values appended to ``args``."""
    rules = await _rules(conn)
    if segment_id not in rules:
        raise NotFound(f"no segment {segment_id!r}", field="segment.id")
    return Compiler(now=now, program=program, resolve=rules, args=args).condition(rules[segment_id])


_MEMBERS: Final = """
    SELECT f.customer_id, cu.phone, cu.name, c.number AS card_number, f.tier_code, f.spend_365d, f.orders_365d,
           f.last_purchase_at, f.balance, f.rfm_segment, f.lifecycle
      FROM customer_facts f
      JOIN customers cu ON cu.id = f.customer_id AND cu.merged_into IS NULL AND cu.closed_at IS NULL
      LEFT JOIN cards c ON c.customer_id = f.customer_id AND c.status = 'active'
     WHERE {where} AND {after}
     {order}
     LIMIT {limit}
"""


def _member(row: Any) -> Member:
    return Member(
        customer_id=row["customer_id"],
        phone=row["phone"],
        name=row["name"],
        card_number=row["card_number"],
        tier=row["tier_code"],
        spend_365d=row["spend_365d"],
        orders_365d=row["orders_365d"],
        last_purchase_at=row["last_purchase_at"],
        balance=row["balance"],
        rfm=row["rfm_segment"],
        lifecycle=row["lifecycle"],
    )


async def _members(
    conn: Connection,
    rule: Rule,
    *,
    now: datetime,
    program: Program,
    resolve: Mapping[str, Rule],
    after: UUID | None,
    limit: int,
    ordered: bool = True,
) -> list[Member]:
    """Members in id order after ``after`` (a page); unordered, any ``limit`` of them (a sample: with few
    matches, walking the whole id index for them costs seconds where a scan that stops early does not)."""
    where, args = compile_rule(rule, now=now, program=program, resolve=resolve)
    # The keyset condition only when there is a cursor: "$n IS NULL OR id > $n" defeats the index range.
    if after is not None:
        args.append(after)
    keyset = f"f.customer_id > ${len(args)}::uuid" if after is not None else "true"
    order = "ORDER BY f.customer_id" if ordered else ""
    sql = _MEMBERS.format(where=where, after=keyset, order=order, limit=f"${len(args) + 1}")
    async with conn.transaction():
        await no_jit(conn)
        return [_member(row) for row in await conn.fetch(sql, *args, limit)]


async def preview(conn: Connection, rule: Rule, *, program: Program, now: datetime) -> Preview:
    _check_names(rule, program)
    rules = await _rules(conn)
    size = await count(conn, rule, now=now, program=program, resolve=rules)
    sample = await _members(
        conn, rule, now=now, program=program, resolve=rules, after=None, limit=SAMPLE, ordered=False
    )
    return Preview(size=size, sample=sample)


def _cursor(text: str | None) -> UUID | None:
    if text is None:
        return None
    try:
        return UUID(text)
    except ValueError as exc:
        raise InvalidInput("cursor: pass back the next_cursor of the previous page", field="cursor") from exc


async def members(
    conn: Connection, segment_id: str, *, cursor: str | None, limit: int, program: Program, now: datetime
) -> MemberPage:
    """One page of a segment's customers in id order (keyset: the cursor is the last id seen)."""
    rules = await _rules(conn)
    if segment_id not in rules:
        raise NotFound(f"no segment {segment_id!r}", field="id")
    items = await _members(
        conn, rules[segment_id], now=now, program=program, resolve=rules, after=_cursor(cursor), limit=limit + 1
    )
    more = len(items) > limit
    items = items[:limit]
    return MemberPage(items=items, next_cursor=str(items[-1].customer_id) if more else None)


CSV_COLUMNS: Final = (
    "customer_id",
    "phone",
    "name",
    "card_number",
    "tier",
    "spend_365d",
    "orders_365d",
    "last_purchase_at",
    "balance",
    "rfm",
    "lifecycle",
)


def _csv_line(values: Sequence[object]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(["" if v is None else _safe(v) for v in values])
    return buffer.getvalue().encode()


def _safe(value: object) -> str:
    """Text a spreadsheet would run as a formula gets a leading apostrophe (CSV injection)."""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if isinstance(value, str) and text[:1] in ("=", "+", "-", "@") and value != "" else text


async def export_csv(
    pool: Pool, segment_id: str, *, program: Program, now: datetime, batch: int = 5_000
) -> AsyncIterator[bytes]:
    """The segment's customers as CSV, streamed page by page (keyset), each page its own short query."""
    async with pool.acquire() as conn:
        rules = await _rules(conn)
    if segment_id not in rules:
        raise NotFound(f"no segment {segment_id!r}", field="id")
    return _export(pool, rules, segment_id, program=program, now=now, batch=batch)


async def _export(
    pool: Pool, rules: Mapping[str, Rule], segment_id: str, *, program: Program, now: datetime, batch: int
) -> AsyncIterator[bytes]:
    yield _csv_line(CSV_COLUMNS)
    after: UUID | None = None
    while True:
        async with pool.acquire() as conn:
            page = await _members(
                conn, rules[segment_id], now=now, program=program, resolve=rules, after=after, limit=batch
            )
        if page:
            yield b"".join(_csv_line([getattr(m, c) for c in CSV_COLUMNS]) for m in page)
        if len(page) < batch:
            return
        after = page[-1].customer_id


# -- membership, for promotions and anything else that asks about one customer ---------------------


class Membership:
    """Which saved segments a customer is in now: one indexed lookup of the customer's facts row.

    The composition root hands :meth:`segments_of` to the engine (its port for ``audience.segments``);
    the compiled query is kept until a segment changes (checked by one cheap query per call)."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self._version: tuple[int, datetime | None] | None = None
        self._rules: dict[str, Rule] = {}

    async def segments_of(self, conn: Connection, customer_id: UUID, now: datetime) -> frozenset[str]:
        found = await self.members_of(conn, [customer_id], now)
        return found.get(customer_id, frozenset())

    async def members_of(
        self, conn: Connection, customer_ids: Sequence[UUID], now: datetime
    ) -> dict[UUID, frozenset[str]]:
        version = await conn.fetchrow("SELECT count(*) AS n, max(updated_at) AS at FROM segments")
        assert version is not None
        if (version["n"], version["at"]) != self._version:
            self._rules = await _rules(conn)
            self._version = (version["n"], version["at"])
        if not self._rules or not customer_ids:
            return {}
        args: list[Any] = [list(customer_ids)]
        compiler = Compiler(now=now, program=self.program, resolve=self._rules, args=args)
        cases = ", ".join(
            f"CASE WHEN coalesce(({compiler.condition(rule)}), false) THEN {compiler.param(sid, 'text')} END"
            for sid, rule in sorted(self._rules.items())
        )
        rows = await conn.fetch(
            f"SELECT f.customer_id, array_remove(ARRAY[{cases}], NULL) AS ids FROM customer_facts f "
            "WHERE f.customer_id = ANY($1::uuid[])",
            *args,
        )
        return {row["customer_id"]: frozenset(row["ids"]) for row in rows}


class SegmentLookup:
    """The engine's segment source (``SegmentSource.segments(conn, customer_id)``, the port promotions'
    ``audience.segments`` read through): :class:`Membership` on the caller's connection, at the clock's
    now. The composition root builds one and hands it to the order service."""

    def __init__(self, program: Program, clock: Clock) -> None:
        self.clock = clock
        self.membership = Membership(program)

    async def segments(self, conn: Connection, customer_id: str) -> frozenset[str]:
        try:
            key = UUID(customer_id)
        except ValueError:
            return frozenset()
        return await self.membership.segments_of(conn, key, self.clock.now())

    async def members(self, conn: Connection, customer_ids: Sequence[str]) -> Mapping[str, frozenset[str]]:
        keys: dict[UUID, str] = {}
        for customer_id in customer_ids:
            with contextlib.suppress(ValueError):
                keys[UUID(customer_id)] = customer_id
        found = await self.membership.members_of(conn, list(keys), self.clock.now())
        return {keys[key]: ids for key, ids in found.items()}
