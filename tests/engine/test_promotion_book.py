"""Limits and budgets counted in the commit's transaction, exact under concurrency; refunds give back
exactly their share, and a full refund gives back a limited promotion's use."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from engine.embedded import EmbeddedEngine
from engine.promotions.book import PromotionBook
from engine.promotions.evaluate import Active, Catalog
from engine.promotions.live import CatalogHolder
from engine.promotions.model import parse_promotion
from engine.promotions.reload import LivePromotion, Snapshot, ensure_budget_rows
from engine.promotions.store import Usages
from engine.setup import promotion_book
from kartka.clock import FakeClock
from kartka.db import Connection, Pool
from tests.helpers import NOTIFIER
from wallet.customers import CustomerService, Origin
from wallet.models import Source
from wallet.orders import CalculateInput, CommitInput, OrderService, RefundInput, ReturnLine
from wallet.pricing import CartLine
from wallet.program import DEFAULT_PROGRAM

USE_OF_O1 = "SELECT %s FROM promotion_uses WHERE order_pk = (SELECT id FROM orders WHERE order_id = 'o-1')"
TEA = CartLine(sku="tea", qty=3, unit_price=1_000, category="tea")


def service(clock: FakeClock, *promotions: dict[str, Any]) -> OrderService:
    catalog = Catalog(
        (Active(parse_promotion({"title": {"en": "x"}, **p}), 1, i) for i, p in enumerate(promotions)),
        zone=DEFAULT_PROGRAM.zone,
    )
    engine = EmbeddedEngine(DEFAULT_PROGRAM, catalog=CatalogHolder(catalog))
    customers = CustomerService(region="BY", card_prefix="2", program=DEFAULT_PROGRAM, events=NOTIFIER, clock=clock)
    return OrderService(
        program=DEFAULT_PROGRAM, engine=engine, customers=customers, clock=clock, book=PromotionBook(engine)
    )


async def card(orders: OrderService, conn: Connection, n: int) -> str:
    shopper = await orders.customers.register(conn, phone=f"+3752912{n:05d}", origin=Origin(source=Source.POS))
    return shopper.card.number


FREE = {"id": "free", "benefit": {"type": "percent_off", "lines": {}, "percent_bp": 1000}}
"""10 % off every line, unlimited: 300 off a ``TEA`` cart."""


async def shoppers(orders: OrderService, conn: Connection, count: int, *, bought: int) -> list[str]:
    """``count`` shoppers' cards; the first ``bought`` of them each bought ``TEA`` (order ``o-n``) with ``FREE``."""
    numbers = [await card(orders, conn, n) for n in range(count)]
    for n in range(bought):
        assert (await buy(orders, conn, numbers[n], f"o-{n}"))["discount"] == 300
    return numbers


async def buy(orders: OrderService, conn: Connection, number: str, order_id: str, *lines: CartLine) -> Any:
    async with conn.transaction():
        data = CommitInput(order_id=order_id, card=number, lines=lines or (TEA,))
        stored = await orders.commit(conn, data, idempotency_key=order_id, api_key_id=None, store="s1", terminal="t")
    return msgspec.json.decode(stored.body)


FIVE = {
    "id": "five",
    "benefit": {"type": "amount_off", "lines": {"categories": ["tea"]}, "amount": 100},
    "limits": {"budget": {"count": 5}},
}
"""1.00 off each tea, for five orders in all."""


async def at_once(orders: OrderService, pool: Pool, cards: list[str]) -> list[Any]:
    """A ``TEA`` commit on each card (order ``o-n``), all at once, each on a connection of its own."""

    async def one(n: int) -> Any:
        async with pool.acquire() as conn:
            return await buy(orders, conn, cards[n], f"o-{n}")

    return list(await asyncio.gather(*(one(n) for n in range(len(cards)))))


