"""Property tests of the ledger: random sequences of purchases, refunds, grants, time passing and jobs,
run against the real database and checked after every step against a small independent model.

Invariants:
- the balance equals the sum of the entries: ``sum(entries) == sum(lots.remaining) - debt``, and
  available + pending (+ points past expiry the job has not written off yet) == sum(entries);
- no lot ever holds less than zero or more than it was credited;
- nothing is created or lost: the entries add up to what the API said it accrued, redeemed, took back,
  gave back, granted and expired, and every lot holds exactly what the model says it should.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kartka.clock import FakeClock
from kartka.db import Pool, create_pool
from kartka.errors import Conflict
from kartka.settings import Settings
from notifications.audience import ALL_CHANNELS
from notifications.triggers import Notifier
from wallet import grants, ledger
from wallet.customers import CustomerService, Origin
from wallet.models import Source
from wallet.orders import CommitInput, OrderService, RefundInput, ReturnLine
from wallet.pricing.embedded import EmbeddedEngine
from wallet.pricing.port import CartLine
from wallet.program import DEFAULT_PROGRAM, Program

_counter = itertools.count()


@dataclass
class Lot:
    id: int
    order: str | None
    kind: str
    points: int
    remaining: int
    available_at: datetime
    expires_at: datetime


@dataclass
class Model:
    """What the ledger should hold, computed from the API's answers with the rules written out plainly."""

    lots: list[Lot] = field(default_factory=list)
    debt: int = 0
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ledger.EntryKind, 0))
    spent_from: dict[str, list[Lot]] = field(default_factory=dict)

    def credit(self, lot: Lot) -> None:
        repay = min(lot.points, self.debt)
        self.debt -= repay
        lot.remaining = lot.points - repay
        self.lots.append(lot)

    def consume(self, lots: list[Lot], points: int) -> int:
        taken = 0
        for lot in lots:
            step = min(lot.remaining, points - taken)
            lot.remaining -= step
            taken += step
        return taken

    def spendable(self, now: datetime) -> list[Lot]:
        return sorted(
            (lot for lot in self.lots if lot.remaining and lot.available_at <= now < lot.expires_at),
            key=lambda lot: (lot.expires_at, lot.id),
        )

    def take_back(self, order: str, points: int, now: datetime, policy: str) -> int:
        open_lots = [lot for lot in self.lots if lot.remaining and lot.expires_at > now]
        ordered = sorted(
            open_lots,
            key=lambda lot: (
                not (lot.kind == "accrual" and lot.order == order),
                lot.available_at > now,
                lot.expires_at,
                lot.available_at,
                lot.id,
            ),
        )
        taken = self.consume(ordered, points)
        if policy == "debt":
            self.debt += points - taken
            return points
        return taken

    def available(self, now: datetime) -> int:
        return sum(lot.remaining for lot in self.spendable(now)) - self.debt

    def pending(self, now: datetime) -> int:
        return sum(lot.remaining for lot in self.lots if lot.available_at > now and lot.expires_at > now)


