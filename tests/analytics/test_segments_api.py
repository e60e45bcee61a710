"""The segments API end to end: save, show, page through, export, preview, delete; the segments report."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from litestar import Litestar
from litestar.testing import AsyncTestClient

from analytics.segments_daily import run_daily
from kartka.clock import FakeClock
from kartka.db import Connection, Pool
from kartka.keys import Scope
from tests.analytics.data import customer, order
from tests.helpers import Keys, problem
from wallet.program import DEFAULT_PROGRAM

Client = AsyncTestClient[Litestar]


async def test_a_segment_is_saved_counted_listed_exported_and_previewed(
    client: Client, keys: Keys, conn: Connection, pool: Pool, clock: FakeClock
) -> None:
    admin = await keys.headers(Scope.ADMIN)
    now = clock.now()
    gold = sorted([await customer(conn, now, tier="gold") for _ in range(5)])
    await customer(conn, now)
    await conn.execute("UPDATE customers SET name = '=HYPERLINK(1)' WHERE id = $1", gold[0])
    assert await run_daily(pool, DEFAULT_PROGRAM, now) is not None

    body = {"title": "Gold", "rule": {"tiers": ["gold"]}}
    created = await client.put("/v1/admin/segments/gold", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["size"] == 5
    replaced = await client.put("/v1/admin/segments/gold", json=body | {"title": "Gold tier"}, headers=admin)
    assert replaced.status_code == 200
    shown = (await client.get("/v1/admin/segments/gold", headers=admin)).json()
    assert (shown["title"], shown["rule"], shown["size"]) == ("Gold tier", {"tiers": ["gold"]}, 5)
    assert shown["computed_at"].startswith("2026-03-02T09:00:00")

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/admin/segments/gold/customers", params=params, headers=admin)).json()
        seen += [item["customer_id"] for item in page["items"]]
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert seen == [str(g) for g in gold]

    export = await client.get("/v1/admin/segments/gold/export.csv", headers=admin)
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [r["customer_id"] for r in rows] == [str(g) for g in gold]
    assert rows[0]["name"] == "'=HYPERLINK(1)"  # a spreadsheet shows it, does not run it
    assert rows[0]["tier"] == "gold"

    preview = await client.post("/v1/admin/segments/preview", json={"rule": {"none_of": ["gold"]}}, headers=admin)
    assert preview.status_code == 200, preview.text
    assert preview.json()["size"] == 1
    assert len(preview.json()["sample"]) == 1

    wrong = await client.post("/v1/admin/segments/preview", json={"rule": {"tier": ["gold"]}}, headers=admin)
    assert wrong.status_code == 422
    assert problem(wrong)["errors"][0]["field"] == "rule.tier"
    assert (await client.put("/v1/admin/segments/a", json={"title": "A", "rule": {}}, headers=admin)).status_code == 201
    both = {"title": "B", "rule": {"any_of": ["a", "gold"]}}
    assert (await client.put("/v1/admin/segments/b", json=both, headers=admin)).status_code == 201
    cycle = await client.put("/v1/admin/segments/a", json={"title": "A", "rule": {"none_of": ["b"]}}, headers=admin)
    assert cycle.status_code == 422
    assert problem(cycle)["code"] == "segment-cycle"
    in_use = await client.delete("/v1/admin/segments/gold", headers=admin)
    assert in_use.status_code == 409
    assert problem(in_use)["code"] == "segment-in-use"
    assert (await client.delete("/v1/admin/segments/b", headers=admin)).status_code == 204
    assert (await client.get("/v1/admin/segments/b", headers=admin)).status_code == 404
    assert (await client.get("/v1/admin/segments/b/export.csv", headers=admin)).status_code == 404
    assert [s["id"] for s in (await client.get("/v1/admin/segments", headers=admin)).json()] == ["a", "gold"]

    report = (await client.get("/v1/admin/reports/segments", params={"by": "saved"}, headers=admin)).json()
    assert [(r["segment"], r["customers"]) for r in report["rows"]] == [("a", 6), ("gold", 5)]


async def test_the_segments_report_gives_size_cltv_and_revenue_share_per_stage(
    client: Client, keys: Keys, conn: Connection, pool: Pool, clock: FakeClock
) -> None:
    admin = await keys.headers(Scope.ADMIN)
    now = clock.now()
    spends = [1_000, 2_000, 6_000]  # active customers: two purchases each, the second 10.00 in the window
    for spend in spends:
        cid = await customer(conn, now)
        await order(conn, cid, now - timedelta(days=500), spend)  # outside the 365 days, inside CLTV
        await order(conn, cid, now - timedelta(days=1), 1_000)
    await customer(conn, now, registered_days_ago=5)  # new, nothing bought
    assert await run_daily(pool, DEFAULT_PROGRAM, now) is not None
    answer = await client.get("/v1/admin/reports/segments", params={"by": "lifecycle"}, headers=admin)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["customers"], report["revenue_365d"]) == (4, 3_000)
    rows = {r["segment"]: r for r in report["rows"]}
    assert [r["segment"] for r in report["rows"]] == ["new", "active"]
    active = rows["active"]
    assert active["customers"] == 3
    assert active["share_of_customers"] == 0.75
    assert (active["cltv_mean"], active["cltv_median"]) == (4_000, 3_000)  # 2,000 / 3,000 / 7,000
    assert (active["cltv_365d_mean"], active["cltv_365d_median"]) == (1_000, 1_000)
    assert active["share_of_revenue_365d"] == 1.0
    assert rows["new"]["cltv_mean"] == 0
    bad = await client.get("/v1/admin/reports/segments", params={"by": "zodiac"}, headers=admin)
    assert bad.status_code in (400, 422)


async def test_the_rfm_grid_counts_scored_customers_and_a_cell_is_a_rule(
    client: Client, keys: Keys, conn: Connection, pool: Pool, clock: FakeClock
) -> None:
    admin = await keys.headers(Scope.ADMIN)
    now = clock.now()
    for i in range(10):  # the more recent, the more frequent: two customers on each diagonal cell
        cid = await customer(conn, now)
        for j in range(10 - i):
            await order(conn, cid, now - timedelta(days=i + 1 + j * 30), 1_000)
    await customer(conn, now)  # never bought: no score
    assert await run_daily(pool, DEFAULT_PROGRAM, now) is not None

    grid = (await client.get("/v1/admin/reports/rfm-grid", headers=admin)).json()
    assert (grid["scored"], grid["unscored"], len(grid["cells"])) == (10, 1, 25)
    assert [(c["r"], c["f"]) for c in grid["cells"][:6]] == [(5, 1), (5, 2), (5, 3), (5, 4), (5, 5), (4, 1)]
    counts = {(c["r"], c["f"]): c["customers"] for c in grid["cells"]}
    assert counts == {(r, f): 2 if r == f else 0 for r in range(1, 6) for f in range(1, 6)}
    assert next(c["share"] for c in grid["cells"] if (c["r"], c["f"]) == (3, 3)) == 0.2

    cell = {"rfm_r": {"min": 5, "max": 5}, "rfm_f": {"min": 5, "max": 5}}
    preview = await client.post("/v1/admin/segments/preview", json={"rule": cell}, headers=admin)
    assert preview.status_code == 200, preview.text
    assert preview.json()["size"] == 2
    scored = await client.post("/v1/admin/segments/preview", json={"rule": {"rfm_m": {}}}, headers=admin)
    assert scored.json()["size"] == 10  # any score: those who bought in the window
    upper = await client.post("/v1/admin/segments/preview", json={"rule": {"rfm_r": {"max": 2}}}, headers=admin)
    assert upper.json()["size"] == 4
    bad = await client.post("/v1/admin/segments/preview", json={"rule": {"rfm_r": {"min": 6}}}, headers=admin)
    assert bad.status_code == 422
