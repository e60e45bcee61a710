"""Property tests of the ledger: random sequences of purchases, refunds, grants, time passing, jobs,
no-name cards merged into the shopper's account and the account closed (and the phone joining again),
run against the real database and checked after every step against a small independent model.

Invariants:
- the balance equals the sum of the entries: ``sum(entries) == sum(lots.remaining) - debt``, and
  available + pending (+ points past expiry the job has not written off yet) == sum(entries);
- no lot ever holds less than zero or more than it was credited;
- nothing is created or lost: the entries add up to what the API said it accrued, redeemed, took back,
  gave back, granted and expired, and every lot holds exactly what the model says it should;
- a merge moves every lot, entry and the debt of the no-name account to the shopper's, leaving nothing
  behind; closing writes the points off and forgives the debt with adjustments, and the closed
  account keeps its entries, summing to zero.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine.embedded import EmbeddedEngine
from kartka.clock import FakeClock
from kartka.db import Pool, create_pool
from kartka.errors import Conflict
from kartka.settings import Settings
from notifications.audience import ALL_CHANNELS
from notifications.triggers import Notifier
from wallet import account, grants, ledger
from wallet.customers import CustomerService, Origin
from wallet.models import Outcome, Source
from wallet.orders import CommitInput, OrderService, RefundInput, ReturnLine
from wallet.pricing import CartLine
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

    def absorb(self, other: Model) -> None:
        """A merge: the other account's lots, debt and history become this one's (debts add up; neither
        side's lots repay the other's debt)."""
        self.lots = sorted(self.lots + other.lots, key=lambda lot: lot.id)
        self.debt += other.debt
        for kind, points in other.totals.items():
            self.totals[kind] += points
        self.spent_from |= other.spent_from
        other.lots, other.debt, other.spent_from = [], 0, {}
        other.totals = dict.fromkeys(ledger.EntryKind, 0)

    def close(self) -> None:
        """Closing: every lot written off (due or not) and the debt forgiven, as adjustments."""
        self.totals[ledger.EntryKind.ADJUSTMENT] += self.debt - sum(lot.remaining for lot in self.lots)
        for lot in self.lots:
            lot.remaining = 0
        self.debt = 0


@dataclass
class Account:
    """One customer the machine made, and what its ledger should hold."""

    customer_id: UUID
    card: str
    model: Model = field(default_factory=Model)
    state: str = "open"  # "open", "merged" (into the shopper's) or "closed"
    merged_into: Account | None = None


class LedgerMachine(RuleBasedStateMachine):
    runner: asyncio.Runner
    pool: Pool
    program: Program = DEFAULT_PROGRAM

    main: Account  # the phone's current account (a new one after each closing)
    phone: str

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
        self.accounts: list[Account] = []  # every customer made, merged and closed ones included
        self.settled: set[UUID] = set()  # closed or merged accounts whose zero balance was checked
        self.no_name: Account | None = None  # a no-name card's account, until it is merged
        # n-th purchase -> (order id, sku -> returnable qty, the account it was made on)
        self.sold: dict[int, tuple[str, dict[str, int], Account]] = {}

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    async def _tx(self, work: Any) -> Any:
        async with self.pool.acquire() as conn, conn.transaction():
            return await work(conn)

    def _register(self) -> None:
        async def work(conn: Any) -> Any:
            return await self.customers.register(conn, phone=self.phone, origin=Origin(source=Source.POS))

        registration = self.run(self._tx(work))
        assert registration.created
        self.main = Account(registration.customer.id, registration.card.number)
        self.accounts.append(self.main)

    @initialize()
    def register(self) -> None:
        self.phone = f"+375293{next(_counter) % 1_000_000:06d}"
        self._register()

    async def _lots(self, customer_ids: list[UUID]) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return await conn.fetch(
                "SELECT id, customer_id, kind, points, remaining, available_at, expires_at FROM lots"
                " WHERE customer_id = ANY($1::uuid[]) ORDER BY id",
                customer_ids,
            )

    def _sync_new_lots(self, owner: Account, order: str | None) -> None:
        """Pick up lots the API just created, in creation order, and credit them to the model."""
        known = {lot.id for lot in owner.model.lots}
        for row in self.run(self._lots([owner.customer_id])):
            if row["id"] not in known:
                owner.model.credit(
                    Lot(row["id"], order, row["kind"], row["points"], 0, row["available_at"], row["expires_at"])
                )

    def _owner(self, owner: Account) -> Account:
        """Where an account's orders live now: a merged no-name account's are those of the account it
        was merged into (which may have been closed since)."""
        while owner.merged_into is not None:
            owner = owner.merged_into
        return owner

    # -- rules ----------------------------------------------------------------------------------

    def _purchase(self, owner: Account, prices: list[tuple[int, int, bool]], redeem_share: float, hours: int) -> None:
        now = self.clock.now()
        model = owner.model
        order_id = f"o{next(_counter)}"
        lines = tuple(
            CartLine(sku=f"s{n}", qty=qty, unit_price=price, on_sale=sale and n > 0)
            for n, (qty, price, sale) in enumerate(prices)
        )
        available = max(model.available(now), 0)
        eligible = sum(line.total for line in lines if not line.on_sale)
        cap = min(available, eligible * self.program.redeem_cap_bp // 10_000)
        requested = int(cap * redeem_share)
        data = CommitInput(
            order_id=order_id,
            card=owner.card,
            lines=lines,
            redeem_points=requested,
            purchased_at=now - timedelta(hours=hours),
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
        before = {lot.id: lot.remaining for lot in model.lots}
        if requested:
            model.consume(model.spendable(now), requested)
            model.spent_from[order_id] = [lot for lot in model.lots if lot.remaining < before[lot.id]]
        self._sync_new_lots(owner, order_id)
        model.totals[ledger.EntryKind.ACCRUAL] += result["accrued_points"]
        model.totals[ledger.EntryKind.REDEMPTION] -= requested
        self.sold[len(self.sold)] = (order_id, {line.sku: line.qty for line in lines}, owner)

    @rule(
        prices=st.lists(st.tuples(st.integers(1, 3), st.integers(50, 40_000), st.booleans()), min_size=1, max_size=3),
        redeem_share=st.sampled_from([0, 0.3, 1, 1, 1.5]),
        hours_ago=st.sampled_from([0, 0, 0, 30, 24 * 29]),
    )
    def purchase(self, prices: list[tuple[int, int, bool]], redeem_share: float, hours_ago: int) -> None:
        self._purchase(self.main, prices, redeem_share, hours_ago)

    @precondition(lambda self: self.no_name is not None)
    @rule(
        prices=st.lists(st.tuples(st.integers(1, 3), st.integers(50, 40_000), st.booleans()), min_size=1, max_size=2),
        redeem_share=st.sampled_from([0, 1, 1.5]),
        hours_ago=st.sampled_from([0, 30]),
    )
    def no_name_purchase(self, prices: list[tuple[int, int, bool]], redeem_share: float, hours_ago: int) -> None:
        assert self.no_name is not None
        self._purchase(self.no_name, prices, redeem_share, hours_ago)

    def _refundable(self) -> list[int]:
        """Purchases with something left to return, on accounts not closed."""
        return sorted(
            n for n, (_, skus, owner) in self.sold.items() if any(skus.values()) and self._owner(owner).state == "open"
        )

    @precondition(lambda self: self._refundable())
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        n = data.draw(st.sampled_from(self._refundable()))
        order_id, skus, owner = self.sold[n]
        owner = self._owner(owner)
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
        model = owner.model
        debited = 0
        if result["points_taken_back"]:
            debited = model.take_back(order_id, result["points_taken_back"], now, self.program.refund_policy)
        self._sync_new_lots(owner, order_id)
        model.totals[ledger.EntryKind.REFUND_TAKE_BACK] -= debited
        model.totals[ledger.EntryKind.REFUND_RETURN] += result["points_returned"]
        if result["points_returned"]:
            returned = model.lots[-1]
            assert returned.kind == "refund_return"
            assert returned.expires_at == max(lot.expires_at for lot in model.spent_from[order_id])

    @rule(points=st.integers(1, 20_000), days=st.integers(1, 60))
    def grant(self, points: int, days: int) -> None:
        async def work(conn: Any) -> Any:
            data = grants.GrantInput(points=points, expires_in_days=days, reason="property test")
            return await grants.grant(
                conn, self.program, self.clock, self.customers.events, self.main.customer_id, data, actor=None
            )

        self.run(self._tx(work))
        self._sync_new_lots(self.main, None)
        self.main.model.totals[ledger.EntryKind.GRANT] += points

    @precondition(lambda self: self.no_name is None)
    @rule(
        purchases=st.lists(
            st.lists(st.tuples(st.integers(1, 3), st.integers(50, 40_000), st.booleans()), min_size=1, max_size=2),
            max_size=2,
        )
    )
    def issue_no_name_card(self, purchases: list[list[tuple[int, int, bool]]]) -> None:
        """A till hands out a no-name card, and the shopper buys with it (without points to spend yet)."""

        async def work(conn: Any) -> Any:
            return await self.customers.issue_anonymous_card(conn, origin=Origin(source=Source.POS))

        registration = self.run(self._tx(work))
        self.no_name = Account(registration.customer.id, registration.card.number)
        self.accounts.append(self.no_name)
        for prices in purchases:
            self._purchase(self.no_name, prices, 0, 0)

    @precondition(lambda self: self.no_name is not None)
    @rule()
    def merge_no_name_card(self) -> None:
        """The shopper types their phone for the no-name card: its account merges into theirs."""
        no_name = self.no_name
        assert no_name is not None

        async def work(conn: Any) -> Any:
            return await self.customers.attach_card(
                conn, number=no_name.card, phone=self.phone, origin=Origin(source=Source.POS), now=self.clock.now()
            )

        attachment = self.run(self._tx(work))
        assert attachment.outcome is Outcome.MERGED
        assert attachment.customer.id == self.main.customer_id
        self.main.model.absorb(no_name.model)
        no_name.state, no_name.merged_into = "merged", self.main
        self.no_name = None

    @precondition(lambda self: any(lot.remaining for lot in self.main.model.lots) or self.main.model.debt)
    @rule()
    def close_account(self) -> None:
        """The shopper closes the account; the phone joins again as a new customer at once."""
        closed = self.main

        async def work(conn: Any) -> Any:
            await account.close_account(conn, self.customers, closed.customer_id, self.clock.now())

        self.run(self._tx(work))
        closed.model.close()
        closed.state = "closed"
        self._register()

    @rule(hours=st.sampled_from([1, 23, 24, 24 * 7, 24 * 40, 24 * 100]))
    def time_passes(self, hours: int) -> None:
        self.clock.advance(timedelta(hours=hours))

    @rule()
    def expiry_job(self) -> None:
        now = self.clock.now()

        async def work(conn: Any) -> Any:
            return (await ledger.expire_due(conn, now))[0]

        self.run(self._tx(work))
        for owner in self.accounts:
            for lot in owner.model.lots:
                if lot.expires_at <= now and lot.remaining:
                    owner.model.totals[ledger.EntryKind.EXPIRY] -= lot.remaining
                    lot.remaining = 0

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def ledger_balances(self) -> None:
        if not self.accounts:
            return
        now = self.clock.now()
        ids = [owner.customer_id for owner in self.accounts]

        # Closed and merged accounts no longer change: their balance is read once, when they become so.
        shown = [o.customer_id for o in self.accounts if o.state == "open" or o.customer_id not in self.settled]

        async def read() -> Any:
            async with self.pool.acquire() as conn:
                entries = await conn.fetch(
                    "SELECT customer_id, kind, sum(points)::bigint AS points FROM ledger_entries"
                    " WHERE customer_id = ANY($1::uuid[]) GROUP BY customer_id, kind",
                    ids,
                )
                debts = dict(
                    await conn.fetch("SELECT customer_id, debt FROM accounts WHERE customer_id = ANY($1::uuid[])", ids)
                )
                lots = await conn.fetch(
                    "SELECT id, customer_id, kind, points, remaining, available_at, expires_at FROM lots"
                    " WHERE customer_id = ANY($1::uuid[]) ORDER BY id",
                    ids,
                )
                balances = {i: await ledger.balance(conn, i, now, self.program) for i in shown}
                return entries, debts, lots, balances

        entries, debts, all_lots, balances = self.run(read())
        for owner in self.accounts:
            model = owner.model
            # (a closing's two adjustments may cancel out: a kind summing to zero is left out on both sides)
            by_kind = {
                row["kind"]: row["points"]
                for row in entries
                if row["customer_id"] == owner.customer_id and row["points"]
            }
            lots = [lot for lot in all_lots if lot["customer_id"] == owner.customer_id]
            debt = debts.get(owner.customer_id) or 0
            assert all(0 <= lot["remaining"] <= lot["points"] for lot in lots), "a lot went below zero or overflowed"
            assert sum(by_kind.values()) == sum(lot["remaining"] for lot in lots) - debt, "entries and lots disagree"
            assert {k: v for k, v in model.totals.items() if v} == by_kind, "points were created or lost"
            assert {lot.id: lot.remaining for lot in model.lots} == {lot["id"]: lot["remaining"] for lot in lots}
            assert debt == model.debt
            if owner.customer_id in balances:
                balance = balances[owner.customer_id]
                assert balance.available == model.available(now)
                assert balance.pending == model.pending(now)
                # The balance is the sum of the entries (points past expiry count until the job writes them off).
                past_due = sum(lot["remaining"] for lot in lots if lot["expires_at"] <= now)
                assert balance.available + balance.pending + past_due == sum(by_kind.values())
                if owner.state != "open":
                    self.settled.add(owner.customer_id)
            if owner.state == "merged":  # everything moved to the shopper's account
                assert not lots
                assert not by_kind
                assert owner.customer_id not in debts
            if owner.state == "closed":  # the books stay, at zero
                assert sum(by_kind.values()) == 0
                assert debt == 0


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
    max_examples=30,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
