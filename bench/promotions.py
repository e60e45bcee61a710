"""Benchmark of promotions in the embedded engine, each against a baseline from the same run.

    .venv-test/bin/python -m bench.promotions            (or ./scripts/bench-promotions)

- ``calculate``: the embedded engine pricing a 5-line cart (``EmbeddedEngine.price``, in process: the
  part of ``POST /v1/pos/orders/calculate`` that promotions can slow down) with 500 active promotions
  of every benefit type against the same with none. Target: at least 80 % of the throughput.
- ``commit``: ``OrderService.commit`` on a fresh database (``KARTKA_BENCH_ADMIN_URL``), the cart meeting
  promotions with a budget and a per-customer limit (the budget row locked and counted, the applied
  promotions recorded) among 500 active ones, against today's commit with none. Target: at most
  10 % slower.

Rounds alternate the two sides so that a busy machine slows both alike; the median round is reported
and the figures are written to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.harness import fresh_database, save
from bench.run import seed
from engine.embedded import EmbeddedEngine
from engine.promotions.book import PromotionBook
from engine.promotions.evaluate import Active, Catalog
from engine.promotions.live import CatalogHolder
from engine.promotions.model import Group, Mode, parse_promotion
from kartka.clock import SystemClock
from kartka.db import _init_connection
from notifications.audience import ALL_CHANNELS
from notifications.triggers import Notifier
from wallet.customers import CustomerService
from wallet.orders import CommitInput, OrderService
from wallet.pricing import CartLine, PricingRequest, TierInfo
from wallet.program import DEFAULT_PROGRAM

SKUS, CATEGORIES, BRANDS = 5_000, 300, 200
LINES = 5


def catalog_of(count: int, *, limited: bool = False, seed_: int = 7) -> Catalog:
    """``count`` active promotions of every benefit type over a shop of 5,000 skus in 300 categories and
    200 brands, as a grocery chain runs them: 70 % on a few skus, 15 % on a category, 13 % on a brand,
    2 % on any line for an audience, some hours or a minimum spend."""
    rng = random.Random(seed_)
    benefits = [
        lambda s: {"type": "percent_off", "lines": s, "percent_bp": rng.randint(500, 3000)},
        lambda s: {"type": "amount_off", "lines": s, "amount": rng.randint(10, 200)},
        lambda s: {"type": "fixed_price", "lines": s, "price": rng.randint(100, 900)},
        lambda s: {"type": "n_for_m", "lines": s, "n": 3, "m": 2},
        lambda s: {"type": "nth_percent", "lines": s, "n": 2, "percent_bp": 5000},
        lambda s: {"type": "points_percent", "lines": s, "rate_bp": 300},
        lambda s: {"type": "points_multiplier", "lines": s, "factor_bp": 20000},
        lambda s: {"type": "no_redeem", "lines": s},
    ]
    promotions = []
    for n in range(count):
        kind = rng.random()
        extra: dict[str, Any] = {}
        if kind < 0.7:
            selector = {"skus": sorted({f"sku-{rng.randrange(SKUS)}" for _ in range(rng.randint(1, 20))})}
        elif kind < 0.85:
            selector = {"categories": [f"cat-{rng.randrange(CATEGORIES)}"]}
        elif kind < 0.98:
            selector = {"brands": [f"brand-{rng.randrange(BRANDS)}"]}
        else:
            selector = {}
            extra = rng.choice(
                [
                    {"audience": {"tiers": ["gold"]}},
                    {"when": {"hours": {"from": "07:00", "to": "09:00"}}},
                    {"condition": {"min_subtotal": 500_000}},
                ]
            )
        benefit = rng.choice(benefits)(selector)
        data = {"id": f"p-{n}", "title": {"en": f"P{n}"}, "benefit": benefit, "group": f"g{n % 4}", **extra}
        promotions.append(Active(parse_promotion(data), 1, n))
    if limited:  # the bench cart's own promotions, with a budget and a per-customer limit
        for n, limits in enumerate(
            [{"budget": {"count": 10_000_000, "discount": 10**11}}, {"per_customer": {"count": 1_000_000, "days": 30}}]
        ):
            data = {
                "id": f"limited-{n}",
                "title": {"en": "L"},
                "group": "limited",
                "benefit": {"type": "percent_off", "lines": {"categories": ["cat-1"]}, "percent_bp": 500},
                "limits": limits,
            }
            promotions.append(Active(parse_promotion(data), 1, count + n))
    modes: tuple[Mode, ...] = ("exclusive", "best", "sum", "sequential")
    groups = {f"g{i}": Group(mode=mode, priority=10 * i, max_discount_bp=5000) for i, mode in enumerate(modes)}
    return Catalog(promotions, groups, zone=DEFAULT_PROGRAM.zone)


def cart(rng: random.Random) -> tuple[CartLine, ...]:
    return tuple(
        CartLine(
            sku=f"sku-{rng.randrange(SKUS)}",
            qty=rng.randint(1, 3),
            unit_price=rng.randint(50, 5_000),
            category="cat-1" if i == 0 else f"cat-{rng.randrange(CATEGORIES)}",
            brand=f"brand-{rng.randrange(BRANDS)}",
        )
        for i in range(LINES)
    )


def request(lines: tuple[CartLine, ...]) -> PricingRequest:
    return PricingRequest(
        lines=lines,
        tier=TierInfo(code="standart", name="Standart", rate_bp=500),
        next_tier=None,
        spend_365d=0,
        available_points=10_000,
        requested_points=2_000,
        at=datetime(2026, 12, 2, 12, tzinfo=UTC),
        language="ru",
        currency="BYN",
        customer_id="00000000-0000-0000-0000-000000000001",
    )


def calculate(seconds: float, rounds: int) -> dict[str, Any]:
    rng = random.Random(1)
    carts = [request(cart(rng)) for _ in range(200)]
    engines = {
        "none": EmbeddedEngine(DEFAULT_PROGRAM, catalog=CatalogHolder(Catalog(zone=DEFAULT_PROGRAM.zone))),
        "500": EmbeddedEngine(DEFAULT_PROGRAM, catalog=CatalogHolder(catalog_of(500))),
    }
    rates: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, engine in engines.items():
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / (2 * rounds):
                for r in carts[:20]:
                    engine.price(r)
                done += 20
            rates[name].append(done / (time.perf_counter() - start))
    none, many = statistics.median(rates["none"]), statistics.median(rates["500"])
    return {"none_per_s": round(none), "with_500_per_s": round(many), "share": round(many / none, 3)}


async def commit(url: str, customers: int, per_round: int, rounds: int) -> dict[str, Any]:
    cards, _ = await seed(url, customers)
    pool = await asyncpg.create_pool(url, min_size=2, max_size=4, init=_init_connection)
    clock = SystemClock()
    people = CustomerService(
        region="BY",
        card_prefix="2",
        program=DEFAULT_PROGRAM,
        events=Notifier(program=DEFAULT_PROGRAM, public_base="http://127.0.0.1:8000", available=ALL_CHANNELS),
        clock=clock,
    )

    def service(catalog: Catalog | None) -> OrderService:
        if catalog is None:  # today's commit: no promotions, no book
            engine = EmbeddedEngine(DEFAULT_PROGRAM, catalog=CatalogHolder(Catalog(zone=DEFAULT_PROGRAM.zone)))
            return OrderService(program=DEFAULT_PROGRAM, engine=engine, customers=people, clock=clock)
        engine = EmbeddedEngine(DEFAULT_PROGRAM, catalog=CatalogHolder(catalog))
        return OrderService(
            program=DEFAULT_PROGRAM, engine=engine, customers=people, clock=clock, book=PromotionBook(engine)
        )

    sides = {"today": service(None), "promotions": service(catalog_of(500, limited=True))}
    rng = random.Random(2)
    times: dict[str, list[float]] = {name: [] for name in sides}
    n = 0
    for _ in range(rounds):
        for name, orders in sides.items():
            start = time.perf_counter()
            for _ in range(per_round):
                n += 1
                data = CommitInput(order_id=f"b-{n}", card=cards[n % len(cards)], lines=cart(rng))
                async with pool.acquire() as conn, conn.transaction():
                    await orders.commit(conn, data, idempotency_key=f"b-{n}", api_key_id=None, store="s", terminal="t")
            times[name].append((time.perf_counter() - start) / per_round * 1000)
    await pool.close()
    today, promos = statistics.median(times["today"]), statistics.median(times["promotions"])
    return {"today_ms": round(today, 2), "promotions_ms": round(promos, 2), "slower": round(promos / today - 1, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="calculate: time for both sides")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commits", type=int, default=100, help="commits per side per round")
    parser.add_argument("--customers", type=int, default=2_000)
    args = parser.parse_args()
    results: dict[str, Any] = {"calculate": calculate(args.seconds, args.rounds)}
    print("calculate (engine, 5-line cart):", results["calculate"])
    with fresh_database("kartka_bench_promotions") as url:
        results["commit"] = asyncio.run(commit(url, args.customers, args.commits, args.rounds))
    print("commit (one connection, sequential):", results["commit"])
    print("saved to", save("promotions", results))


if __name__ == "__main__":
    main()
