"""The embedded engine's book of promotions on orders (``wallet.pricing.PromotionBook``): limits counted
and what applied recorded in the commit's transaction, shares given back in the refund's.

Exact under concurrency without a global lock: a commit locks the account of its customer (the
wallet does, before pricing) and the budget rows of the limited promotions its cart meets, in id order
(no deadlocks), reads what they counted, prices with that, and adds its own use before it commits. A
parallel commit meeting the same budget waits on the row and then reads the new totals, so with
``budget.count = 5`` exactly five orders get the promotion and the rest are priced without it.
Promotions without limits take no lock: they never serialize the chain's tills.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID

from asyncpg import Record

from engine.embedded import EmbeddedEngine
from engine.promotions.evaluate import NOTHING_USED, Active, Used
from engine.promotions.model import text_in
from kartka.db import Connection
from wallet.money import prorate
from wallet.pricing import Pricing, PricingRequest, ReturnedPart, ReturnedPromotion

#: The start of a window with no ``days``: before any order (``datetime.min`` in a zone east of UTC
#: overflows when converted to UTC).
_EVER = datetime(1970, 1, 1, tzinfo=UTC)


class PromotionBook:
    def __init__(self, engine: EmbeddedEngine) -> None:
        self.engine = engine

    async def price(self, conn: Connection, request: PricingRequest) -> Pricing:
        return await self._price(conn, request, lock=True)

    async def quote(self, conn: Connection, request: PricingRequest) -> Pricing:
        return await self._price(conn, request, lock=False)

    async def _price(self, conn: Connection, request: PricingRequest, *, lock: bool) -> Pricing:
        catalog = self.engine.catalog.current
        candidates, personal = catalog.state_needed(request.lines)
        used = await used_in(conn, request.customer_id, candidates, request.at, lock=lock)
        offers: frozenset[str] = frozenset()
        if request.customer_id and personal:  # on the commit's own connection, never a second one
            offers = frozenset(await held_offers(conn, UUID(request.customer_id), request.at))
        return self.engine.price(request, catalog=catalog, offers=offers, used=used)

    async def record(
        self, conn: Connection, *, order_pk: int, customer_id: str, at: datetime, pricing: Pricing
    ) -> None:
        rows = [
            (order_pk, line_no, a.id, a.revision, a.discount, a.points)
            for line_no, line in enumerate(pricing.lines)
            for a in line.promotions
        ]
        if not rows:
            return
        totals: dict[str, tuple[int, int, int]] = {}
        for _, _, pid, revision, discount, points in rows:
            _, d, p = totals.get(pid, (revision, 0, 0))
            totals[pid] = (revision, d + discount, p + points)
        # A use for every promotion, limited now or not: a later revision may add a per-customer limit
        # or a budget, which counts the orders before it too.
        ids = list(totals)
        # One statement, one round trip: the lines' promotions, the order's uses, and the budgets (only
        # promotions with budgets have a row).
        await conn.execute(
            """
            WITH lines AS (
                INSERT INTO order_promotions (order_pk, line_no, promotion_id, revision, discount, points)
                SELECT $1, r.line_no, r.id, r.revision, r.discount, r.points
                  FROM unnest($2::int[], $3::text[], $4::int[], $5::bigint[], $6::bigint[])
                       AS r (line_no, id, revision, discount, points)
            ), uses AS (
                INSERT INTO promotion_uses (order_pk, promotion_id, revision, customer_id, used_at)
                SELECT $1, u.id, u.revision, $7, $8 FROM unnest($9::text[], $10::int[]) AS u (id, revision)
            )
            UPDATE promotion_budgets b SET orders = b.orders + 1, discount = b.discount + u.discount,
                   points = b.points + u.points
              FROM unnest($9::text[], $11::bigint[], $12::bigint[]) AS u (id, discount, points)
             WHERE b.promotion_id = u.id
            """,
            order_pk,
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
            [r[4] for r in rows],
            [r[5] for r in rows],
            UUID(customer_id),
            at,
            ids,
            [totals[i][0] for i in ids],
            [totals[i][1] for i in ids],
            [totals[i][2] for i in ids],
        )

    async def refunded(
        self, conn: Connection, *, order_pk: int, parts: Sequence[ReturnedPart], full: bool, language: str
    ) -> tuple[ReturnedPromotion, ...]:
        rows = await conn.fetch(
            """
            SELECT o.line_no, o.promotion_id, o.discount, o.points, r.body -> 'title' AS title
              FROM order_promotions o
              LEFT JOIN promotion_revisions r ON r.promotion_id = o.promotion_id AND r.revision = o.revision
             WHERE o.order_pk = $1 AND o.line_no = ANY($2::int[])
             ORDER BY o.line_no, o.promotion_id
               FOR UPDATE OF o
            """,
            order_pk,
            [p.line_no for p in parts],
        )
        by_line = {p.line_no: p for p in parts}
        back: list[tuple[int, str, int, int]] = []
        for row in rows:
            part = by_line[row["line_no"]]

            def share(total: int, part: ReturnedPart = part) -> int:
                return prorate(total, part.after, part.qty) - prorate(total, part.before, part.qty)

            back.append((row["line_no"], row["promotion_id"], share(row["discount"]), share(row["points"])))
        if back:
            await conn.executemany(
                "UPDATE order_promotions SET returned_discount = returned_discount + $4, "
                "returned_points = returned_points + $5 WHERE order_pk = $1 AND line_no = $2 AND promotion_id = $3",
                [(order_pk, line_no, pid, d, p) for line_no, pid, d, p in back],
            )
        sums: dict[str, tuple[int, int]] = {}
        for _, pid, d, p in back:
            sd, sp = sums.get(pid, (0, 0))
            sums[pid] = (sd + d, sp + p)
        # The revision that applied names a promotion (it may have been renamed or ended since); a starter
        # promotion (never stored) is named by the catalog in force, and one in neither by its id.
        stored = {row["promotion_id"]: text_in(row["title"], language) for row in rows if row["title"]}
        catalog = self.engine.catalog.current
        given_back = tuple(
            ReturnedPromotion(
                id=pid, title=stored.get(pid) or catalog.title(pid, language) or pid, discount=d, points=p
            )
            for pid, (d, p) in sums.items()
            if d or p
        )
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
            await conn.execute(
                """
                UPDATE promotion_budgets b SET orders = b.orders - u.orders, discount = b.discount - u.discount,
                       points = b.points - u.points
                  FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::int[]) AS u (id, discount, points, orders)
                 WHERE b.promotion_id = u.id
                """,
                ids,
                [sums.get(i, (0, 0))[0] for i in ids],
                [sums.get(i, (0, 0))[1] for i in ids],
                [1 if i in returned_uses else 0 for i in ids],
            )
        return given_back


async def used_in(
    conn: Connection, customer_id: str | None, promotions: Sequence[Active], at: datetime, *, lock: bool
) -> Mapping[str, Used]:
    """What each limited promotion has counted: its budget's totals (the rows locked, in id order,
    when ``lock``) and this customer's orders in its ``per_customer`` window."""
    if not promotions:
        return {}
    budgeted = sorted(a.id for a in promotions if a.promotion.limits.budget and a.promotion.limits.budget.limited)
    windows = [a for a in promotions if a.promotion.limits.per_customer is not None] if customer_id else []
    if not budgeted and not windows:
        return {a.id: NOTHING_USED for a in promotions}
    since = []
    for a in windows:
        per_customer = a.promotion.limits.per_customer
        assert per_customer is not None
        since.append(at - timedelta(days=per_customer.days) if per_customer.days else _EVER)
    # One statement: the budget rows (when ``lock``: locked in id order and read as they now stand) and
    # this customer's uses in each window (their commits queue on the account's lock already). A lock
    # writes no row version: the commit's one UPDATE in ``record`` is the only one. The live catalog makes
    # the rows of the budgets it loads (``reload.ensure_budget_rows``); a catalog built otherwise (tests,
    # benchmarks), or a commit racing a reload, makes them here: an upsert that locks what it made or met.
    rows = await _budgets_and_windows(
        conn, _LOCK_BUDGETS if lock else _READ_BUDGETS, budgeted, customer_id, windows, since
    )
    if lock and sum(1 for r in rows if r["budget"]) < len(budgeted):
        rows = await _budgets_and_windows(conn, _MAKE_BUDGETS, budgeted, customer_id, windows, since)
    totals = {r["id"]: (r["orders"], r["discount"], r["points"]) for r in rows if r["budget"]}
    mine: dict[str, int] = {r["id"]: r["orders"] for r in rows if not r["budget"]}
    out: dict[str, Used] = {}
    for a in promotions:
        orders, discount, points = totals.get(a.id, (0, 0, 0))
        out[a.id] = Used(customer=mine.get(a.id, 0), orders=orders, discount=discount, points=points)
    return out


