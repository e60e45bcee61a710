"""The embedded engine's book of promotions on orders (``wallet.pricing.PromotionBook``): limits counted
and what applied recorded in the commit's transaction, shares given back in the refund's.

Exact under concurrency without a global lock: a commit locks the account of its customer (the
wallet does, before pricing) and the budget rows of the limited promotions its cart meets, in id order
(no deadlocks), reads what they counted, prices with that, and adds its own use before it commits. A
parallel commit meeting the same budget waits on the row and then reads the new totals, so with
``budget.count = 5`` exactly five orders get the promotion and the rest are priced without it.
Promotions without limits take no lock: they never serialize the chain's tills.

Neither costs a commit a round trip: the read rides on the commit's snapshot statement and the record
on the order's insert, as parts (``kartka.sql.Part``) the wallet's statements carry without knowing
these tables. A statement is ~0.2 ms of a ~3–6 ms commit however little it does; two of them made a
commit with limited promotions ~20 % slower than one without.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec

from engine.embedded import EmbeddedEngine
from engine.promotions.evaluate import Active, Catalog
from engine.promotions.model import Promotion, text_in
from engine.promotions.shapes import Used
from kartka.db import Connection
from kartka.sql import Part, named
from wallet.money import prorate
from wallet.pricing import CartLine, Pricing, PricingRequest, ReturnedPart, ReturnedPromotion

#: The start of a window with no ``days``: before any order (``datetime.min`` in a zone east of UTC
#: overflows when converted to UTC).
_EVER = datetime(1970, 1, 1, tzinfo=UTC)


class PromotionBook:
    def __init__(self, engine: EmbeddedEngine) -> None:
        self.engine = engine

    def reading(self, lines: Sequence[CartLine], *, customer_id: UUID, at: datetime) -> Reading:
        return self._reading(lines, customer_id, at, lock=True)

    async def quote(self, conn: Connection, request: PricingRequest) -> Pricing:
        reading = self._reading(request.lines, request.customer_id, request.at, lock=False)
        return await reading.price(conn, request, await reading.fetch(conn))

    def _reading(
        self, lines: Sequence[CartLine], customer_id: UUID | str | None, at: datetime, *, lock: bool
    ) -> Reading:
        catalog = self.engine.catalog.current  # pinned: the read and the pricing see the same promotions
        limited, personal = catalog.state_needed(lines)
        return Reading(self.engine, catalog, limited, customer_id, at, lock=lock, personal=personal)

    async def refunded(
        self, conn: Connection, *, order_pk: int, parts: Sequence[ReturnedPart], full: bool, language: str
    ) -> tuple[ReturnedPromotion, ...]:
        # Each promotion's share of the units going back, line by line: what prorating its amount over
        # the units returned after this refund leaves, less what it left before (so the shares of all
        # the refunds of a line add up to exactly what the promotion gave there).
        back: dict[str, tuple[int, int, int]] = {}
        for part in parts:
            for a in part.promotions:
                d = prorate(a.discount, part.after, part.qty) - prorate(a.discount, part.before, part.qty)
                p = prorate(a.points, part.after, part.qty) - prorate(a.points, part.before, part.qty)
                _, sd, sp = back.get(a.id, (a.revision, 0, 0))
                back[a.id] = (a.revision, sd + d, sp + p)
        sums = {pid: (d, p) for pid, (_, d, p) in back.items() if d or p}
        if sums:
            ids = list(sums)
            # Only what the book recorded goes back: a line may name promotions another engine gave.
            recorded = {
                r["promotion_id"]
                for r in await conn.fetch(
                    "UPDATE promotion_uses u SET returned_discount = u.returned_discount + b.discount, "
                    "returned_points = u.returned_points + b.points "
                    "FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS b (id, discount, points) "
                    "WHERE u.order_pk = $1 AND u.promotion_id = b.id RETURNING u.promotion_id",
                    order_pk,
                    ids,
                    [sums[i][0] for i in ids],
                    [sums[i][1] for i in ids],
                )
            }
            sums = {pid: share for pid, share in sums.items() if pid in recorded}
        returned_uses: list[str] = []
        if full:
            returned_uses = [
                r["promotion_id"]
                for r in await conn.fetch(
                    "UPDATE promotion_uses SET returned = true WHERE order_pk = $1 AND NOT returned "
                    "RETURNING promotion_id",
                    order_pk,
                )
            ]
        ids = sorted(set(sums) | set(returned_uses))
        if ids:
            # The rows locked in id order first, as a commit locks them: an UPDATE joined to a list
            # locks in whatever order its plan meets them, and a commit and a refund would deadlock.
            await conn.execute(LOCK_BUDGETS, ids)
            # Never below nothing: the use of a commit that ran while its budget's row was being made may
            # be in no row (``BUDGET_ROWS``), and giving it back must not fail the refund.
            await conn.execute(
                """
                UPDATE promotion_budgets b SET orders = greatest(b.orders - u.orders, 0),
                       discount = greatest(b.discount - u.discount, 0), points = greatest(b.points - u.points, 0)
                  FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::int[]) AS u (id, discount, points, orders)
                 WHERE b.promotion_id = u.id
                """,
                ids,
                [sums.get(i, (0, 0))[0] for i in ids],
                [sums.get(i, (0, 0))[1] for i in ids],
                [1 if i in returned_uses else 0 for i in ids],
            )
        if not sums:
            return ()
        # The revision that applied names a promotion (it may have been renamed or ended since); a starter
        # promotion (never stored) is named by the catalog in force, and one in neither by its id.
        named_ids = list(sums)
        stored = {
            row["promotion_id"]: text_in(row["title"], language)
            for row in await conn.fetch(
                "SELECT r.promotion_id, r.body -> 'title' AS title FROM promotion_revisions r "
                "JOIN unnest($1::text[], $2::int[]) AS a (id, revision) "
                "ON r.promotion_id = a.id AND r.revision = a.revision",
                named_ids,
                [back[i][0] for i in named_ids],
            )
            if row["title"]
        }
        catalog = self.engine.catalog.current
        return tuple(
            ReturnedPromotion(
                id=pid, title=stored.get(pid) or catalog.title(pid, language) or pid, discount=d, points=p
            )
            for pid, (d, p) in sums.items()
        )


class Reading:
    """A cart's limited candidates and, when one of them is personal, the customer's offers: read in one
    scalar subquery (:attr:`part`) that a commit's snapshot statement carries, or on its own
    (:meth:`fetch`), then priced with the catalog they were picked from."""

    __slots__ = ("_budgeted", "_catalog", "_engine", "_lock", "_promotions", "part")

    def __init__(
        self,
        engine: EmbeddedEngine,
        catalog: Catalog,
        promotions: list[Active],
        customer_id: UUID | str | None,
        at: datetime,
        *,
        lock: bool,
        personal: bool,
    ) -> None:
        self._engine, self._catalog, self._promotions, self._lock = engine, catalog, promotions, lock
        self._budgeted: set[str] = set()  # the budget rows the read locked (or a commit made): counted
        self.part = state_part(customer_id, promotions, at, lock=lock, offers=personal)

    async def fetch(self, conn: Connection) -> Any:
        """The part's value, read in a statement of its own."""
        return await _read(conn, self.part)

    def recording(self, *, customer_id: UUID, at: datetime, totals: Mapping[str, tuple[int, int, int]]) -> Part | None:
        # A use for every promotion, limited now or not: a later revision may add a per-customer limit
        # or a budget, which counts the orders before it too. What each gave on which line is on the
        # order's lines (the wallet writes them); the use carries the order's totals. Only the budget
        # rows this reading locked are counted: a row takes no lock out of id order.
        if not totals:
            return None
        ids = list(totals)
        counted_ids = [i for i in ids if i in self._budgeted]
        return Part(
            _RECORD,
            {
                "book_customer": customer_id,
                "book_at": at,
                "book_ids": ids,
                "book_revisions": [totals[i][0] for i in ids],
                "book_discounts": [totals[i][1] for i in ids],
                "book_points": [totals[i][2] for i in ids],
                "book_budgets": counted_ids,
                "book_budget_discounts": [totals[i][1] for i in counted_ids],
                "book_budget_points": [totals[i][2] for i in counted_ids],
            },
        )

    async def price(self, conn: Connection, request: PricingRequest, read: Any) -> Pricing:
        used, offers, missing = counted(read, self._promotions)
        if self._lock:
            self._budgeted.update(pid for pid, *_ in (read or {}).get("budgets", ()))
        if self._lock and missing:
            # Only a catalog built otherwise than by the live reload (tests, benchmarks) meets a budget
            # without its row: the reload makes a budget's row before any commit prices with it, and
            # rows are never deleted. Made here (after the rows the read locked: out of id order, which
            # the live catalog never meets), locked, and counted as it now stands.
            for row in await conn.fetch(_MAKE_BUDGETS, missing):
                pid = row["promotion_id"]
                self._budgeted.add(pid)
                used[pid] = msgspec.structs.replace(
                    used[pid], orders=row["orders"], discount=row["discount"], points=row["points"]
                )
        return self._engine.price(request, catalog=self._catalog, offers=offers, used=used)


