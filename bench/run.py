"""Benchmark of the till's hot paths against a real PostgreSQL, with a baseline from the same run.

    .venv-test/bin/python -m bench.run            (or ./scripts/bench)

It makes a fresh database (on ``KARTKA_BENCH_ADMIN_URL``, default the local server, else an embedded
one), seeds customers with cards and purchase history, starts the service under uvicorn exactly as
``kartka serve`` does plus one baseline route, and drives each scenario with ``wrk`` (Debian package
``wrk``; without it, a slower Python client is used and the figures say so):

- ``baseline``: a bare asyncpg single-row read (card by number) through the same server stack;
- ``identify``: ``POST /v1/pos/identify`` with a card number: customer, card, tier and balance;
- ``calculate``: ``POST /v1/pos/orders/calculate`` with a three-line cart and points to redeem;
- ``commit``: ``POST /v1/pos/orders``: a purchase with points redeemed, written to the ledger.

It prints requests per second, p50 and p99 latency and each scenario's throughput as a share of the
baseline's, and writes the figures to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.harness import fresh_database, median_round, parse_wrk, save, scratch, serving
from kartka.keys import Scope, create_key
from main.schema import SCHEMA
from wallet.cards import ean13_check_digit

CART = [
    {"sku": "milk", "qty": 2, "unit_price": 249, "category": "dairy"},
    {"sku": "latte", "qty": 1, "unit_price": 550, "category": "coffee"},
    {"sku": "croissant", "qty": 1, "unit_price": 320, "category": "pastry"},
]


# -- database -------------------------------------------------------------------------------------


def card_number(n: int) -> str:
    body = f"2{n:011d}"
    return body + str(ean13_check_digit(body))


async def seed(url: str, customers: int) -> tuple[list[str], str]:
    """Customers with a card, an account, five purchases in the last year and their points lots."""
    conn = await asyncpg.connect(url)
    try:
        await SCHEMA.migrate(conn)
        now = datetime.now(UTC)
        ids = [uuid.uuid4() for _ in range(customers)]
        cards = [card_number(n) for n in range(customers)]
        await conn.copy_records_to_table(
            "customers",
            records=[(cid, f"+37529{n:07d}", "pos") for n, cid in enumerate(ids)],
            columns=["id", "phone", "source"],
        )
        await conn.copy_records_to_table(
            "cards", records=list(zip(cards, ids, strict=True)), columns=["number", "customer_id"]
        )
        await conn.copy_records_to_table(
            "accounts", records=[(cid, "standart") for cid in ids], columns=["customer_id", "tier_code"]
        )
        orders, lots = [], []
        for n, (cid, card) in enumerate(zip(ids, cards, strict=True)):
            for k in range(5):
                at = now - timedelta(days=30 * k + n % 30, hours=2)
                paid = 2_000 + (n * 7 + k * 13) % 5_000
                points = paid * 500 // 10_000
                orders.append(
                    (
                        f"seed-{n}-{k}",
                        cid,
                        card,
                        f"seed-{n}-{k}",
                        b"seed",
                        at,
                        paid,
                        0,
                        0,
                        paid,
                        points,
                        "standart",
                        500,
                        "embedded",
                        False,
                    )
                )
                lots.append((cid, "accrual", points, points, at + timedelta(hours=24), at + timedelta(days=182)))
        await conn.copy_records_to_table(
            "orders",
            records=orders,
            columns=[
                "order_id",
                "customer_id",
                "card_number",
                "idempotency_key",
                "request_hash",
                "purchased_at",
                "subtotal",
                "discount",
                "redeemed_points",
                "paid",
                "accrued_points",
                "tier_code",
                "rate_bp",
                "engine",
                "degraded",
            ],
        )
        await conn.copy_records_to_table(
            "lots",
            records=lots,
            columns=["customer_id", "kind", "points", "remaining", "available_at", "expires_at"],
        )
        await conn.execute(
            """
            INSERT INTO ledger_entries (customer_id, kind, points, lot_id, occurred_at)
            SELECT customer_id, 'accrual', points, id, available_at - interval '24 hours' FROM lots
            """
        )
        await conn.execute("VACUUM ANALYZE")  # a loaded table as autovacuum keeps it: visibility map set
        key, _ = await create_key(conn, scope=Scope.POS, store="bench", terminal="wrk", name="benchmark")
        return cards, key
    finally:
        await conn.close()


# -- server ---------------------------------------------------------------------------------------


# -- load -----------------------------------------------------------------------------------------

LUA = """
local cards = {}
for line in io.lines("%(cards)s") do cards[#cards + 1] = line end
local counter = 0
local prefix = "%(prefix)s"
math.randomseed(%(seed)d)
request = function()
  local card = cards[math.random(#cards)]
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(key)s"}
  local body
  if "%(scenario)s" == "baseline" or "%(scenario)s" == "identify" then
    body = '{"code":"' .. card .. '"}'
  elseif "%(scenario)s" == "calculate" then
    body = '{"card":"' .. card .. '","lines":%(cart)s,"redeem_points":100}'
  else
    local id = prefix .. "-" .. counter
    headers["Idempotency-Key"] = id
    body = '{"order_id":"' .. id .. '","card":"' .. card .. '","lines":%(cart)s,"redeem_points":100}'
  end
  return wrk.format("POST", "%(path)s", headers, body)
end
"""

PATHS = {
    "baseline": "/bench/baseline",
    "identify": "/v1/pos/identify",
    "calculate": "/v1/pos/orders/calculate",
    "commit": "/v1/pos/orders",
}


def run_wrk(base: str, scenario: str, cards_file: Path, key: str, seconds: float, connections: int) -> dict[str, Any]:
    script = cards_file.parent / f"{scenario}.lua"
    script.write_text(
        LUA
        % {
            "cards": cards_file,
            "prefix": f"bench-{secrets.token_hex(4)}",
            "seed": secrets.randbelow(2**31),
            "key": key,
            "scenario": scenario,
            "cart": json.dumps(CART, separators=(",", ":")),
            "path": PATHS[scenario],
        }
    )
    command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:.0f}s", "--latency", "-s", str(script), base]
    return parse_wrk(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


async def run_python(
    base: str, scenario: str, cards: list[str], key: str, seconds: float, connections: int
) -> dict[str, Any]:
    """A fallback load generator where wrk is missing: it costs CPU the server then lacks."""
    prefix = f"bench-{secrets.token_hex(4)}"
    latencies: list[float] = []
    errors = 0
    counter = 0
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def user() -> None:
            nonlocal errors, counter
            while time.monotonic() < deadline:
                card = cards[secrets.randbelow(len(cards))]
                counter += 1
                extra: dict[str, str] = {}
                if scenario in ("baseline", "identify"):
                    body: dict[str, Any] = {"code": card}
                elif scenario == "calculate":
                    body = {"card": card, "lines": CART, "redeem_points": 100}
                else:
                    order = f"{prefix}-{counter}"
                    body = {"order_id": order, "card": card, "lines": CART, "redeem_points": 100}
                    extra = {"Idempotency-Key": order}
                started = time.perf_counter()
                response = await client.post(PATHS[scenario], json=body, headers=headers | extra)
                latencies.append((time.perf_counter() - started) * 1000)
                errors += response.status_code >= 300

        await asyncio.gather(*(user() for _ in range(connections)))
    latencies.sort()
    return {
        "requests_per_second": len(latencies) / seconds,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
        "errors": errors,
        "client": "python (client-bound; install wrk for real figures)",
    }


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=5, help="per scenario per round")
    parser.add_argument("--rounds", type=int, default=3, help="scenarios take turns; the median round is reported")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="API processes")
    parser.add_argument("--scenarios", default="baseline,identify,calculate,commit")
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")

    with fresh_database() as url, scratch() as workdir:
        started = time.monotonic()
        cards, key = asyncio.run(seed(url, args.customers))
        print(f"seeded {args.customers} customers, {args.customers * 5} orders in {time.monotonic() - started:.1f} s")
        cards_file = workdir / "cards.txt"
        cards_file.write_text("\n".join(cards) + "\n")
        with serving(url, args.workers) as base:
            report(measure(base, scenarios, cards, cards_file, key, args), args)


def measure(
    base: str, scenarios: list[str], cards: list[str], cards_file: Path, key: str, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    use_wrk = shutil.which("wrk") is not None
    rounds: dict[str, list[dict[str, Any]]] = {scenario: [] for scenario in scenarios}
    # Scenarios take turns, round after round, and each reports its median round: a machine whose
    # speed drifts during the run (other load, CPU boost, autovacuum) then skews them all alike.
    for number in range(args.rounds):
        for scenario in scenarios:
            if use_wrk:
                if number == 0:
                    run_wrk(base, scenario, cards_file, key, args.warmup, args.connections)
                figures = run_wrk(base, scenario, cards_file, key, args.seconds, args.connections)
            else:
                figures = asyncio.run(run_python(base, scenario, cards, key, args.seconds, args.connections))
            rounds[scenario].append(figures)
    return {scenario: median_round(runs) for scenario, runs in rounds.items()}


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    baseline = results.get("baseline", {}).get("requests_per_second")
    print(
        f"\n{args.connections} connections, {args.workers} API process(es), {args.rounds} rounds of "
        f"{args.seconds:.0f} s per scenario (median shown), "
        f"{os.cpu_count()} CPUs, client: {next(iter(results.values()))['client']}"
    )
    print(f"{'scenario':<11}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'vs baseline':>13}  rounds")
    for scenario, figures in results.items():
        ratio = f"{figures['requests_per_second'] / baseline:.0%}" if baseline else "-"
        print(
            f"{scenario:<11}{figures['requests_per_second']:>10.0f}{figures['p50_ms']:>10.2f}"
            f"{figures['p99_ms']:>10.2f}{figures['errors']:>8}{ratio:>13}  {figures['rounds']}"
        )
    save("till", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