_READ_BUDGETS = (
    "SELECT promotion_id, orders, discount, points FROM promotion_budgets WHERE promotion_id = ANY($1::text[])"
)
_LOCK_BUDGETS = _READ_BUDGETS + " ORDER BY promotion_id FOR UPDATE"
_MAKE_BUDGETS = (
    "INSERT INTO promotion_budgets AS b (promotion_id) SELECT id FROM unnest($1::text[]) AS u (id) ORDER BY id "
    "ON CONFLICT (promotion_id) DO UPDATE SET promotion_id = b.promotion_id "
    "RETURNING promotion_id, orders, discount, points"
)


async def _budgets_and_windows(
    conn: Connection,
    budgets: str,
    budgeted: list[str],
    customer_id: str | None,
    windows: list[Active],
    since: list[datetime],
) -> list[Record]:
    return await conn.fetch(
        f"""
        WITH budgets AS ({budgets})
        SELECT true AS budget, promotion_id AS id, orders, discount, points FROM budgets
        UNION ALL
        SELECT false, w.id, count(u.order_pk), 0, 0
          FROM unnest($3::text[], $4::timestamptz[]) AS w (id, since)
          LEFT JOIN promotion_uses u ON u.customer_id = $2::uuid AND u.promotion_id = w.id AND NOT u.returned
                                    AND u.used_at > w.since
         GROUP BY w.id
        """,
        budgeted,
        UUID(customer_id) if customer_id else None,
        [a.id for a in windows],
        since,
    )


async def held_offers(conn: Connection, customer_id: UUID, now: datetime) -> dict[str, datetime]:
    """The personal offers ``customer_id`` holds now: promotion id → valid until (for pricing)."""
    rows = await conn.fetch(
        "SELECT promotion_id, valid_until FROM promotion_offers WHERE customer_id = $1 AND valid_until > $2",
        customer_id,
        now,
    )
    return {row["promotion_id"]: row["valid_until"] for row in rows}