def state_part(
    customer_id: UUID | str | None, promotions: Sequence[Active], at: datetime, *, lock: bool, offers: bool
) -> Part | None:
    """A scalar subquery of a JSON object: ``budgets``, the totals of ``promotions``' budgets (their rows
    locked in id order when ``lock``: a parallel commit meeting the same budget waits on the row, then
    reads the new totals); ``mine``, this customer's uses in each ``per_customer`` window (their
    commits queue on the account's lock already); ``offers``, when asked, the personal offers the
    customer holds now. ``None`` when there is nothing to read. A lock writes no row version: the
    commit's one UPDATE in :meth:`Reading.recording` is the only one."""
    if not promotions and not offers:
        return None
    fields: list[str] = []
    values: dict[str, Any] = {}
    budgeted = sorted(a.id for a in promotions if has_budget(a.promotion))
    if budgeted:
        fields.append(f"'budgets', {_BUDGETS.format(lock=' FOR UPDATE' if lock else '')}")
        values["book_budgeted"] = budgeted
    windows = [a for a in promotions if a.promotion.limits.per_customer is not None] if customer_id else []
    if windows:
        fields.append(f"'mine', {_WINDOWS}")
        values["book_windows"] = [a.id for a in windows]
        values["book_since"] = since = [_since(a, at) for a in windows]
        values["book_widest"] = min(since)
    if offers and customer_id:
        fields.append(f"'offers', {_OFFERS}")
        values["book_at"] = at
    if not fields:
        return None
    if customer_id and (windows or offers):  # a calculate's id is text, parsed only when it is read
        values["book_customer"] = customer_id if isinstance(customer_id, UUID) else UUID(customer_id)
    return Part(f"SELECT json_build_object({', '.join(fields)})", values)


