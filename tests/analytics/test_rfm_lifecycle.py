"""RFM quintiles and lifecycle stages on hand-built data sets whose answers are worked out here."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from uuid import UUID

import msgspec
import pytest

from analytics import lifecycle
from analytics.segments_daily import run_daily
from kartka.clock import FakeClock
from kartka.db import Connection, Pool
from tests.analytics.data import customer, order
from wallet.program import DEFAULT_PROGRAM, RFM_GRID, Program

# (days since the last purchase, purchases in the window, money spent in the window)
RFM_CUSTOMERS = [
    (2, 6, 9_000),
    (5, 1, 300),
    (10, 4, 5_000),
    (20, 2, 1_200),
    (40, 8, 20_000),
    (60, 3, 2_500),
    (90, 5, 4_000),
    (150, 9, 15_000),
    (200, 7, 700),
    (300, 10, 30_000),
]


def quintiles(values: list[tuple[object, int]]) -> dict[int, int]:
    """ntile(5) by hand: sorted ascending (ties by position), 10 customers make 5 pairs."""
    ranked = sorted(range(len(values)), key=lambda i: values[i])
    return {i: position * 5 // len(values) + 1 for position, i in enumerate(ranked)}


def test_the_default_map_places_every_code_once_by_the_grid() -> None:
    segments = DEFAULT_PROGRAM.rfm.segments
    assert sorted(c for codes in segments.values() for c in codes) == sorted(
        f"{r}{f}{m}" for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)
    )
    assert set(segments) == {
        "champions", "loyal", "potential_loyalists", "new", "promising", "need_attention",
        "about_to_sleep", "at_risk", "cannot_lose", "hibernating", "lost",
    }  # fmt: skip
    assert DEFAULT_PROGRAM.rfm.segment_of("555") == "champions"
    assert DEFAULT_PROGRAM.rfm.segment_of("511") == "new"
    assert DEFAULT_PROGRAM.rfm.segment_of("111") == "lost"
    assert DEFAULT_PROGRAM.rfm.segment_of("145") == "cannot_lose"  # F 4, M 5: (4 + 5) / 2 rounds up to 5
    # a program file may move codes, but must keep each in exactly one segment
    with pytest.raises(msgspec.ValidationError, match="have no segment"):
        msgspec.convert({"rfm": {"segments": {"all": ["555"]}}}, Program)


async def test_rfm_scores_ten_customers_by_quintiles_with_refunds_netted(
    conn: Connection, pool: Pool, clock: FakeClock
) -> None:
    now = clock.now()
    ids: list[UUID] = []
    for days, count, spend in RFM_CUSTOMERS:
        cid = await customer(conn, now, registered_days_ago=400)
        ids.append(cid)
        for k in range(count):  # the last purchase `days` ago, the others a day apart before it
            paid = spend - (count - 1) * 10 if k == 0 else 10
            await order(conn, cid, now - timedelta(days=days + k, hours=1), paid)
    # Noise the scores must not see: fully refunded purchases (no purchase, nothing spent), a purchase
    # older than the window, a merged customer; and a partial refund, which counts net.
    await order(conn, ids[1], now - timedelta(hours=2), 5_000, refunded=5_000)
    await order(conn, ids[3], now - timedelta(days=25), 800, refunded=800)
    await order(conn, ids[9], now - timedelta(days=320), 1_000, refunded=400)
    await order(conn, ids[5], now - timedelta(days=400), 99_000)
    merged = await customer(conn, now, phone=False)
    await order(conn, merged, now - timedelta(days=1), 50_000)
    await conn.execute("UPDATE customers SET merged_into = $1 WHERE id = $2", ids[0], merged)

    report = await run_daily(pool, DEFAULT_PROGRAM, now)
    assert report is not None
    assert report.scored == 10

    r = quintiles([(-d, i) for i, (d, _, _) in enumerate(RFM_CUSTOMERS)])  # more recent ranks higher
    f = quintiles([(c, i) for i, (_, c, _) in enumerate(RFM_CUSTOMERS)])
    m = quintiles([(s, i) for i, (_, _, s) in enumerate(RFM_CUSTOMERS)])
    # ids are random uuids: ties are broken by id in SQL, so the data has no ties
    expected = {ids[i]: f"{r[i]}{f[i]}{m[i]}" for i in range(10)}
    assert list(expected.values()) == ["534", "511", "423", "412", "345", "322", "233", "254", "141", "155"]
    rows = {
        row["customer_id"]: row
        for row in await conn.fetch("SELECT customer_id, rfm_r, rfm_f, rfm_m, rfm_segment FROM customer_facts")
    }
    assert merged not in rows
    top = await conn.fetchrow("SELECT spend_365d, orders_365d FROM customer_facts WHERE customer_id = $1", ids[9])
    assert top is not None
    assert (top["spend_365d"], top["orders_365d"]) == (30_600, 11)
    for cid, code in expected.items():
        row = rows[cid]
        assert f"{row['rfm_r']}{row['rfm_f']}{row['rfm_m']}" == code
        fm = (int(code[1]) + int(code[2]) + 1) // 2
        assert row["rfm_segment"] == RFM_GRID[int(code[0])][fm - 1]
    assert [rows[cid]["rfm_segment"] for cid in ids] == [
        "champions", "new", "potential_loyalists", "potential_loyalists", "loyal", "about_to_sleep",
        "at_risk", "cannot_lose", "at_risk", "cannot_lose",
    ]  # fmt: skip

    # The window slides: a year on, nobody has bought in it, and the scores are cleared.
    later = now + timedelta(days=366)
    assert await run_daily(pool, DEFAULT_PROGRAM, later) is not None
    assert await conn.fetchval("SELECT count(*) FROM customer_facts WHERE rfm_segment IS NOT NULL") == 0


async def test_lifecycle_thresholds_from_a_known_gap_distribution(
    conn: Connection, pool: Pool, clock: FakeClock
) -> None:
    now = clock.now()
    program = msgspec.structs.replace(
        DEFAULT_PROGRAM, lifecycle=msgspec.structs.replace(DEFAULT_PROGRAM.lifecycle, min_gaps=5)
    )

    def ago(days: float) -> object:
        return now - timedelta(days=days)

    # One regular: purchase days 70, 69, 67, 64, 60, 55, 49, 42, 34, 25, 15 days ago: gaps 1, 2, ..., 10.
    regular = await customer(conn, now)
    for days in (70, 69, 67, 64, 60, 55, 49, 42, 34, 25, 15):
        await order(conn, regular, now - timedelta(days=days), 1_000)
    # T50: the smallest gap at least half the gaps do not exceed: 5 (five of ten are <= 5); T90: 9.
    fresh = await customer(conn, now, registered_days_ago=10)
    await order(conn, fresh, now - timedelta(days=2), 1_000)
    never = await customer(conn, now)
    refunded = await customer(conn, now)
    await order(conn, refunded, now - timedelta(days=1), 1_000, refunded=1_000)  # no purchase after all
    once = await customer(conn, now)
    await order(conn, once, now - timedelta(days=3), 1_000)
    twice = await customer(conn, now)  # two purchases the same day: active, and no gap
    await order(conn, twice, now - timedelta(days=2, hours=3), 1_000)
    await order(conn, twice, now - timedelta(days=2, hours=1), 1_000)
    risk = await customer(conn, now)
    await order(conn, risk, now - timedelta(days=7), 1_000)  # 5 < 7 <= 9
    gone = await customer(conn, now)
    await order(conn, gone, now - timedelta(days=12), 1_000)

    thresholds = await lifecycle.estimate(conn, program, now)
    assert (thresholds.t50_days, thresholds.t90_days, thresholds.gaps) == (Decimal(5), Decimal(9), 10)
    assert thresholds.estimated

    assert await run_daily(pool, program, now) is not None
    stages = dict(await conn.fetch("SELECT customer_id, lifecycle FROM customer_facts"))
    assert stages == {
        regular: "churned",  # last purchase 15 days ago > T90
        fresh: "new",
        never: "no_purchase",
        refunded: "no_purchase",
        once: "one_purchase",
        twice: "active",
        risk: "churn_risk",
        gone: "churned",
    }
    assert await conn.fetchval("SELECT t90_days FROM lifecycle_thresholds") == 9

    # The program may fix the thresholds; too few gaps fall back to the configured defaults.
    fixed = msgspec.structs.replace(
        program, lifecycle=msgspec.structs.replace(program.lifecycle, t50_days=10, t90_days=20)
    )
    assert (await lifecycle.estimate(conn, fixed, now)).t90_days == 20
    sparse = msgspec.structs.replace(program, lifecycle=msgspec.structs.replace(program.lifecycle, min_gaps=11))
    fallback = await lifecycle.estimate(conn, sparse, now)
    assert (fallback.t50_days, fallback.t90_days, fallback.estimated) == (Decimal(30), Decimal(90), False)


async def test_the_daily_run_happens_once_and_resumes_from_its_cursor(
    conn: Connection, pool: Pool, clock: FakeClock
) -> None:
    now = clock.now()
    ids = sorted([await customer(conn, now) for _ in range(5)])
    for cid in ids:
        await order(conn, cid, now - timedelta(days=1), 1_000)
    # A worker died after two batches of two: its claim is stale and its cursor stands after ids[1].
    day = now.astimezone(DEFAULT_PROGRAM.zone).date()
    await conn.execute(
        """
        INSERT INTO analytics_runs (run_on, cursor_id, started_at, touched_at)
        VALUES ($1, $2, now() - interval '1 hour', now() - interval '1 hour')
        """,
        day,
        ids[1],
    )
    # A worker told to stop lets its claim go between batches, and the next takes it up at once.
    told = asyncio.Event()
    told.set()
    assert await run_daily(pool, DEFAULT_PROGRAM, now, batch=2, stop=told) is None
    assert await conn.fetchval("SELECT cursor_id FROM analytics_runs") == ids[1]
    report = await run_daily(pool, DEFAULT_PROGRAM, now, batch=2)
    assert report is not None
    assert report.customers == 3  # resumed: only those after the cursor were rebuilt by this run
    assert report.scored == 3  # the facts of the first two were never written (the dead worker's lost)
    assert await run_daily(pool, DEFAULT_PROGRAM, now) is None  # done for today
    assert (await run_daily(pool, DEFAULT_PROGRAM, now, force=True) or report).scored == 5
    assert await conn.fetchval("SELECT stage FROM analytics_runs") == "done"
