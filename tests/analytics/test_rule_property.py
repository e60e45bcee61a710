"""The compiler against a second, plain-Python reading of the same rules: two hundred random rules over
forty random facts rows must select the same customers both ways (a seeded generator: the same cases on
every run)."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec

from analytics.segments import LIFECYCLE_ORDER, Compiler, Rule, birthday_days
from kartka.clock import FakeClock
from kartka.db import Connection
from wallet.program import DEFAULT_PROGRAM

TIERS = ("standart", "gold", "platinum")
SOURCES = ("pos", "app", "website")
STORES = ("s1", "s2", None)
RFM = ("champions", "lost", "at_risk", None)


def _fact(rng: random.Random, now: datetime) -> dict[str, Any]:
    bought = rng.random() < 0.7
    return {
        "customer_id": uuid.UUID(int=rng.getrandbits(128)),
        "tier_code": rng.choice(TIERS),
        "registered_at": now - timedelta(days=rng.randint(0, 900)),
        "source": rng.choice(SOURCES),
        "home_store": rng.choice(STORES),
        "birthday_md": rng.choice([None, 101, 302, 305, 1231, 229]),
        "consent_marketing": rng.random() < 0.5,
        "has_wallet_pass": rng.random() < 0.3,
        "balance": rng.randint(-500, 5_000),
        "spend_365d": rng.randint(0, 100_000) if bought else 0,
        "orders_365d": rng.randint(0, 20) if bought else 0,
        "revenue_total": 0,
        "orders_total": 1 if bought else 0,
        "last_purchase_at": now - timedelta(days=rng.randint(0, 400), hours=rng.randint(0, 23)) if bought else None,
        "rfm_segment": rng.choice(RFM) if bought else None,
        "lifecycle": rng.choice(LIFECYCLE_ORDER),
        "refreshed_at": now,
    }


def _bounds(rng: random.Random, low: int, high: int) -> dict[str, int]:
    a, b = sorted((rng.randint(low, high), rng.randint(low, high)))
    return {k: v for k, v in (("min", a), ("max", b)) if rng.random() < 0.6}


def _rule(rng: random.Random, now: datetime, refs: tuple[str, ...]) -> dict[str, Any]:
    def instant() -> str:
        return (now - timedelta(days=rng.randint(0, 500))).isoformat()

    choices: dict[str, Any] = {
        "tiers": lambda: rng.sample(TIERS, rng.randint(0, 2)),
        "spend_365d": lambda: _bounds(rng, 0, 100_000),
        "orders_365d": lambda: _bounds(rng, 0, 20),
        "last_purchase": lambda: rng.choice([{"after": instant()}, {"before": instant()}, {}, _days(rng)]),
        "registered": lambda: rng.choice([{"after": instant()}, {"before": instant()}]),
        "sources": lambda: rng.sample(SOURCES, rng.randint(1, 2)),
        "home_stores": lambda: ["s1"] if rng.random() < 0.5 else ["s1", "s2"],
        "balance": lambda: _bounds(rng, -500, 5_000),
        "birthday_within_days": lambda: rng.choice([0, 3, 7, 366]),
        "consent_marketing": lambda: rng.random() < 0.5,
        "has_wallet_pass": lambda: rng.random() < 0.5,
        "rfm": lambda: rng.sample(["champions", "lost", "at_risk"], rng.randint(1, 2)),
        "lifecycle": lambda: rng.sample(LIFECYCLE_ORDER, rng.randint(1, 3)),
        "any_of": lambda: rng.sample(refs, rng.randint(0, len(refs))),
        "none_of": lambda: rng.sample(refs, rng.randint(1, len(refs))),
    }
    names = rng.sample(sorted(choices if refs else set(choices) - {"any_of", "none_of"}), rng.randint(0, 3))
    return {name: choices[name]() for name in names}


def _days(rng: random.Random) -> dict[str, int]:
    a, b = sorted((rng.randint(0, 400), rng.randint(0, 400)))
    return {k: v for k, v in (("days_ago_min", a), ("days_ago_max", b)) if rng.random() < 0.7}


def matches(rule: Rule, f: dict[str, Any], now: datetime, saved: dict[str, Rule]) -> bool:  # noqa: PLR0911, PLR0912
    """The rule read plainly: a missing fact (None) satisfies no condition on it."""

    def within(value: int | None, low: int | None, high: int | None) -> bool:
        return value is not None and (low is None or value >= low) and (high is None or value <= high)

    def period(value: datetime | None, before: datetime | None, after: datetime | None) -> bool:
        return value is not None and (after is None or value >= after) and (before is None or value < before)

    if rule.tiers is not None and f["tier_code"] not in rule.tiers:
        return False
    if rule.spend_365d and not within(f["spend_365d"], rule.spend_365d.min, rule.spend_365d.max):
        return False
    if rule.orders_365d and not within(f["orders_365d"], rule.orders_365d.min, rule.orders_365d.max):
        return False
    if rule.balance and not within(f["balance"], rule.balance.min, rule.balance.max):
        return False
    last = rule.last_purchase
    if last is not None:
        if not period(f["last_purchase_at"], last.before, last.after):
            return False
        if last.days_ago_min is not None and not f["last_purchase_at"] <= now - timedelta(days=last.days_ago_min):
            return False
        if last.days_ago_max is not None and not f["last_purchase_at"] >= now - timedelta(days=last.days_ago_max):
            return False
    if rule.registered and not period(f["registered_at"], rule.registered.before, rule.registered.after):
        return False
    if rule.sources is not None and f["source"] not in [s.value for s in rule.sources]:
        return False
    if rule.home_stores is not None and f["home_store"] not in rule.home_stores:
        return False
    if rule.birthday_within_days is not None:
        today = now.astimezone(DEFAULT_PROGRAM.zone).date()
        if f["birthday_md"] not in birthday_days(today, rule.birthday_within_days):
            return False
    if rule.consent_marketing is not None and f["consent_marketing"] != rule.consent_marketing:
        return False
    if rule.has_wallet_pass is not None and f["has_wallet_pass"] != rule.has_wallet_pass:
        return False
    if rule.rfm is not None and f["rfm_segment"] not in rule.rfm:
        return False
    if rule.lifecycle is not None and f["lifecycle"] not in rule.lifecycle:
        return False
    if rule.any_of is not None and not any(matches(saved[s], f, now, saved) for s in rule.any_of):
        return False
    return not (rule.none_of and any(matches(saved[s], f, now, saved) for s in rule.none_of))


async def test_random_rules_select_what_a_plain_reading_selects(conn: Connection) -> None:
    rng = random.Random(20261202)
    now = FakeClock().now()
    facts = [_fact(rng, now) for _ in range(40)]
    columns = list(facts[0])
    placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
    await conn.executemany(
        f"INSERT INTO customer_facts ({', '.join(columns)}) VALUES ({placeholders})",
        [tuple(f[c] for c in columns) for f in facts],
    )
    saved = {
        "s1": msgspec.convert(_rule(rng, now, ()), Rule),
        "s2": msgspec.convert(_rule(rng, now, ()), Rule),
    }
    saved["s3"] = msgspec.convert(_rule(rng, now, ("s1", "s2")) | {"any_of": ["s1"]}, Rule)
    selected_some = 0
    for _ in range(200):
        rule = msgspec.convert(_rule(rng, now, tuple(saved)), Rule)
        compiler = Compiler(now=now, program=DEFAULT_PROGRAM, resolve=saved)
        where = compiler.condition(rule)
        rows = await conn.fetch(f"SELECT customer_id FROM customer_facts f WHERE {where}", *compiler.args)
        found = {r["customer_id"] for r in rows}
        expected = {f["customer_id"] for f in facts if matches(rule, f, now, saved)}
        assert found == expected, msgspec.to_builtins(rule)
        selected_some += 0 < len(found) < len(facts)
    assert selected_some > 60  # the rules discriminate: most select some customers, not none or all