async def give_back(orders: OrderService, conn: Connection, order_id: str, qty: int, refund_id: str) -> Any:
    async with conn.transaction():
        data = RefundInput(refund_id=refund_id, lines=(ReturnLine(sku="tea", qty=qty),))
        stored = await orders.refund(conn, order_id, data, idempotency_key=refund_id, api_key_id=None, store="s1")
    return msgspec.json.decode(stored.body)


@pytest.mark.usefixtures("database_url")
async def test_twenty_parallel_commits_against_a_budget_of_five(pool: Pool, clock: FakeClock) -> None:
    orders = service(clock, FIVE)
    async with pool.acquire() as conn:
        cards = [await card(orders, conn, n) for n in range(20)]

    # 20 commits at once: each waits on the budget's row and reads the totals the one before it left.
    answers = await at_once(orders, pool, cards[:20])
    discounted = [a for a in answers if a["discount"]]
    assert len(discounted) == 5
    assert all(a["discount"] == 300 for a in discounted)
    assert all(a["lines"][0]["promotions"] == [] for a in answers if not a["discount"])
    assert discounted[0]["lines"][0]["promotions"] == [{"id": "five", "revision": 1, "discount": 300, "points": 0}]
    assert any("«x»" in line for line in discounted[0]["receipt_lines"])
    budget = await pool.fetchrow("SELECT orders, discount FROM promotion_budgets WHERE promotion_id = 'five'")
    assert budget is not None
    assert tuple(budget) == (5, 1500)
    assert await pool.fetchval("SELECT count(*) FROM promotion_uses") == 5
    # The order's lines say what applied to them, as the receipt did.
    assert await pool.fetchval("SELECT count(*) FROM order_lines WHERE promotions IS NOT NULL") == 5


@pytest.mark.usefixtures("database_url")
async def test_parallel_commits_against_a_budget_whose_row_exists_lock_it_and_count_exactly(
    pool: Pool, clock: FakeClock
) -> None:
    """The first limited commit makes the budget's row; later ones lock it without writing it (one row
    version per commit, written by the count): still exact when they race."""
    orders = service(clock, FIVE)
    async with pool.acquire() as conn:
        cards = [await card(orders, conn, n) for n in range(21)]
        assert (await buy(orders, conn, cards[20], "first"))["discount"] == 300

    answers = await at_once(orders, pool, cards[:20])
    assert len([a for a in answers if a["discount"]]) == 4
    budget = await pool.fetchrow("SELECT orders, discount FROM promotion_budgets WHERE promotion_id = 'five'")
    assert budget is not None
    assert tuple(budget) == (5, 1500)


@pytest.mark.usefixtures("database_url")
async def test_refunds_give_back_exactly_their_share_and_a_full_one_the_use(pool: Pool, clock: FakeClock) -> None:
    orders = service(
        clock,
        {
            "id": "once",
            "benefit": {"type": "percent_off", "lines": {}, "percent_bp": 3333},
            "limits": {"per_customer": {"count": 1, "days": 7}, "budget": {"discount": 100_000}},
        },
    )
    async with pool.acquire() as conn:
        number = await card(orders, conn, 1)
        first = await buy(orders, conn, number, "o-1")
        assert first["discount"] == 999  # 3 × 333.3 rounded per unit
        second = await buy(orders, conn, number, "o-2")
        assert second["discount"] == 0  # once a week: the commit counted the first
        returned = await give_back(orders, conn, "o-1", 1, "r-1")
        # The receipt names the promotion whose share goes back: the catalog's title (not stored here)...
        assert returned["receipt_lines"][0] == "Акция «x»: скидка на возвращённый товар 3,33 BYN"
        await conn.execute(
            "INSERT INTO promotions (id, status, live_revision, created_at, created_by, updated_at)"
            " VALUES ('once', 'ended', 1, now(), 'test', now())"
        )
        await conn.execute(
            "INSERT INTO promotion_revisions (promotion_id, revision, body, author, created_at, state)"
            " VALUES ('once', 1, $1, 'test', now(), 'approved')",
            {"title": {"ru": "Минус треть", "en": "A third off"}},
        )
        returned = await give_back(orders, conn, "o-1", 1, "r-2")
        # ... and the revision that applied, once stored, even after the promotion ended
        assert returned["receipt_lines"][0] == "Акция «Минус треть»: скидка на возвращённый товар 3,33 BYN"
        assert not any("Акция" in line for line in returned["receipt_lines"][1:])
        row = await conn.fetchrow(USE_OF_O1 % "discount, returned_discount")
        assert row is not None
        assert tuple(row) == (999, 666)
        assert await conn.fetchval("SELECT discount FROM promotion_budgets") == 333
        assert (await buy(orders, conn, number, "o-3"))["discount"] == 0  # part of o-1 is still kept
        await give_back(orders, conn, "o-1", 1, "r-3")
        row = await conn.fetchrow(USE_OF_O1 % "discount, returned_discount, returned")
        assert row is not None
        assert tuple(row) == (999, 999, True)
        budget = await conn.fetchrow("SELECT orders, discount FROM promotion_budgets")
        assert budget is not None
        assert tuple(budget) == (0, 0)
        assert (await buy(orders, conn, number, "o-4"))["discount"] == 999  # the use came back