def counted(read: Any, promotions: Sequence[Active]) -> tuple[dict[str, Used], frozenset[str], list[str]]:
    """What :func:`state_part` read: each promotion's :class:`Used`, the offers held, and the budgeted
    promotions whose budget has no row yet."""
    if not read and not promotions:
        return {}, frozenset(), []
    read = read or {}
    totals = {pid: (orders, discount, points) for pid, orders, discount, points in read.get("budgets", ())}
    mine: dict[str, int] = read.get("mine", {})
    used: dict[str, Used] = {}
    missing: list[str] = []
    for a in promotions:
        if has_budget(a.promotion) and a.id not in totals:
            missing.append(a.id)
        orders, discount, points = totals.get(a.id, (0, 0, 0))
        used[a.id] = Used(customer=mine.get(a.id, 0), orders=orders, discount=discount, points=points)
    return used, frozenset(read.get("offers", ())), sorted(missing)


async def used_in(
    conn: Connection, customer_id: UUID | None, promotions: Sequence[Active], at: datetime
) -> Mapping[str, Used]:
    """What each limited promotion has counted, read as it stands (no locks): a backtest's or a preview's
    view of the limits."""
    read = await _read(conn, state_part(customer_id, promotions, at, lock=False, offers=False))
    return counted(read, promotions)[0]


async def _read(conn: Connection, part: Part | None) -> Any:
    """A :func:`state_part` read in a statement of its own (``None`` for nothing to read)."""
    if part is None:
        return None
    return await conn.fetchval(*named(f"SELECT ({part.sql})").bind(**part.values))


def has_budget(promotion: Promotion) -> bool:
    """Whether the promotion (as one revision has it) has a budget that limits anything."""
    budget = promotion.limits.budget
    return budget is not None and budget.limited


def _since(promotion: Active, at: datetime) -> datetime:
    per_customer = promotion.promotion.limits.per_customer
    assert per_customer is not None
    return at - timedelta(days=per_customer.days) if per_customer.days else _EVER