class LedgerMachine(RuleBasedStateMachine):
    runner: asyncio.Runner
    pool: Pool
    program: Program = DEFAULT_PROGRAM

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(datetime(2026, 1, 15, 10, 0, tzinfo=UTC))
        self.customers = CustomerService(
            region="BY",
            card_prefix="2",
            program=self.program,
            events=Notifier(program=self.program, public_base="http://test", available=ALL_CHANNELS),
            clock=self.clock,
        )
        self.orders = OrderService(
            program=self.program, engine=EmbeddedEngine(self.program), customers=self.customers, clock=self.clock
        )
        self.model = Model()
        self.sold: dict[int, tuple[str, dict[str, int]]] = {}  # n-th purchase -> (order id, sku -> returnable qty)

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    async def _tx(self, work: Any) -> Any:
        async with self.pool.acquire() as conn, conn.transaction():
            return await work(conn)

    @initialize()
    def register(self) -> None:
        phone = f"+375293{next(_counter) % 1_000_000:06d}"

        async def work(conn: Any) -> Any:
            return await self.customers.register(conn, phone=phone, origin=Origin(source=Source.POS))

        registration = self.run(self._tx(work))
        self.customer_id = registration.customer.id
        self.card = registration.card.number

    async def _lots(self) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return await conn.fetch(
                "SELECT id, kind, points, remaining, available_at, expires_at FROM lots"
                " WHERE customer_id = $1 ORDER BY id",
                self.customer_id,
            )

    def _sync_new_lots(self, order: str | None) -> None:
        """Pick up lots the API just created, in creation order, and credit them to the model."""
        known = {lot.id for lot in self.model.lots}
        for row in self.run(self._lots()):
            if row["id"] not in known:
                self.model.credit(
                    Lot(row["id"], order, row["kind"], row["points"], 0, row["available_at"], row["expires_at"])
                )

    # -- rules ----------------------------------------------------------------------------------

    @rule(
        prices=st.lists(st.tuples(st.integers(1, 3), st.integers(50, 40_000), st.booleans()), min_size=1, max_size=3),
        redeem_share=st.sampled_from([0, 0.3, 1, 1, 1.5]),
        hours_ago=st.sampled_from([0, 0, 0, 30, 24 * 29]),
    )
    def purchase(self, prices: list[tuple[int, int, bool]], redeem_share: float, hours_ago: int) -> None:
        now = self.clock.now()
        order_id = f"o{next(_counter)}"
        lines = tuple(
            CartLine(sku=f"s{n}", qty=qty, unit_price=price, on_sale=sale and n > 0)
            for n, (qty, price, sale) in enumerate(prices)
        )
        available = max(self.model.available(now), 0)
        eligible = sum(line.total for line in lines if not line.on_sale)
        cap = min(available, eligible * self.program.redeem_cap_bp // 10_000)
        requested = int(cap * redeem_share)
        data = CommitInput(
            order_id=order_id,
            card=self.card,
            lines=lines,
            redeem_points=requested,
            purchased_at=now - timedelta(hours=hours_ago),
        )

        async def work(conn: Any) -> Any:
            return await self.orders.commit(
                conn, data, idempotency_key=order_id, api_key_id=None, store=None, terminal=None
            )

        try:
            stored = self.run(self._tx(work))
        except Conflict:
            assert requested > cap, "only asking for more than may be redeemed is refused"
            return
        assert requested <= cap
        result = msgspec.json.decode(stored.body)
        assert result["redeemed_points"] == requested
        before = {lot.id: lot.remaining for lot in self.model.lots}
        if requested:
            self.model.consume(self.model.spendable(now), requested)
            self.model.spent_from[order_id] = [lot for lot in self.model.lots if lot.remaining < before[lot.id]]
        self._sync_new_lots(order_id)
        self.model.totals[ledger.EntryKind.ACCRUAL] += result["accrued_points"]
        self.model.totals[ledger.EntryKind.REDEMPTION] -= requested
        self.sold[len(self.sold)] = (order_id, {line.sku: line.qty for line in lines})

    @precondition(lambda self: any(any(skus.values()) for _, skus in self.sold.values()))
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        n = data.draw(st.sampled_from(sorted(n for n, (_, skus) in self.sold.items() if any(skus.values()))))
        order_id, skus = self.sold[n]
        sku = data.draw(st.sampled_from(sorted(s for s, q in skus.items() if q)))
        qty = data.draw(st.integers(1, skus[sku] + 1))  # sometimes one more than is left
        now = self.clock.now()
        refund = RefundInput(refund_id=f"r{next(_counter)}", lines=(ReturnLine(sku=sku, qty=qty),))

        async def work(conn: Any) -> Any:
            return await self.orders.refund(conn, order_id, refund, idempotency_key=refund.refund_id, api_key_id=None)

        try:
            stored = self.run(self._tx(work))
        except Conflict:
            assert qty > skus[sku], "only returning more than is left is refused"
            return
        skus[sku] -= qty
        result = msgspec.json.decode(stored.body)
        debited = 0
        if result["points_taken_back"]:
            debited = self.model.take_back(order_id, result["points_taken_back"], now, self.program.refund_policy)
        self._sync_new_lots(order_id)
        self.model.totals[ledger.EntryKind.REFUND_TAKE_BACK] -= debited
        self.model.totals[ledger.EntryKind.REFUND_RETURN] += result["points_returned"]
        if result["points_returned"]:
            returned = self.model.lots[-1]
            assert returned.kind == "refund_return"
            assert returned.expires_at == max(lot.expires_at for lot in self.model.spent_from[order_id])

    @rule(points=st.integers(1, 20_000), days=st.integers(1, 60))
    def grant(self, points: int, days: int) -> None:
        async def work(conn: Any) -> Any:
            data = grants.GrantInput(points=points, expires_in_days=days, reason="property test")
            return await grants.grant(
                conn, self.program, self.clock, self.customers.events, self.customer_id, data, actor=None
            )

        self.run(self._tx(work))
        self._sync_new_lots(None)
        self.model.totals[ledger.EntryKind.GRANT] += points

    @rule(hours=st.sampled_from([1, 23, 24, 24 * 7, 24 * 40, 24 * 100]))
    def time_passes(self, hours: int) -> None:
        self.clock.advance(timedelta(hours=hours))

    @rule()
    def expiry_job(self) -> None:
        now = self.clock.now()

        async def work(conn: Any) -> Any:
            return (await ledger.expire_due(conn, now))[0]

        self.run(self._tx(work))
        for lot in self.model.lots:
            if lot.expires_at <= now and lot.remaining:
                self.model.totals[ledger.EntryKind.EXPIRY] -= lot.remaining
                lot.remaining = 0

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def ledger_balances(self) -> None:
        if not hasattr(self, "customer_id"):
            return
        now = self.clock.now()

        async def read() -> Any:
            async with self.pool.acquire() as conn:
                entries = await conn.fetch(
                    "SELECT kind, sum(points)::bigint AS points FROM ledger_entries"
                    " WHERE customer_id = $1 GROUP BY kind",
                    self.customer_id,
                )
                debt = await conn.fetchval("SELECT debt FROM accounts WHERE customer_id = $1", self.customer_id)
                balance = await ledger.balance(conn, self.customer_id, now, self.program)
                return entries, debt or 0, balance

        entries, debt, balance = self.run(read())
        by_kind = {row["kind"]: row["points"] for row in entries}
        lots = self.run(self._lots())
        assert all(0 <= lot["remaining"] <= lot["points"] for lot in lots), "a lot went below zero or overflowed"
        assert sum(by_kind.values()) == sum(lot["remaining"] for lot in lots) - debt, "entries and lots disagree"
        assert {k: v for k, v in self.model.totals.items() if v} == by_kind, "points were created or lost"
        assert {lot.id: lot.remaining for lot in self.model.lots} == {lot["id"]: lot["remaining"] for lot in lots}
        assert debt == self.model.debt
        assert balance.available == self.model.available(now)
        assert balance.pending == self.model.pending(now)
        # The balance is the sum of the entries (points past expiry count until the job writes them off).
        past_due = sum(lot["remaining"] for lot in lots if lot["expires_at"] <= now)
        assert balance.available + balance.pending + past_due == sum(by_kind.values())


@pytest.mark.parametrize("policy", ["debt", "forgive"])
def test_ledger_invariants_hold_over_random_histories(settings: Settings, policy: str) -> None:
    """Runs the state machine on its own event loop and pool against the suite's database, under both
    refund policies (a negative balance, or letting spent points go)."""
    with asyncio.Runner() as runner:
        pool = runner.run(create_pool(settings, application="kartka-properties"))
        LedgerMachine.runner = runner
        LedgerMachine.pool = pool
        LedgerMachine.program = msgspec.structs.replace(DEFAULT_PROGRAM, refund_policy=policy)
        try:
            machine = LedgerMachine.TestCase
            machine.settings = settings_for_machine
            machine().runTest()
        finally:
            runner.run(pool.close())


settings_for_machine = hypothesis_settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