@pytest.mark.usefixtures("database_url")
async def test_each_per_customer_window_counts_its_own_promotions_uses(pool: Pool, clock: FakeClock) -> None:
    """Two windows read in one statement: a use counts against its own promotion's window only."""
    orders = service(
        clock,
        {
            "id": "weekly",
            "benefit": {"type": "amount_off", "lines": {}, "amount": 100},
            "limits": {"per_customer": {"count": 1, "days": 7}},
        },
        {
            "id": "monthly",
            "benefit": {"type": "points_fixed", "points": 500},
            "limits": {"per_customer": {"count": 1, "days": 30}},
        },
    )

    def given(answer: Any) -> set[str]:
        return {p["id"] for line in answer["lines"] for p in line["promotions"]}

    async with pool.acquire() as conn:
        number = await card(orders, conn, 1)
        assert given(await buy(orders, conn, number, "o-1")) == {"weekly", "monthly"}
        assert given(await buy(orders, conn, number, "o-2")) == set()
        clock.advance(timedelta(days=26))  # past the week, inside the month
        assert given(await buy(orders, conn, number, "o-3")) == {"weekly"}
        clock.advance(timedelta(days=5))  # o-1 left the month; o-3 is still inside its week
        assert given(await buy(orders, conn, number, "o-4")) == {"monthly"}


@pytest.mark.usefixtures("database_url")
async def test_an_unlimited_promotion_counts_its_uses_and_a_limit_added_later_counts_them_too(
    pool: Pool, clock: FakeClock
) -> None:
    orders = service(clock, {"id": "free", "benefit": {"type": "percent_off", "lines": {}, "percent_bp": 1000}})
    async with pool.acquire() as conn:
        number = await card(orders, conn, 1)
        assert (await buy(orders, conn, number, "o-1"))["discount"] == 300
        assert (await buy(orders, conn, number, "o-2"))["discount"] == 300
        assert await conn.fetchval("SELECT count(*) FROM promotion_uses") == 2  # a later limit counts them
        assert await Usages().totals(conn, "free") == (2, 600, 0)
        await give_back(orders, conn, "o-1", 2, "r-1")
        assert await Usages().totals(conn, "free") == (2, 400, 0)  # o-1 keeps a third of its discount
        await give_back(orders, conn, "o-1", 1, "r-2")
        assert await Usages().totals(conn, "free") == (1, 300, 0)  # all of o-1 went back
    # A new revision limits it to once per customer: o-2 (kept) already counts.
    limited = service(
        clock,
        {
            "id": "free",
            "benefit": {"type": "percent_off", "lines": {}, "percent_bp": 1000},
            "limits": {"per_customer": {"count": 1}},
        },
    )
    async with pool.acquire() as conn:
        assert (await buy(limited, conn, number, "o-3"))["discount"] == 0


