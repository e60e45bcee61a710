"""Writes racing a merge of their no-name card, made deterministic with two connections.

The merge (a no-name card attached to a phone that already has a card) is held open in a transaction of
its own; the purchase, grant or refund is started on another connection, and the test waits until
PostgreSQL shows it blocked behind the merge's locks. Only then does the merge commit. So each write has
found the no-name customer before the merge and takes its lock after it: the interleaving that used to
re-create the merged-away account and leave the points where the shopper never sees them.

The services are driven directly on test connections: Litestar's test client runs each request to the
end before the test's own code goes on, so it cannot hold a transaction open beside one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

import msgspec
import pytest

from engine.embedded import EmbeddedEngine
from kartka.clock import FakeClock
from kartka.db import Connection, Pool
from tests.helpers import NOTIFIER
from wallet import grants
from wallet.account import close_account
from wallet.customers import CustomerService, Origin
from wallet.errors import CardClosed, CustomerNotFound
from wallet.models import Source
from wallet.orders import CommitInput, OrderService, RefundInput, ReturnLine
from wallet.pricing import CartLine
from wallet.program import DEFAULT_PROGRAM

PHONE = "+375291234567"
T = TypeVar("T")


@pytest.fixture
def customers(clock: FakeClock) -> CustomerService:
    return CustomerService(region="BY", card_prefix="2", program=DEFAULT_PROGRAM, events=NOTIFIER, clock=clock)


@pytest.fixture
def orders(customers: CustomerService, clock: FakeClock) -> OrderService:
    return OrderService(
        program=DEFAULT_PROGRAM, engine=EmbeddedEngine(DEFAULT_PROGRAM), customers=customers, clock=clock
    )


async def _in_tx(pool: Pool, work: Callable[[Connection], Awaitable[T]]) -> T:
    async with pool.acquire() as conn, conn.transaction():
        return await work(conn)


async def _blocked_behind(pool: Pool, pid: int) -> None:
    """Return once another backend waits for a lock ``pid`` holds: a fact in the catalog, not a guess."""
    deadline = time.monotonic() + 5
    while not await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", pid):
        assert time.monotonic() < deadline, "the write never reached the account lock"
        await asyncio.sleep(0.005)


async def _race(pool: Pool, customers: CustomerService, number: str, write: Callable[[Connection], Awaitable[T]]) -> T:
    """Run ``write`` so that it finds its customer before the merge of ``number`` commits and locks after."""

    async def merge(conn: Connection) -> None:
        attached = await customers.attach_card(
            conn, number=number, phone=PHONE, origin=Origin(source=Source.POS), now=customers.clock.now()
        )
        assert attached.outcome == "merged"

    return await _behind(pool, merge, write)


async def _behind(
    pool: Pool, first: Callable[[Connection], Awaitable[None]], write: Callable[[Connection], Awaitable[T]]
) -> T:
    """Run ``first`` in a transaction held open until ``write`` (on another connection) waits for its locks."""
    async with pool.acquire() as holding:
        async with holding.transaction():
            await first(holding)
            task = asyncio.ensure_future(_in_tx(pool, write))
            await _blocked_behind(pool, holding.get_server_pid())
        return await task


async def _shoppers(pool: Pool, customers: CustomerService) -> tuple[UUID, UUID, str]:
    """A phone's customer, and a no-name customer with its card number."""

    async def make(conn: Connection) -> tuple[UUID, UUID, str]:
        kept = await customers.register(conn, phone=PHONE, origin=Origin(source=Source.POS))
        anonymous = await customers.issue_anonymous_card(conn, origin=Origin(source=Source.POS))
        return kept.customer.id, anonymous.customer.id, anonymous.card.number

    return await _in_tx(pool, make)


async def _accounts_of(pool: Pool, customer_id: UUID) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM accounts WHERE customer_id = $1", customer_id)
    return count


def _commit(orders: OrderService, order_id: str, card: str, qty: int = 1) -> Callable[[Connection], Awaitable[Any]]:
    data = CommitInput(order_id=order_id, card=card, lines=(CartLine(sku="x", qty=qty, unit_price=10_000),))

    async def work(conn: Connection) -> Any:
        stored = await orders.commit(conn, data, idempotency_key=order_id, api_key_id=None, store="s1", terminal="t1")
        return msgspec.json.decode(stored.body)

    return work


async def test_a_purchase_that_found_the_no_name_card_before_a_merge_lands_on_the_kept_account(
    pool: Pool, customers: CustomerService, orders: OrderService
) -> None:
    kept, anonymous, number = await _shoppers(pool, customers)
    result = await _race(pool, customers, number, _commit(orders, "race-1", number))
    assert result["customer_id"] == str(kept)
    assert await pool.fetchval("SELECT customer_id FROM orders WHERE order_id = 'race-1'") == kept
    assert await _accounts_of(pool, anonymous) == 0  # not re-created behind the merge
    async with pool.acquire() as conn:
        seen = await customers.identify(conn, PHONE, customers.clock.now())
    assert seen.balance.pending == 500  # the shopper sees the points


async def test_a_grant_to_a_customer_merged_meanwhile_is_refused_not_lost(
    pool: Pool, customers: CustomerService, clock: FakeClock
) -> None:
    _, anonymous, number = await _shoppers(pool, customers)
    data = grants.GrantInput(points=1_000, expires_in_days=30, reason="sorry")

    async def grant(conn: Connection) -> Any:
        return await grants.grant(conn, DEFAULT_PROGRAM, clock, NOTIFIER, anonymous, data, actor="test")

    with pytest.raises(CustomerNotFound):  # as if the merge had come first
        await _race(pool, customers, number, grant)
    assert await _accounts_of(pool, anonymous) == 0
    assert await pool.fetchval("SELECT count(*) FROM lots") == 0


async def test_a_refund_racing_a_merge_follows_the_order_and_leaves_no_dead_account(
    pool: Pool, customers: CustomerService, orders: OrderService
) -> None:
    kept, anonymous, number = await _shoppers(pool, customers)
    await _in_tx(pool, _commit(orders, "race-2", number, qty=2))
    data = RefundInput(refund_id="race-2-r", lines=(ReturnLine(sku="x", qty=1),))

    async def refund(conn: Connection) -> Any:
        return await orders.refund(conn, "race-2", data, idempotency_key="race-2-r", api_key_id=None, store="s1")

    await _race(pool, customers, number, refund)
    assert await pool.fetchval("SELECT customer_id FROM refunds") == kept
    assert await _accounts_of(pool, anonymous) == 0


async def test_a_purchase_racing_the_closing_of_the_account_is_refused(
    pool: Pool, customers: CustomerService, orders: OrderService
) -> None:
    kept, _, _ = await _shoppers(pool, customers)
    number = await pool.fetchval("SELECT number FROM cards WHERE customer_id = $1", kept)

    async def close(conn: Connection) -> None:
        await close_account(conn, customers, kept, customers.clock.now())

    with pytest.raises(CardClosed):  # as if the closing had come first
        await _behind(pool, close, _commit(orders, "race-3", number))
    assert await pool.fetchval("SELECT count(*) FROM lots") == 0
