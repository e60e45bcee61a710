"""Saved segments: the rule language (validated at the edge), the compiler per field, any_of / none_of
and cycles, membership lookups; on a hand-built set of customers whose answers are worked out here."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import UUID

import msgspec
import pytest

from analytics import segments
from analytics.segments import (
    Compiler,
    Membership,
    Rule,
    SegmentCycle,
    SegmentInput,
    SegmentLookup,
    birthday_days,
)
from analytics.segments_daily import run_daily, run_segment_jobs
from kartka.clock import FakeClock
from kartka.db import Connection, Pool
from kartka.errors import InvalidInput
from tests.analytics.data import customer, order
from wallet.program import DEFAULT_PROGRAM

# -- off the database -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ({"tier": ["gold"]}, "unknown field"),
        ({"spend_365d": {"min": 10, "max": 5}}, "min must not exceed max"),
        ({"spend_365d": {"min": 1, "unit": "BYN"}}, "unknown field"),
        ({"last_purchase": {"after": "2026-01-01T00:00:00Z", "days_ago_min": 3}}, "not both"),
        ({"last_purchase": {"after": "2026-02-01T00:00:00Z", "before": "2026-01-01T00:00:00Z"}}, "earlier"),
        ({"registered": {"after": "2026-01-01T00:00:00"}}, "timezone"),
        ({"sources": ["billboard"]}, "Invalid enum value"),
        ({"lifecycle": ["asleep"]}, "Invalid enum value"),
        ({"birthday_within_days": 400}, "<= 366"),
        ({"any_of": ["Bad Id"]}, "matching regex"),
    ],
)
def test_a_rule_is_checked_at_the_edge(rule: dict[str, object], error: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=error):
        msgspec.convert({"title": "t", "rule": rule}, SegmentInput)


def test_values_are_parameters_never_sql_text() -> None:
    now = FakeClock().now()
    hostile = "s1' OR true --"
    compiler = Compiler(now=now, program=DEFAULT_PROGRAM, resolve={})
    sql = compiler.condition(Rule(home_stores=(hostile,), tiers=("gold",), balance=segments.PointsRange(min=-5)))
    assert hostile not in sql
    assert "gold" not in sql
    assert sql == "f.tier_code = ANY($1::text[]) AND f.home_store = ANY($2::text[]) AND f.balance >= $3::bigint"
    assert compiler.args == [["gold"], [hostile], -5]
    assert Compiler(now=now, program=DEFAULT_PROGRAM, resolve={}).condition(Rule()) == "true"


def test_birthdays_within_days_wrap_the_year_and_keep_29_february() -> None:
    assert birthday_days(date(2026, 12, 30), 3) == [101, 102, 1230, 1231]
    assert birthday_days(date(2027, 2, 27), 1) == [227, 228, 229]  # not a leap year: the 29th on the 28th
    assert birthday_days(date(2028, 2, 27), 1) == [227, 228]


def test_a_reference_cycle_is_found_when_compiling() -> None:
    rules = {"a": Rule(any_of=("b",)), "b": Rule(none_of=("a",))}
    with pytest.raises(SegmentCycle, match="a -> b -> a"):
        Compiler(now=FakeClock().now(), program=DEFAULT_PROGRAM, resolve=rules).condition(rules["a"], ("a",))


# -- on the database --------------------------------------------------------------------------------


async def _people(conn: Connection, now: object) -> dict[str, UUID]:
    today = FakeClock().now().astimezone(DEFAULT_PROGRAM.zone).date()
    a = await customer(
        conn, now, tier="gold", source="app", home_store="s1", consent=True,  # type: ignore[arg-type]
        birthday=date(1990, (today + timedelta(days=3)).month, (today + timedelta(days=3)).day),
    )  # fmt: skip
    b = await customer(conn, now, registered_days_ago=400, source="pos", home_store="s2")  # type: ignore[arg-type]
    c = await customer(conn, now, registered_days_ago=10, source="website")  # type: ignore[arg-type]
    return {"a": a, "b": b, "c": c}


async def _facts(conn: Connection, pool: Pool, clock: FakeClock) -> dict[str, UUID]:
    now = clock.now()
    who = await _people(conn, now)
    await order(conn, who["a"], now - timedelta(days=2), 40_000)
    await order(conn, who["a"], now - timedelta(days=5), 20_000)
    await order(conn, who["b"], now - timedelta(days=100), 1_000)
    await order(conn, who["b"], now - timedelta(days=3), 9_000, refunded=9_000)  # refunded: no purchase
    await conn.execute(  # C's welcome points, available: a balance of 5.00 (a lot and its ledger entry)
        """
        WITH lot AS (
            INSERT INTO lots (customer_id, kind, points, remaining, available_at, expires_at)
            VALUES ($1, 'grant', 500, 500, $2, $3) RETURNING id
        )
        INSERT INTO ledger_entries (customer_id, kind, points, lot_id, occurred_at)
        SELECT $1, 'grant', 500, id, $2 FROM lot
        """,
        who["c"],
        now - timedelta(days=1),
        now + timedelta(days=30),
    )
    await conn.execute(  # A saved the card to Google Wallet
        """
        INSERT INTO passes (serial_number, card_number, authentication_token, updated_at, created_at, google_linked_at)
        SELECT number, number, repeat('t', 32), $2, $2, $2 FROM cards WHERE customer_id = $1
        """,
        who["a"],
        now,
    )
    assert await run_daily(pool, DEFAULT_PROGRAM, now) is not None
    return who


async def test_each_field_of_the_rule_selects_what_it_says(conn: Connection, pool: Pool, clock: FakeClock) -> None:
    who = await _facts(conn, pool, clock)
    now = clock.now()
    name = {v: k for k, v in who.items()}

    async def members(rule: dict[str, object]) -> str:
        preview = await segments.preview(conn, msgspec.convert(rule, Rule), program=DEFAULT_PROGRAM, now=now)
        found = "".join(sorted(name[m.customer_id] for m in preview.sample))
        assert preview.size == len(found)
        return found

    cases: list[tuple[dict[str, object], str]] = [
        ({}, "abc"),
        ({"tiers": ["gold"]}, "a"),
        ({"spend_365d": {"min": 60_000}}, "a"),  # 40.00 + 20.00 BYN, both bounds inclusive
        ({"spend_365d": {"max": 1_000}}, "bc"),  # B's refunded order nets to nothing
        ({"orders_365d": {"min": 1, "max": 1}}, "b"),
        ({"last_purchase": {"days_ago_min": 30}}, "b"),
        ({"last_purchase": {"days_ago_max": 2}}, "a"),  # the last purchase 2 days ago to the minute
        ({"last_purchase": {"after": (now - timedelta(days=7)).isoformat()}}, "a"),
        ({"last_purchase": {"before": (now - timedelta(days=7)).isoformat()}}, "b"),
        ({"last_purchase": {}}, "ab"),  # has bought at all
        ({"registered": {"after": (now - timedelta(days=30)).isoformat()}}, "c"),
        ({"registered": {"before": (now - timedelta(days=200)).isoformat()}}, "b"),
        ({"sources": ["app", "website"]}, "ac"),
        ({"home_stores": ["s2"]}, "b"),
        ({"balance": {"min": 100}}, "c"),
        ({"balance": {"max": 0}}, "ab"),
        ({"birthday_within_days": 3}, "a"),
        ({"birthday_within_days": 2}, ""),
        ({"consent_marketing": True}, "a"),
        ({"consent_marketing": False}, "bc"),
        # Two buyers: ntile(5) puts B in 1 and A in 2 of every score: A is 222, B 111.
        ({"rfm": ["hibernating"]}, "a"),
        ({"rfm": ["lost", "champions"]}, "b"),
        ({"lifecycle": ["new"]}, "c"),
        ({"lifecycle": ["churned"]}, "b"),  # 100 days > the fallback T90 of 90 days
        ({"lifecycle": ["active"]}, "a"),
        ({"has_wallet_pass": True}, "a"),
        ({"has_wallet_pass": False}, "bc"),
        ({"tiers": ["standart"], "sources": ["pos", "app"]}, "b"),  # ANDed
    ]
    for rule, expected in cases:
        assert await members(rule) == expected, rule

    # any_of / none_of, nested
    async def save(segment_id: str, rule: dict[str, object]) -> int:
        saved, _ = await segments.put(
            conn, segment_id, msgspec.convert({"title": segment_id, "rule": rule}, SegmentInput),
            program=DEFAULT_PROGRAM, now=now, actor=None,
        )  # fmt: skip
        return saved.size

    assert await save("gold", {"tiers": ["gold"]}) == 1
    assert await save("newbies", {"lifecycle": ["new"]}) == 1
    assert await save("gold-or-new", {"any_of": ["gold", "newbies"]}) == 2
    assert await save("rest", {"none_of": ["gold-or-new"]}) == 1
    assert await members({"none_of": ["gold"]}) == "bc"
    assert await members({"any_of": ["rest", "gold"], "sources": ["pos"]}) == "b"
    # none_of a segment that asks about purchases: a customer who never bought is not in it
    assert await save("recent", {"last_purchase": {"days_ago_max": 10}}) == 1
    assert await members({"none_of": ["recent"]}) == "bc"

    with pytest.raises(SegmentCycle):
        await save("gold", {"any_of": ["rest"]})  # gold -> rest -> gold-or-new -> gold
    with pytest.raises(SegmentCycle):
        await save("self", {"none_of": ["self"]})
    with pytest.raises(InvalidInput, match="unknown segment"):
        await save("x", {"any_of": ["nowhere"]})
    with pytest.raises(InvalidInput, match="unknown segment"):
        await save("x", {"rfm": ["whales"]})
    with pytest.raises(InvalidInput, match="reserved"):
        await save("rfm", {"tiers": ["gold"]})  # /console/segments/rfm is the grid
    with pytest.raises(segments.SegmentInUse):
        await segments.delete(conn, "gold")

    # The console saves only over what its user saw: a new segment's id must be free, an edit must be of
    # the version it opened (the admin API's PUT, expect=None, replaces whatever is there).
    async def gold_only(expect: datetime | str) -> tuple[segments.Segment, bool]:
        return await segments.put(
            conn, "gold", msgspec.convert({"title": "gold", "rule": {"tiers": ["gold"]}}, SegmentInput),
            program=DEFAULT_PROGRAM, now=now, actor=None, expect=expect,
        )  # fmt: skip

    opened = (await segments.get(conn, "gold")).updated_at
    with pytest.raises(segments.SegmentChanged, match="already exists"):
        await gold_only(segments.NEW)
    with pytest.raises(segments.SegmentChanged, match="changed or deleted"):
        await gold_only(opened - timedelta(seconds=1))
    saved, created = await gold_only(opened)
    assert (saved.size, created) == (1, False)

    membership = Membership(DEFAULT_PROGRAM)
    assert await membership.segments_of(conn, who["a"], now) == {"gold", "gold-or-new", "recent"}
    lookup = SegmentLookup(DEFAULT_PROGRAM, clock)  # the engine's port, by customer id as text
    assert await lookup.segments(conn, str(who["a"])) == {"gold", "gold-or-new", "recent"}
    assert await lookup.segments(conn, "not-a-customer") == frozenset()
    assert await membership.segments_of(conn, who["b"], now) == {"rest"}
    await segments.delete(conn, "rest")  # the lookup notices the change
    assert await membership.members_of(conn, [who["b"], who["c"]], now) == {
        who["b"]: frozenset(),
        who["c"]: frozenset({"newbies", "gold-or-new"}),
    }
    many = await lookup.members(conn, [str(who["b"]), str(who["c"]), "not-a-customer"])  # a backtest's batch
    assert many == {str(who["b"]): frozenset(), str(who["c"]): frozenset({"newbies", "gold-or-new"})}


async def test_touched_customers_are_refreshed_between_daily_runs(
    conn: Connection, pool: Pool, clock: FakeClock
) -> None:
    from analytics.segments_facts import refresh_touched  # noqa: PLC0415

    now = clock.now()
    first = await customer(conn, now)
    ran = await run_segment_jobs(pool, DEFAULT_PROGRAM, now)  # what the worker's timer runs
    assert ran["segments_daily"]["customers"] == 1
    assert (await run_segment_jobs(pool, DEFAULT_PROGRAM, now))["segments_daily"] is None  # once a day
    assert await refresh_touched(pool, DEFAULT_PROGRAM, now) == 0  # the daily run moved the marks
    await order(conn, first, now - timedelta(minutes=5), 7_000)
    anonymous = await customer(conn, now, phone=False)
    await conn.execute(
        "INSERT INTO registrations (customer_id, source, outcome) VALUES ($1, 'pos', 'created')", anonymous
    )
    assert await refresh_touched(pool, DEFAULT_PROGRAM, now) == 2
    facts = dict(await conn.fetch("SELECT customer_id, spend_365d FROM customer_facts"))
    assert facts == {first: 7_000, anonymous: 0}
    # the no-name card is attached to FIRST's phone: merged away, it leaves the facts
    await conn.execute("UPDATE customers SET merged_into = $1 WHERE id = $2", first, anonymous)
    await conn.execute("INSERT INTO registrations (customer_id, source, outcome) VALUES ($1, 'pos', 'merged')", first)
    assert await refresh_touched(pool, DEFAULT_PROGRAM, now) == 2
    assert await conn.fetchval("SELECT array_agg(customer_id) FROM customer_facts") == [first]


async def test_the_touched_refresh_does_not_wait_for_the_daily_scoring(
    conn: Connection, pool: Pool, clock: FakeClock
) -> None:
    """The daily scoring holds the facts table for its one transaction; the worker's job loop, which
    refreshes touched customers every round, skips a round rather than waiting minutes for it."""
    from analytics.segments_facts import refresh_touched  # noqa: PLC0415

    now = clock.now()
    buyer = await customer(conn, now)
    await order(conn, buyer, now - timedelta(days=1), 3_000)
    async with pool.acquire() as scoring, scoring.transaction():
        await scoring.execute("LOCK TABLE customer_facts IN SHARE ROW EXCLUSIVE MODE")  # as run_daily scores
        assert await refresh_touched(pool, DEFAULT_PROGRAM, now, lock_wait_ms=50) == 0  # a short wait, not minutes
    assert await refresh_touched(pool, DEFAULT_PROGRAM, now) == 1  # the marks stayed: the next round has them
    assert await conn.fetchval("SELECT spend_365d FROM customer_facts WHERE customer_id = $1", buyer) == 3_000