@pytest.mark.usefixtures("database_url")
async def test_a_budget_a_later_revision_adds_counts_the_orders_before_it(pool: Pool, clock: FakeClock) -> None:
    """A budget is over the promotion's life: its row starts from the uses so far, refunds taken back."""
    orders = service(clock, FREE)
    async with pool.acquire() as conn:
        numbers = await shoppers(orders, conn, 5, bought=3)
        await give_back(orders, conn, "o-2", 3, "r-2")  # all of o-2 went back: its use with it
    budgeted = service(clock, {**FREE, "limits": {"budget": {"count": 3}}})
    async with pool.acquire() as conn:
        assert (await buy(budgeted, conn, numbers[3], "o-3"))["discount"] == 300  # the third order
        assert (await buy(budgeted, conn, numbers[4], "o-4"))["discount"] == 0
        budget = await conn.fetchrow("SELECT orders, discount FROM promotion_budgets WHERE promotion_id = 'free'")
        assert budget is not None
        assert tuple(budget) == (3, 900)


@pytest.mark.usefixtures("database_url")
async def test_commits_and_refunds_at_once_never_deadlock_and_budgets_stay_the_sum_of_their_uses(
    pool: Pool, clock: FakeClock
) -> None:
    """Budget rows are locked in id order by commits and refunds alike (a refund's UPDATE joined to a
    list used to lock in plan order: about one in three of these deadlocked)."""
    skus = ["a", "b", "c", "d"]
    budgets = [
        {
            "id": f"{sku}-off",
            "group": f"g-{sku}",
            "benefit": {"type": "amount_off", "lines": {"skus": [sku]}, "amount": 10},
            "limits": {"budget": {"count": 1_000}},
        }
        for sku in skus
    ]
    orders = service(clock, *budgets)
    async with pool.acquire() as conn:
        cards = [await card(orders, conn, n) for n in range(24)]
        await reloaded(conn, clock, *budgets)  # as the live catalog makes them

    async def one(n: int) -> None:
        lines = [CartLine(sku=sku, qty=1, unit_price=100) for sku in (skus[n % 4 :] + skus[: n % 4])[: 2 + n % 3]]
        if n % 2:
            lines.reverse()
        async with pool.acquire() as conn:
            await buy(orders, conn, cards[n], f"o-{n}", *lines)
            async with conn.transaction():
                back = tuple(ReturnLine(sku=line.sku, qty=1) for line in lines[: 1 + n % len(lines)])
                data = RefundInput(refund_id=f"r-{n}", lines=back)
                await orders.refund(conn, f"o-{n}", data, idempotency_key=f"r-{n}", api_key_id=None, store="s1")

    await asyncio.gather(*(one(n) for n in range(24)))
    async with pool.acquire() as conn:
        budgets = await conn.fetch("SELECT promotion_id, orders, discount FROM promotion_budgets ORDER BY 1")
        uses = await conn.fetch(
            "SELECT promotion_id, count(*) FILTER (WHERE NOT returned) AS orders,"
            " sum(discount - returned_discount) AS discount FROM promotion_uses GROUP BY 1 ORDER BY 1"
        )
    assert [tuple(r) for r in budgets] == [tuple(r) for r in uses]


@pytest.mark.usefixtures("database_url")
async def test_a_refund_gives_back_only_what_the_book_recorded(pool: Pool, clock: FakeClock) -> None:
    """An order priced without the book (a remote engine, before the switch to the embedded one) names
    promotions on its lines; its refund takes nothing from a budget it never counted in."""
    budgeted = {
        "id": "five",
        "benefit": {"type": "amount_off", "lines": {}, "amount": 100},
        "limits": {"budget": {"count": 5}},
    }
    orders = service(clock, budgeted)
    unbooked = OrderService(program=DEFAULT_PROGRAM, engine=orders.engine, customers=orders.customers, clock=clock)
    async with pool.acquire() as conn:
        first, second = await card(orders, conn, 1), await card(orders, conn, 2)
        assert (await buy(orders, conn, first, "booked"))["discount"] == 300
        assert (await buy(unbooked, conn, second, "unbooked"))["discount"] == 300
        assert await conn.fetchval("SELECT count(*) FROM order_lines WHERE promotions IS NOT NULL") == 2
        returned = await give_back(orders, conn, "unbooked", 3, "r-1")
        assert not any("«x»" in line for line in returned["receipt_lines"])
        budget = await conn.fetchrow("SELECT orders, discount FROM promotion_budgets")
        assert budget is not None
        assert tuple(budget) == (1, 300)  # the booked order, as it was


