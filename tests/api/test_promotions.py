"""Promotions as managed data over the admin API: the life cycle with four-eyes approval, revisions that
keep the approved one running, the audit's old → new, roles, groups, personal offers and the shopper's
offers, and the remote-engine mode's refusal."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from analytics.segments_daily import run_daily
from api.state import services_of
from boot.web import create_app
from engine.promotions.model import parse_promotion
from engine.promotions.store import ManagedRemotely, PromotionAdmin, catalog_changed, diff
from kartka.clock import FakeClock
from kartka.db import Connection, Pool
from kartka.keys import Scope
from kartka.settings import EngineKind, Settings
from tests.api.conftest import Staff
from tests.conftest import START
from tests.helpers import Keys, problem, sign_in
from wallet.program import DEFAULT_PROGRAM

Client = AsyncTestClient[Litestar]
BASE = "/v1/admin/promotions"


def promotion(promotion_id: str = "pastry-with-coffee", **extra: Any) -> dict[str, Any]:
    return {
        "id": promotion_id,
        "title": {"ru": "−30% на выпечку к кофе", "en": "-30% on pastry with coffee"},
        "benefit": {
            "type": "bundle",
            "trigger": {"categories": ["coffee"]},
            "target": {"categories": ["pastry"]},
            "percent_bp": 3000,
        },
    } | extra


async def catalog_holds(app: Litestar, ids: set[str], seconds: float = 2.0) -> None:
    """Wait until the app's live catalog holds exactly ``ids`` (the app runs in its own event loop: only
    a notice reaches it, and its catalog is read, never driven, from here)."""
    catalog = services_of(app.state).catalog
    assert catalog is not None
    deadline = time.monotonic() + seconds
    while {p.id for p in catalog.current.promotions} != ids:
        assert time.monotonic() < deadline, f"the catalog holds {[p.id for p in catalog.current.promotions]}"
        await asyncio.sleep(0.005)


@pytest.fixture(autouse=True)
async def no_promotions_left(client: Client, app: Litestar, pool: Pool) -> AsyncIterator[None]:
    """The suite's app outlives the test: its catalog must not go on pricing this test's promotions in the
    next test (which empties the tables, but the app would notice only at its next poll)."""
    yield
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM promotion_offers; DELETE FROM promotion_audit; DELETE FROM promotion_revisions; "
            "DELETE FROM promotions; DELETE FROM promotion_groups; DELETE FROM promotion_catalog"
        )
        await catalog_changed(conn)
    await catalog_holds(app, set())


async def test_a_promotion_goes_live_only_when_another_admin_approves_it(staff: Staff) -> None:
    created = await staff.call("mark", "POST", BASE, 201, json=promotion())
    assert (created["id"], created["revision"], created["status"]) == ("pastry-with-coffee", 1, "draft")
    assert created["live"] is None
    assert created["draft"]["state"] == "draft"
    assert created["usage"] == {"orders": 0, "discount": 0, "points": 0, "limits": []}

    taken = problem(await staff.client.post(BASE, json=promotion(), headers=staff.headers["ada"]))
    assert (taken["status"], taken["code"]) == (409, "promotion-exists")
    unknown = problem(await staff.client.post(BASE, json=promotion("x", colour="red"), headers=staff.headers["ada"]))
    assert unknown["status"] == 422
    reserved = problem(await staff.client.post(BASE, json=promotion("preview"), headers=staff.headers["ada"]))
    assert reserved["status"] == 422  # POST /v1/admin/promotions/preview is the preview
    assert unknown["errors"][0]["field"] == "colour"

    budgeted = promotion(limits={"budget": {"discount": 500_000, "count": 100}})
    await staff.call("mark", "PUT", f"{BASE}/pastry-with-coffee", 200, json=budgeted)
    submitted = await staff.call("mark", "POST", f"{BASE}/pastry-with-coffee/submit", 200)
    assert submitted["status"] == "pending_approval"
    refused = problem(await staff.client.post(f"{BASE}/pastry-with-coffee/approve", headers=staff.headers["mark"]))
    assert refused["status"] == 403  # a marketer cannot approve at all

    approved = await staff.call("ada", "POST", f"{BASE}/pastry-with-coffee/approve", 200)
    assert approved["usage"]["limits"] == [
        {"limit": "budget.count", "used": 0, "of": 100},
        {"limit": "budget.discount", "used": 0, "of": 500_000},
    ]
    assert approved["status"] == "active"
    assert approved["live"]["revision"] == 2
    assert approved["draft"] is None
    assert approved["live"]["decided_by"].startswith("staff:")

    # An edit of the running promotion waits as a draft while revision 2 keeps running.
    edited = await staff.call(
        "ada",
        "PUT",
        f"{BASE}/pastry-with-coffee",
        200,
        json=promotion(priority=10, when={"ends_at": "2026-04-01T00:00:00Z"}),
    )
    assert (edited["status"], edited["revision"], edited["live"]["revision"]) == ("active", 3, 2)
    assert edited["draft"]["state"] == "draft"
    await staff.call("ada", "POST", f"{BASE}/pastry-with-coffee/submit", 200)
    own = problem(await staff.client.post(f"{BASE}/pastry-with-coffee/approve", headers=staff.headers["ada"]))
    assert (own["status"], own["code"]) == (403, "four-eyes")
    rejected = await staff.call(
        "bob", "POST", f"{BASE}/pastry-with-coffee/reject", 200, json={"reason": "ends too early"}
    )
    assert (rejected["status"], rejected["live"]["revision"]) == ("active", 2)
    assert (rejected["draft"]["state"], rejected["draft"]["reason"]) == ("rejected", "ends too early")
    await staff.call("ada", "POST", f"{BASE}/pastry-with-coffee/submit", 200)
    second = await staff.call("bob", "POST", f"{BASE}/pastry-with-coffee/approve", 200)
    assert (second["live"]["revision"], second["live"]["promotion"]["priority"], second["draft"]) == (3, 10, None)

    history = await staff.call("sue", "GET", f"{BASE}/pastry-with-coffee/history", 200)
    assert [(h["action"], h["by_name"]) for h in history] == [
        ("created", "mark"),
        ("edited", "mark"),
        ("submitted", "mark"),
        ("approved", "ada"),
        ("edited", "ada"),
        ("submitted", "ada"),
        ("rejected", "bob"),
        ("submitted", "ada"),
        ("approved", "bob"),
    ]
    edit = history[4]
    assert {"field": "priority", "old": None, "new": 10} in edit["changes"]
    assert {"field": "when.ends_at", "old": None, "new": "2026-04-01T00:00:00Z"} in edit["changes"]
    assert history[6]["reason"] == "ends too early"
    assert (history[3]["old_status"], history[3]["new_status"]) == ("pending_approval", "active")


async def test_pause_resume_end_and_the_states_that_refuse_them(staff: Staff, clock: FakeClock) -> None:
    later = (START + timedelta(minutes=2)).isoformat()
    await staff.call("mark", "POST", BASE, 201, json=promotion("later", when={"starts_at": later}))
    state = problem(await staff.client.post(f"{BASE}/later/pause", headers=staff.headers["mark"]))
    assert (state["status"], state["code"]) == (409, "promotion-state")
    await staff.call("mark", "POST", f"{BASE}/later/submit", 200)
    assert (await staff.call("ada", "POST", f"{BASE}/later/approve", 200))["status"] == "scheduled"
    assert (await staff.call("mark", "POST", f"{BASE}/later/pause", 200))["status"] == "paused"
    assert [p["id"] for p in await staff.call("sue", "GET", f"{BASE}?status=paused", 200)] == ["later"]
    assert (await staff.call("mark", "POST", f"{BASE}/later/resume", 200))["status"] == "scheduled"
    clock.advance(timedelta(minutes=3))
    assert (await staff.call("sue", "GET", f"{BASE}/later", 200))["status"] == "active"
    assert (await staff.call("mark", "POST", f"{BASE}/later/end", 200))["status"] == "ended"
    again = problem(await staff.client.post(f"{BASE}/later/resume", headers=staff.headers["mark"]))
    assert again["status"] == 409
    assert (await staff.call("mark", "POST", f"{BASE}/later/archive", 200))["status"] == "archived"
    assert await staff.call("sue", "GET", BASE, 200) == []  # archived ones only when asked
    assert [p["id"] for p in await staff.call("sue", "GET", f"{BASE}?status=archived", 200)] == ["later"]
    assert (
        problem(await staff.client.put(f"{BASE}/later", json=promotion("later"), headers=staff.headers["ada"]))[
            "status"
        ]
        == 409
    )


async def test_roles_search_and_not_found(staff: Staff) -> None:
    denied = problem(await staff.client.post(BASE, json=promotion(), headers=staff.headers["sue"]))
    assert denied["status"] == 403  # support reads only
    await staff.call("mark", "POST", BASE, 201, json=promotion())
    await staff.call(
        "mark", "POST", BASE, 201, json=promotion("three-for-two", title={"en": "Buy 2, get the 3rd free"})
    )
    generated = await staff.call("mark", "POST", BASE, 201, json={k: v for k, v in promotion().items() if k != "id"})
    assert generated["id"].startswith("30-on-pastry-with-coffee-")
    found = await staff.call("sue", "GET", f"{BASE}?q=3rd", 200)
    assert [p["id"] for p in found] == ["three-for-two"]
    assert found[0]["status"] == "draft"
    assert found[0]["group"] == "default"
    assert found[0]["has_draft"]
    assert len(await staff.call("sue", "GET", f"{BASE}?status=draft", 200)) == 3
    assert problem(await staff.client.get(f"{BASE}/nothing", headers=staff.headers["sue"]))["status"] == 404
    bad = problem(
        await staff.client.put(f"{BASE}/three-for-two", json=promotion("other"), headers=staff.headers["mark"])
    )
    assert bad["errors"][0]["field"] == "id"


async def test_groups_default_always_exists_and_promotions_must_name_a_known_one(staff: Staff) -> None:
    assert await staff.call("sue", "GET", "/v1/admin/promotion-groups", 200) == [
        {"id": "default", "mode": "exclusive", "priority": 100, "max_discount_bp": None}
    ]
    unknown = problem(await staff.client.post(BASE, json=promotion(group="points"), headers=staff.headers["mark"]))
    assert (unknown["status"], unknown["errors"][0]["field"]) == (422, "group")
    group = {"mode": "sum", "priority": 200, "max_discount_bp": 5000}
    assert (
        await staff.call("mark", "PUT", "/v1/admin/promotion-groups/points", 200, json=group)
        == {"id": "points"} | group
    )
    await staff.call("mark", "POST", BASE, 201, json=promotion(group="points"))
    bad = problem(
        await staff.client.put("/v1/admin/promotion-groups/points", json={"mode": "max"}, headers=staff.headers["mark"])
    )
    assert bad["errors"][0]["field"] == "mode"
    groups = await staff.call("sue", "GET", "/v1/admin/promotion-groups", 200)
    assert [g["id"] for g in groups] == ["default", "points"]


async def test_personal_offers_reach_only_their_holder_in_their_language(
    staff: Staff, client: Client, pool: Pool, keys: Keys, app: Litestar
) -> None:
    mine = await sign_in(client, pool, "+375291112233")
    theirs = await sign_in(client, pool, "+375291112244")
    await client.patch("/v1/me", json={"language": "en"}, headers=mine["headers"])
    personal = promotion(
        "for-you",
        audience={"personal": True},
        messages={"applied": {"ru": "Ваша скидка", "en": "Your discount"}},
    )
    await staff.call("mark", "POST", BASE, 201, json=personal)
    await staff.call("mark", "POST", BASE, 201, json=promotion("gold-only", audience={"tiers": ["gold"]}))
    await staff.call("mark", "POST", BASE, 201, json=promotion())
    for promotion_id in ("for-you", "gold-only", "pastry-with-coffee"):
        await staff.call("mark", "POST", f"{BASE}/{promotion_id}/submit", 200)
        await staff.call("ada", "POST", f"{BASE}/{promotion_id}/approve", 200)
    me = (await client.get("/v1/me", headers=mine["headers"])).json()
    until = (START + timedelta(days=7)).isoformat().replace("+00:00", "Z")
    offer = await staff.call(
        "mark",
        "POST",
        f"/v1/admin/customers/{me['profile']['id']}/offers",
        201,
        json={"promotion": "for-you", "valid_until": until},
    )
    assert (offer["promotion"], offer["valid_until"]) == ("for-you", until)
    unknown = problem(
        await client.post(
            f"/v1/admin/customers/{me['profile']['id']}/offers",
            json={"promotion": "nope", "valid_until": until},
            headers=staff.headers["mark"],
        )
    )
    assert unknown["errors"][0]["field"] == "promotion"
    await catalog_holds(app, {"for-you", "gold-only", "pastry-with-coffee"})

    listed = (await client.get("/v1/me/offers", headers=mine["headers"])).json()
    assert sorted((o["id"], o["title"], o["personal"]) for o in listed) == [
        ("for-you", "-30% on pastry with coffee", True),
        ("pastry-with-coffee", "-30% on pastry with coffee", False),
    ]
    assert next(o for o in listed if o["id"] == "for-you")["text"] == "Your discount"
    other = (await client.get("/v1/me/offers", headers=theirs["headers"])).json()
    assert [(o["id"], o["title"]) for o in other] == [("pastry-with-coffee", "−30% на выпечку к кофе")]


async def test_without_approval_in_the_program_submitting_runs_it(conn: Connection) -> None:
    admin = PromotionAdmin(remote=False, approval=False)
    async with conn.transaction():
        await admin.create(conn, parse_promotion(promotion()), actor="staff:someone", now=START)
        view = await admin.submit(conn, "pastry-with-coffee", actor="staff:someone", now=START)
    assert (view.status, view.live and view.live.revision, view.draft) == ("active", 1, None)
    assert await conn.fetchval("SELECT version FROM promotion_catalog") is not None  # the catalog moved


async def test_an_api_key_is_no_second_pair_of_eyes(staff: Staff, keys: Keys) -> None:
    """Whoever holds two admin keys is still one person: approving and rejecting take a signed-in admin."""
    staff.headers["key"] = await keys.headers(Scope.ADMIN)
    await staff.call("mark", "POST", BASE, 201, json=promotion())
    await staff.call("mark", "POST", f"{BASE}/pastry-with-coffee/submit", 200)
    for verb in ("approve", "reject"):
        refused = await staff.call("key", "POST", f"{BASE}/pastry-with-coffee/{verb}", 403, json={"reason": "no"})
        assert refused["code"] == "four-eyes"
    assert (await staff.call("ada", "POST", f"{BASE}/pastry-with-coffee/approve", 200))["status"] == "active"


async def test_an_ended_promotion_stays_ended(staff: Staff) -> None:
    await staff.call("mark", "POST", BASE, 201, json=promotion())
    await staff.call("mark", "POST", f"{BASE}/pastry-with-coffee/submit", 200)
    await staff.call("ada", "POST", f"{BASE}/pastry-with-coffee/approve", 200)
    await staff.call("mark", "POST", f"{BASE}/pastry-with-coffee/end", 200)
    edited = await staff.call("mark", "PUT", f"{BASE}/pastry-with-coffee", 409, json=promotion())
    assert edited["code"] == "promotion-state"
    await staff.call("mark", "POST", f"{BASE}/pastry-with-coffee/submit", 409)


async def test_a_remote_engine_leaves_no_promotions_to_manage(settings: Settings, clock: FakeClock, keys: Keys) -> None:
    remote = msgspec.structs.replace(settings, engine=EngineKind.HTTP, engine_url="http://127.0.0.1:9")
    admin = await keys.headers(Scope.ADMIN)
    one = f"{BASE}/pastry-with-coffee"
    period = {"from": START.isoformat(), "to": (START + timedelta(days=1)).isoformat()}
    customer = f"/v1/admin/customers/{uuid.uuid4()}/offers"
    calls: list[tuple[str, str, object]] = [
        ("GET", BASE, None),
        ("POST", BASE, promotion()),
        ("POST", f"{BASE}/preview", {"lines": [{"sku": "milk", "qty": 1, "unit_price": 100}]}),
        ("GET", one, None),
        ("PUT", one, promotion()),
        ("GET", f"{one}/history", None),
        ("POST", f"{one}/backtest", period),
        *(("POST", f"{one}/{step}", {"reason": "no"} if step == "reject" else None) for step in _STEPS),
        ("GET", "/v1/admin/promotion-groups", None),
        ("PUT", "/v1/admin/promotion-groups/weekend", {"mode": "best", "priority": 10}),
        ("GET", customer, None),
        ("POST", customer, {"promotion": "pastry-with-coffee", "valid_until": period["to"]}),
    ]
    async with AsyncTestClient(create_app(remote, clock=clock)) as client:
        for method, path, body in calls:
            answer = problem(await client.request(method, path, json=body, headers=admin))
            assert (method, path, answer["status"], answer["code"]) == (
                method,
                path,
                409,
                "promotions-managed-remotely",
            )
    with pytest.raises(ManagedRemotely):
        PromotionAdmin(remote=True, approval=True)._local()


_STEPS = ("submit", "approve", "reject", "pause", "resume", "end", "archive")


def test_the_audit_diff_names_each_changed_field_old_to_new() -> None:
    old = {"title": {"en": "A"}, "when": {"weekdays": [1, 2]}, "priority": 5}
    new = {"title": {"en": "B", "ru": "Б"}, "when": {"weekdays": [1]}}
    assert [(c.field, c.old, c.new) for c in diff(old, new)] == [
        ("priority", 5, None),
        ("title.en", "A", "B"),
        ("title.ru", None, "Б"),
        ("when.weekdays", [1, 2], [1]),
    ]


MILK = {
    "id": "milk-10",
    "title": {"en": "-10% on milk"},
    "benefit": {"type": "percent_off", "lines": {"skus": ["milk"]}, "percent_bp": 1000},
}


async def test_a_promotion_kept_to_one_channel_is_shown_and_given_by_that_channel_only(
    staff: Staff, app: Litestar, client: Client, pos: dict[str, str], integration: dict[str, str]
) -> None:
    """The online shop's calculate prices as its commit will (``where.channels``), and so does the till's."""
    await staff.call("mark", "POST", BASE, 201, json=MILK | {"where": {"channels": ["online"]}})
    await staff.call("mark", "POST", f"{BASE}/milk-10/submit", 200)
    await staff.call("ada", "POST", f"{BASE}/milk-10/approve", 200)
    await catalog_holds(app, {"milk-10"})
    card = (await client.post("/v1/pos/customers", json={"phone": "+375291234567"}, headers=pos)).json()
    cart = {"card": card["card"]["number"], "lines": [{"sku": "milk", "qty": 2, "unit_price": 250}]}
    for base, headers, discount in (("/v1/integrations/orders", integration, 50), ("/v1/pos/orders", pos, 0)):
        quote = await client.post(f"{base}/calculate", json=cart, headers=headers)
        assert quote.status_code == 200, quote.text
        order = cart | {"order_id": f"o-{discount}"}
        committed = await client.post(base, json=order, headers=headers | {"Idempotency-Key": f"k-{discount}"})
        assert committed.status_code == 201, committed.text
        assert (base, quote.json()["discount"], committed.json()["discount"]) == (base, discount, discount)


async def test_preview_prices_a_cart_with_drafts_and_says_why_the_others_did_not_apply(
    staff: Staff, app: Litestar, client: Client, pos: dict[str, str]
) -> None:
    await staff.call("mark", "POST", BASE, 201, json=promotion())
    await staff.call("mark", "POST", f"{BASE}/pastry-with-coffee/submit", 200)
    await staff.call("ada", "POST", f"{BASE}/pastry-with-coffee/approve", 200)
    await catalog_holds(app, {"pastry-with-coffee"})
    card = (await client.post("/v1/pos/customers", json={"phone": "+375291234567"}, headers=pos)).json()
    later = MILK | {"id": "later", "when": {"starts_at": (START + timedelta(days=1)).isoformat()}}
    cart = {
        "card": card["card"]["number"],
        "lines": [
            {"sku": "latte", "qty": 1, "unit_price": 500, "category": "coffee"},
            {"sku": "bun", "qty": 1, "unit_price": 300, "category": "pastry"},
            {"sku": "milk", "qty": 2, "unit_price": 250},
        ],
        "drafts": [MILK, later],
    }
    preview = await staff.call("sue", "POST", f"{BASE}/preview", 200, json=cart)
    assert (preview["subtotal"], preview["discount"], preview["tier"]) == (1_300, 90 + 50, "standart")
    bundle = [line["promotions"] for line in preview["lines"][:2]]  # spread over coffee and pastry
    assert [[(p["id"], p["revision"]) for p in line] for line in bundle] == [[("pastry-with-coffee", 1)]] * 2
    assert sum(line[0]["discount"] for line in bundle) == 90
    assert preview["lines"][2]["promotions"] == [{"id": "milk-10", "revision": 0, "discount": 50, "points": 0}]
    assert {"id": "later", "reason": "when"} in preview["not_applied"]
    assert preview["to_pay"] == 1_300 - 140
    # Without drafts, the preview is the till's calculate answer, with what preview adds.
    till = {"card": cart["card"], "lines": cart["lines"], "redeem_points": 0}
    calculated = (await client.post("/v1/pos/orders/calculate", json=till, headers=pos)).json()
    previewed = await staff.call("sue", "POST", f"{BASE}/preview", 200, json=till)
    assert set(previewed) - set(calculated) == {"at", "tier", "bonus_points", "awards", "not_applied"}
    assert {k: v for k, v in previewed.items() if k in calculated} == calculated
    unknown = problem(
        await client.post(f"{BASE}/preview", json=cart | {"card": "2000000000008"}, headers=staff.headers["sue"])
    )
    assert unknown["status"] == 404


async def test_a_backtest_reprices_the_period_with_the_promotion_and_its_limits(
    staff: Staff, client: Client, pos: dict[str, str], clock: FakeClock
) -> None:
    for n, milk in enumerate((2, 0, 1, 4)):
        phone = f"+37529123450{n}"
        card = (await client.post("/v1/pos/customers", json={"phone": phone}, headers=pos)).json()
        lines = [{"sku": "bread", "qty": 1, "unit_price": 180}]
        lines += [{"sku": "milk", "qty": milk, "unit_price": 250}] if milk else []
        body = {"order_id": f"o-{n}", "card": card["card"]["number"], "lines": lines}
        answer = await client.post("/v1/pos/orders", json=body, headers=pos | {"Idempotency-Key": f"k-{n}"})
        assert answer.status_code == 201, answer.text
        clock.advance(timedelta(minutes=1))
    period = {"from": START.isoformat(), "to": (START + timedelta(hours=1)).isoformat()}
    await staff.call("mark", "POST", BASE, 201, json=MILK)
    tried = await staff.call("sue", "POST", f"{BASE}/milk-10/backtest", 200, json=period)
    assert tried == {
        "promotion": "milk-10",
        "revision": 1,
        "orders": 4,
        "orders_affected": 3,
        "customers_affected": 3,
        "discount": 50 + 25 + 100,
        "points": tried["points"],
        "truncated": False,
    }
    assert tried["points"] == -(50 + 25 + 100) * 500 // 10_000  # less money paid, fewer points earned
    await staff.call("mark", "PUT", f"{BASE}/milk-10", 200, json=MILK | {"limits": {"budget": {"count": 2}}})
    limited = await staff.call("sue", "POST", f"{BASE}/milk-10/backtest", 200, json=period)
    assert (limited["revision"], limited["orders_affected"], limited["discount"]) == (2, 2, 50 + 25)
    backwards = problem(
        await client.post(
            f"{BASE}/milk-10/backtest", json={"from": period["to"], "to": period["from"]}, headers=staff.headers["sue"]
        )
    )
    assert backwards["errors"][0]["field"] == "to"


async def test_a_backtest_sees_the_brand_the_till_sent(
    staff: Staff, client: Client, pos: dict[str, str], pool: Pool, clock: FakeClock
) -> None:
    """Lines keep their brand: a promotion on a brand re-prices the stored orders that had it."""
    card = (await client.post("/v1/pos/customers", json={"phone": "+375291234500"}, headers=pos)).json()
    for n, brand in enumerate(("savushkin", "other", None)):
        line = {"sku": "milk", "qty": 2, "unit_price": 250} | ({"brand": brand} if brand else {})
        body = {"order_id": f"o-{n}", "card": card["card"]["number"], "lines": [line]}
        answer = await client.post("/v1/pos/orders", json=body, headers=pos | {"Idempotency-Key": f"k-{n}"})
        assert answer.status_code == 201, answer.text
        clock.advance(timedelta(minutes=1))
    stored = await pool.fetch("SELECT brand FROM order_lines ORDER BY order_pk")
    assert [r["brand"] for r in stored] == ["savushkin", "other", None]
    benefit = {"type": "percent_off", "lines": {"brands": ["savushkin"]}, "percent_bp": 1000}
    savushkin = MILK | {"id": "savushkin-10", "benefit": benefit}
    await staff.call("mark", "POST", BASE, 201, json=savushkin)
    period = {"from": START.isoformat(), "to": (START + timedelta(hours=1)).isoformat()}
    tried = await staff.call("sue", "POST", f"{BASE}/savushkin-10/backtest", 200, json=period)
    assert (tried["orders"], tried["orders_affected"], tried["discount"]) == (3, 1, 50)


async def test_preview_backtest_and_offers_see_the_shoppers_segments(
    staff: Staff, client: Client, pos: dict[str, str], keys: Keys, pool: Pool, clock: FakeClock, app: Litestar
) -> None:
    """A draft aimed at a saved segment is previewed and backtested for its members only, as calculate
    would price it for them (a backtest reads who is in the segment now); once it runs, its members
    find it among their offers and the others do not."""
    cards = []
    for n, orders in enumerate((2, 1)):
        card = (await client.post("/v1/pos/customers", json={"phone": f"+37529123456{n}"}, headers=pos)).json()
        cards.append(card["card"]["number"])
        for k in range(orders):
            body = {
                "order_id": f"o-{n}-{k}",
                "card": cards[-1],
                "lines": [{"sku": "milk", "qty": 2, "unit_price": 250}],
            }
            answer = await client.post("/v1/pos/orders", json=body, headers=pos | {"Idempotency-Key": f"k-{n}-{k}"})
            assert answer.status_code == 201, answer.text
            clock.advance(timedelta(minutes=1))
    assert await run_daily(pool, DEFAULT_PROGRAM, clock.now()) is not None
    regulars = {"title": "Regulars", "rule": {"orders_365d": {"min": 2}}}
    saved = await client.put("/v1/admin/segments/regulars", json=regulars, headers=await keys.headers(Scope.ADMIN))
    assert saved.status_code == 201, saved.text
    draft = MILK | {"audience": {"segments": ["regulars"]}}
    cart = [{"sku": "milk", "qty": 2, "unit_price": 250}]
    for card, discount in zip(cards, (50, 0), strict=True):
        previewed = await staff.call(
            "sue", "POST", f"{BASE}/preview", 200, json={"card": card, "lines": cart, "drafts": [draft]}
        )
        assert previewed["discount"] == discount
    await staff.call("mark", "POST", BASE, 201, json=draft)
    period = {"from": START.isoformat(), "to": (START + timedelta(hours=1)).isoformat()}
    tried = await staff.call("sue", "POST", f"{BASE}/milk-10/backtest", 200, json=period)
    assert (tried["orders"], tried["orders_affected"], tried["customers_affected"], tried["discount"]) == (3, 2, 1, 100)
    await staff.call("mark", "POST", f"{BASE}/milk-10/submit", 200)
    await staff.call("ada", "POST", f"{BASE}/milk-10/approve", 200)
    await catalog_holds(app, {"milk-10"})
    for n, listed in enumerate((["milk-10"], [])):
        shopper = await sign_in(client, pool, f"+37529123456{n}")
        offers = (await client.get("/v1/me/offers", headers=shopper["headers"])).json()
        assert [o["id"] for o in offers] == listed


async def test_usage_counts_the_orders_that_used_the_promotion(
    staff: Staff, app: Litestar, client: Client, pos: dict[str, str], pool: Pool
) -> None:
    limits = {"per_customer": {"count": 1}, "budget": {"count": 5}}
    await staff.call("mark", "POST", BASE, 201, json=MILK | {"limits": limits})
    await staff.call("mark", "POST", f"{BASE}/milk-10/submit", 200)
    await staff.call("ada", "POST", f"{BASE}/milk-10/approve", 200)
    await catalog_holds(app, {"milk-10"})
    # The catalog made its budget's row as it loaded it: commits only lock it, in id order.
    assert await pool.fetchval("SELECT orders FROM promotion_budgets WHERE promotion_id = 'milk-10'") == 0
    card = (await client.post("/v1/pos/customers", json={"phone": "+375291234567"}, headers=pos)).json()
    body = {"order_id": "o-1", "card": card["card"]["number"], "lines": [{"sku": "milk", "qty": 2, "unit_price": 250}]}
    answer = await client.post("/v1/pos/orders", json=body, headers=pos | {"Idempotency-Key": "k-1"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["discount"] == 50
    usage = (await staff.call("sue", "GET", f"{BASE}/milk-10", 200))["usage"]
    assert usage == {
        "orders": 1,
        "discount": 50,
        "points": 0,
        "limits": [{"limit": "budget.count", "used": 1, "of": 5}],
    }
    again = await staff.call("sue", "POST", f"{BASE}/preview", 200, json={"card": body["card"], "lines": body["lines"]})
    assert (again["discount"], again["not_applied"]) == (0, [{"id": "milk-10", "reason": "limit"}])