_BUDGETS = (
    "(SELECT coalesce(json_agg(json_build_array(promotion_id, orders, discount, points)), '[]') FROM "
    "(SELECT promotion_id, orders, discount, points FROM promotion_budgets "
    "WHERE promotion_id = ANY(:book_budgeted::text[]) ORDER BY promotion_id{lock}) b)"
)
#: Counted in one index scan (from the widest window's start), each use against its own promotion's
#: window. No ``unnest`` join: its generic plan is estimated at ten windows times a subplan, so the
#: planner would plan the whole snapshot again on every commit (~0.3 ms) rather than reuse it.
_WINDOWS = (
    "(SELECT coalesce(json_object_agg(promotion_id, n), '{}') FROM "
    "(SELECT promotion_id, count(*) AS n FROM promotion_uses "
    "WHERE customer_id = :book_customer::uuid AND promotion_id = ANY(:book_windows::text[]) AND NOT returned "
    "AND used_at > :book_widest::timestamptz "
    "AND used_at > (:book_since::timestamptz[])[array_position(:book_windows::text[], promotion_id)] "
    "GROUP BY promotion_id) m)"
)
_OFFERS = (
    "(SELECT coalesce(json_agg(promotion_id), '[]') FROM promotion_offers "
    "WHERE customer_id = :book_customer::uuid AND valid_until > :book_at::timestamptz)"
)
#: Budget rows locked in id order, as every commit locks them (an UPDATE joined to a list would lock
#: them in whatever order its plan meets them).
LOCK_BUDGETS = "SELECT FROM promotion_budgets WHERE promotion_id = ANY($1::text[]) ORDER BY promotion_id FOR UPDATE"
#: What uses ``u`` of a promotion have given, refunds taken back: orders (the uses not returned in a
#: full refund), discount, points; what its budget row counts and its usage shows.
USE_TOTALS = (
    "count(u.order_pk) FILTER (WHERE NOT u.returned), coalesce(sum(u.discount - u.returned_discount), 0)::bigint, "
    "coalesce(sum(u.points - u.returned_points), 0)::bigint"
)
#: A budget row for each of ``$1``, with the totals of the promotion's uses so far: a budget counts
#: over the promotion's life, so one a later revision adds counts the orders before it too. Left out:
#: what processes still on the catalog before the budget give meanwhile (until each has reloaded,
#: within a second when LISTEN works): they neither check the budget nor count into it.
BUDGET_ROWS = (
    f"SELECT b.id, {USE_TOTALS} "
    "FROM unnest($1::text[]) AS b (id) LEFT JOIN promotion_uses u ON u.promotion_id = b.id "
    "{only} GROUP BY b.id ORDER BY b.id"
)
#: A row that stopped counting (its promotion lost its budget: commits count only into the rows of
#: budgets they price with) made again from the uses, counting again. Run after ``LOCK_BUDGETS`` in
#: the same transaction: a statement of its own sees every commit that counted into the row before
#: the lock was granted (a lock and the sum in one statement would sum the uses as they stood when
#: the statement began).
REBASE_BUDGET_ROWS = (
    f"UPDATE promotion_budgets b SET (orders, discount, points) = (SELECT {USE_TOTALS} "
    "FROM promotion_uses u WHERE u.promotion_id = b.promotion_id), counting = true "
    "WHERE b.promotion_id = ANY($1::text[])"
)
#: The rows a reload's budgets lack (the uses are summed only for those).
NEW_BUDGET_ROWS = BUDGET_ROWS.format(
    only="WHERE NOT EXISTS (SELECT 1 FROM promotion_budgets r WHERE r.promotion_id = b.id)"
)
#: A commit's missing rows made (or, made by a reload a moment ago, locked) and read as they now stand.
_MAKE_BUDGETS = (
    f"INSERT INTO promotion_budgets AS b (promotion_id, orders, discount, points) {BUDGET_ROWS.format(only='')} "
    "ON CONFLICT (promotion_id) DO UPDATE SET promotion_id = b.promotion_id "
    "RETURNING promotion_id, orders, discount, points"
)
#: What a commit gave, as CTEs the order's insert carries (the new order is ``o``): the order's use of
#: each promotion, with its totals, and the budget rows the reading locked.
_RECORD = """
book_uses AS (
    INSERT INTO promotion_uses (order_pk, promotion_id, revision, customer_id, used_at, discount, points)
    SELECT o.id, u.id, u.revision, :book_customer::uuid, :book_at::timestamptz, u.discount, u.points
      FROM o, unnest(:book_ids::text[], :book_revisions::int[], :book_discounts::bigint[], :book_points::bigint[])
              AS u (id, revision, discount, points)
), book_budgets AS (
    UPDATE promotion_budgets b SET orders = b.orders + 1, discount = b.discount + u.discount,
           points = b.points + u.points
      FROM unnest(:book_budgets::text[], :book_budget_discounts::bigint[], :book_budget_points::bigint[])
              AS u (id, discount, points)
     WHERE b.promotion_id = u.id
)"""


async def held_offers(conn: Connection, customer_id: UUID, now: datetime) -> dict[str, datetime]:
    """The personal offers ``customer_id`` holds now: promotion id → valid until (for pricing)."""
    rows = await conn.fetch(
        "SELECT promotion_id, valid_until FROM promotion_offers WHERE customer_id = $1 AND valid_until > $2",
        customer_id,
        now,
    )
    return {row["promotion_id"]: row["valid_until"] for row in rows}