async def reloaded(conn: Connection, clock: FakeClock, *promotions: dict[str, Any]) -> None:
    """What a process's live catalog does to the budget rows as it loads ``promotions`` (revision 1)."""
    version = await conn.fetchval("SELECT version FROM promotion_catalog") or 0
    assert await ensure_budget_rows(conn, snapshot(clock, *promotions, version=version))


def snapshot(clock: FakeClock, *promotions: dict[str, Any], version: int = 0) -> Snapshot:
    """The live catalog's snapshot of ``promotions`` (revision 1), as a reload reads it."""
    return Snapshot(
        version=version,
        promotions=tuple(
            LivePromotion(p["id"], 1, parse_promotion({"title": {"en": "x"}, **p}), clock.now()) for p in promotions
        ),
    )


@pytest.mark.usefixtures("database_url")
async def test_a_budget_the_live_catalog_adds_again_counts_from_the_uses(pool: Pool, clock: FakeClock) -> None:
    """The reload makes a budget's row from the uses so far; while the budget is gone the row stands
    still (its commits lock nothing), and a reload that brings the budget back makes it again."""
    budgeted = {**FREE, "limits": {"budget": {"count": 4}}}
    orders = service(clock, FREE)
    async with pool.acquire() as conn:
        numbers = await shoppers(orders, conn, 6, bought=2)
        await reloaded(conn, clock, budgeted)
        row = await conn.fetchrow("SELECT orders, discount FROM promotion_budgets WHERE promotion_id = 'free'")
        assert row is not None
        assert tuple(row) == (2, 600)
        await reloaded(conn, clock, FREE)  # the budget went
        assert (await buy(orders, conn, numbers[2], "o-2"))["discount"] == 300  # no budget: no lock, no count
        assert await conn.fetchval("SELECT orders FROM promotion_budgets") == 2
        await reloaded(conn, clock, budgeted)  # back
        row = await conn.fetchrow("SELECT orders, discount FROM promotion_budgets WHERE promotion_id = 'free'")
        assert row is not None
        assert tuple(row) == (3, 900)
        again = service(clock, budgeted)
        assert (await buy(again, conn, numbers[3], "o-3"))["discount"] == 300  # the fourth
        assert (await buy(again, conn, numbers[4], "o-4"))["discount"] == 0
        await reloaded(conn, clock, budgeted)  # a process starting: the row is true
        assert await conn.fetchval("SELECT orders FROM promotion_budgets") == 4


@pytest.mark.usefixtures("database_url")
async def test_making_a_row_again_counts_the_commit_it_waited_for(pool: Pool, clock: FakeClock) -> None:
    """A commit that priced with the budget holds its row while the row is made again: the sums are
    taken after it has committed, not as the uses stood when the reload began."""
    budgeted = {**FREE, "limits": {"budget": {"count": 4}}}
    orders = service(clock, FREE)
    async with pool.acquire() as conn:
        await shoppers(orders, conn, 2, bought=2)
        await reloaded(conn, clock, budgeted)
        await reloaded(conn, clock, FREE)  # the row stops counting
    async with pool.acquire() as till, pool.acquire() as reload:
        async with till.transaction():  # a commit on a process that already has the budget back
            await till.execute("SELECT FROM promotion_budgets WHERE promotion_id = 'free' FOR UPDATE")
            await till.execute(
                "INSERT INTO promotion_uses (order_pk, promotion_id, revision, customer_id, used_at, discount, points)"
                " VALUES (1000000, 'free', 1, gen_random_uuid(), now(), 300, 0)"
            )
            await till.execute(
                "UPDATE promotion_budgets SET orders = orders + 1, discount = discount + 300"
                " WHERE promotion_id = 'free'"
            )
            making = asyncio.create_task(reloaded(reload, clock, budgeted))
            waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid = $1"
            while not await till.fetchval(waiting, reload.get_server_pid()):  # the reload waits on the row
                assert not making.done()
                await asyncio.sleep(0.01)
        await making
        row = await reload.fetchrow("SELECT orders, discount FROM promotion_budgets WHERE promotion_id = 'free'")
    assert row is not None
    assert tuple(row) == (3, 900)


@pytest.mark.usefixtures("database_url")
async def test_a_catalog_read_before_a_change_leaves_the_budget_rows_alone(pool: Pool, clock: FakeClock) -> None:
    """A process that read the catalog just before a change must not undo what the newer one did to the
    rows: it reads again instead."""
    budgeted = {**FREE, "limits": {"budget": {"count": 4}}}
    async with pool.acquire() as conn:
        await reloaded(conn, clock, budgeted)
        before = await conn.fetchval("SELECT version FROM promotion_catalog") or 0
        await conn.execute(
            "INSERT INTO promotion_catalog (singleton, version) VALUES (true, $1)"
            " ON CONFLICT (singleton) DO UPDATE SET version = excluded.version",
            before + 1,
        )
        await reloaded(conn, clock, FREE)  # the newer catalog: the budget went
        assert not await ensure_budget_rows(conn, snapshot(clock, budgeted, version=before))  # the stale one
        assert await conn.fetchval("SELECT counting FROM promotion_budgets") is False


@pytest.mark.usefixtures("database_url")
async def test_quick_expiring_points_are_credited_as_their_own_lot_and_refunds_take_them_back(
    pool: Pool, clock: FakeClock
) -> None:
    """Seed 003's bonus points that burn in a week: credited with the order, available after the pending
    period like any accrual, expiring 7 days after the purchase; returning the goods takes them back."""
    orders = service(clock, {"id": "week", "benefit": {"type": "points_fixed", "points": 500, "expires_in_days": 7}})
    async with pool.acquire() as conn:
        number = await card(orders, conn, 1)
        bought = await buy(orders, conn, number, "o-1")
        assert bought["accrued_points"] == 150 + 500  # 5 % of 30.00, and the promotion's 5 points
        lots = await conn.fetch("SELECT points, expires_at FROM lots ORDER BY points")
        assert [(r["points"], r["expires_at"]) for r in lots] == [
            (150, DEFAULT_PROGRAM.expires_at(clock.now())),
            (500, clock.now() + timedelta(days=7)),
        ]
        await give_back(orders, conn, "o-1", 3, "r-1")
        taken = await conn.fetchval("SELECT points_taken_back FROM refunds")
        assert taken == 650  # every point the order earned, the quick ones included


@pytest.mark.usefixtures("database_url")
async def test_calculate_shows_a_promotion_only_while_it_fits_its_limits(pool: Pool, clock: FakeClock) -> None:
    orders = service(
        clock,
        {
            "id": "two",
            "benefit": {"type": "amount_off", "lines": {}, "amount": 100},
            "limits": {"budget": {"count": 2}},
        },
    )
    assert promotion_book(orders.engine) is not None  # the embedded engine's book: calculate reads what it counted
    async with pool.acquire() as conn:
        numbers = [await card(orders, conn, n) for n in range(3)]
        quote = await orders.calculate(
            conn, CalculateInput(card=numbers[2], lines=(TEA,)), store="s1", terminal="t", channel="pos"
        )
        assert quote.discount == 300
        for n in range(2):
            assert (await buy(orders, conn, numbers[n], f"o-{n}"))["discount"] == 300
        quote = await orders.calculate(
            conn, CalculateInput(card=numbers[2], lines=(TEA,)), store="s1", terminal="t", channel="pos"
        )
        assert quote.discount == 0
