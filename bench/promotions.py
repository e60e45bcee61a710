"""Benchmark of promotions in the embedded engine, each against a baseline from the same run.

    .venv-test/bin/python -m bench.promotions            (or ./scripts/bench-promotions)

- ``calculate over HTTP``: ``POST /v1/pos/orders/calculate`` as a till sends it, 5-line carts, through
  the app served as ``kartka serve`` serves it (``bench.harness.start_server``) and driven by ``wrk``:
  one API process on a database with 500 active stored promotions of every benefit type, one on a
  database with none (a promotion that ran and ended, so the starter promotions stay off too), rounds
  alternating. Reported as requests per second and as requests per CPU second of the API process (its
  throughput with a core of its own: a loaded, shared machine distorts the wall clock far more).
  Target: at least 80 % of the throughput (the issue's target, on what the till sees).
- ``calculate, engine only``: the embedded engine pricing the same carts in process
  (``EmbeddedEngine.price``), 500 promotions against none: the strictest form, where nothing else
  dilutes the promotions' cost (CPU time of the benchmark process).
- ``calculate, instructions``: the work a calculate adds to a request in process (the engine's pricing,
  the quote spread over the lines with its receipt, the answer's JSON) on the same carts, counted in CPU
  instructions per cart by valgrind's callgrind, 500 promotions against none. Instructions are not
  time (they miss what cold caches cost, which a shared machine varies from run to run), but they are
  the same on every run of the same code: the figure to judge a change to the engine by.
- ``commit``: ``OrderService.commit`` on a fresh database (``KARTKA_BENCH_ADMIN_URL``), the cart meeting
  promotions with a budget and a per-customer limit (the budget row locked and counted, the applied
  promotions recorded) among 500 active ones, against today's commit with none. Target: at most
  10 % slower.

Rounds alternate the two sides so that a busy machine slows both alike (commits take turns one by one);
the median is reported and the figures are written to ``bench/results/``. Every side prices its carts
at the same hour of the day (:data:`AT`; the API's and the commit's clocks start there), whenever the
benchmark runs: the catalog has promotions that keep to morning hours.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec

from bench.app import ShiftedClock, next_at
from bench.harness import ROOT, free_port, fresh_database, parse_wrk, save, scratch, start_server
from bench.run import seed
from engine.embedded import EmbeddedEngine
from engine.promotions.book import PromotionBook
from engine.promotions.evaluate import Active, Catalog
from engine.promotions.live import CatalogHolder
from engine.promotions.model import Group, Mode, parse_promotion
from engine.promotions.native import compiled, pure_requested
from engine.promotions.store import catalog_changed
from kartka.clock import Clock, SystemClock
from kartka.db import _init_connection, _keep_session
from notifications.audience import ALL_CHANNELS
from notifications.triggers import Notifier
from wallet.customers import CustomerService
from wallet.orders import CommitInput, OrderService
from wallet.pricing import CartLine, PricingRequest, TierInfo
from wallet.program import DEFAULT_PROGRAM

SKUS, CATEGORIES, BRANDS = 5_000, 300, 200
LINES = 5
AT = datetime(2026, 12, 2, 12, tzinfo=UTC)
"""When carts are priced: 15:00 in the program's zone (Minsk), outside the morning hours (07:00–09:00)
that some "any line" promotions keep to. The API's clock (calculate over HTTP) and the commit side's
start at the same hour of the day (``--at`` moves both); the in-process sides price at this moment.
In those hours every cart would meet those promotions too, a heavier catalog for two hours of the day,
so a run's figures would depend on when it ran."""


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
        at=AT,
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
            # CPU time, not wall time: on a shared machine the wall clock also counts other programs' turns
            done, start = 0, time.process_time()
            while time.process_time() - start < seconds / (2 * rounds):
                for r in carts[:20]:
                    engine.price(r)
                done += 20
            rates[name].append(done / (time.process_time() - start))
    none, many = statistics.median(rates["none"]), statistics.median(rates["500"])
    return {"none_per_s": round(none), "with_500_per_s": round(many), "share": round(many / none, 3)}


def people(clock: Clock) -> CustomerService:
    return CustomerService(
        region="BY",
        card_prefix="2",
        program=DEFAULT_PROGRAM,
        events=Notifier(program=DEFAULT_PROGRAM, public_base="http://127.0.0.1:8000", available=ALL_CHANNELS),
        clock=clock,
    )


def instructions() -> dict[str, Any]:
    """Instructions per cart of calculate's in-process work with 500 promotions and with none, each side
    counted in a Python of its own under callgrind (``count_side``) from after its warm-up pass to the
    end of its measured one."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        return {"skipped": "valgrind is not installed (Debian: apt install valgrind)"}
    per_cart: dict[str, int] = {}
    for side in ("none", "500"):
        with scratch() as folder:
            out, errors = folder / "callgrind.out", folder / "stderr.txt"
            with errors.open("wb") as stderr:
                process = subprocess.Popen(
                    [
                        *("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"),
                        *(sys.executable, "-m", "bench.promotions", "--count-side", side, str(folder)),
                    ],
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
                try:
                    for signal_file, switch in (("ready", "on"), ("done", "off")):
                        _await_file(folder / signal_file, process, errors)
                        control = ["callgrind_control", "-i", switch, str(process.pid)]
                        subprocess.run(control, check=True, capture_output=True, timeout=60)
                        (folder / signal_file).unlink()
                    process.wait(timeout=120)
                finally:
                    if process.poll() is None:
                        process.kill()
                        process.wait()
            totals = re.search(r"^totals:\s+(\d+)", out.read_text() if out.exists() else "", re.MULTILINE)
            if totals is None:
                raise RuntimeError(f"callgrind wrote no totals for {side}: {_tail(errors)}")
            per_cart[side] = int(totals[1]) // COUNTED_CARTS
    return {
        "none_per_cart": per_cart["none"],
        "with_500_per_cart": per_cart["500"],
        "share": round(per_cart["none"] / per_cart["500"], 3),
    }


COUNTED_CARTS = 200


def count_side(side: str, folder: Path) -> None:
    """One side of :func:`instructions`, run under callgrind: a warm-up pass over the carts, then
    ``ready`` (instrumentation goes on), the measured pass, ``done`` (it goes off)."""
    rng = random.Random(1)
    carts = [request(cart(rng)) for _ in range(COUNTED_CARTS)]
    catalog = catalog_of(500) if side == "500" else Catalog(zone=DEFAULT_PROGRAM.zone)
    engine = EmbeddedEngine(DEFAULT_PROGRAM, catalog=CatalogHolder(catalog))
    clock = SystemClock()  # unread: each cart carries its moment (AT)
    orders = OrderService(program=DEFAULT_PROGRAM, engine=engine, customers=people(clock), clock=clock)
    encoder = msgspec.json.Encoder()

    async def calculate_all() -> None:
        for r in carts:  # what PromotionBook.quote does for a cart whose promotions have nothing to read
            encoder.encode(await orders.quote(r, engine.price(r)))

    asyncio.run(calculate_all())
    parent, deadline = os.getppid(), time.monotonic() + 600
    for signal_file in ("ready", "done"):
        if signal_file == "done":
            asyncio.run(calculate_all())
        (folder / signal_file).touch()
        while (folder / signal_file).exists():  # the benchmark switches instrumentation, then removes it
            if os.getppid() != parent or time.monotonic() > deadline:
                raise SystemExit("the benchmark that counts this side went away")
            time.sleep(0.01)


def _await_file(path: Path, process: subprocess.Popen[bytes], errors: Path) -> None:
    deadline = time.monotonic() + 300
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the counted side stopped before {path.name}: {_tail(errors)}")
        time.sleep(0.05)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else "(no output)"


async def commit(url: str, customers: int, per_round: int, rounds: int, at: str) -> dict[str, Any]:
    cards, _ = await seed(url, customers)
    await promotion_history(url)
    # Released as the app's pool releases (no reset round trip): a commit costs here what it costs there.
    pool = await asyncpg.create_pool(url, min_size=2, max_size=4, init=_init_connection, reset=_keep_session)
    clock = ShiftedClock(next_at(at))  # the same hour of the day on every run, as calculate's
    shoppers = people(clock)

    def service(catalog: Catalog | None) -> OrderService:
        if catalog is None:  # today's commit: no promotions, no book
            engine = EmbeddedEngine(DEFAULT_PROGRAM, catalog=CatalogHolder(Catalog(zone=DEFAULT_PROGRAM.zone)))
            return OrderService(program=DEFAULT_PROGRAM, engine=engine, customers=shoppers, clock=clock)
        engine = EmbeddedEngine(DEFAULT_PROGRAM, catalog=CatalogHolder(catalog))
        return OrderService(
            program=DEFAULT_PROGRAM, engine=engine, customers=shoppers, clock=clock, book=PromotionBook(engine)
        )

    sides = {"today": service(None), "promotions": service(catalog_of(500, limited=True))}
    rng = random.Random(2)
    times: dict[str, list[float]] = {name: [] for name in sides}
    rounds_ms: dict[str, list[float]] = {name: [] for name in sides}
    n = 0
    # The sides take turns commit by commit, and the median commit of each is reported: on a shared
    # machine another program's burst of disk writes then lands on both alike and moves no median.
    for _ in range(rounds):
        for _ in range(per_round):
            for name, orders in sides.items():
                n += 1
                data = CommitInput(order_id=f"b-{n}", card=cards[n % len(cards)], lines=cart(rng))
                start = time.perf_counter()
                async with pool.acquire() as conn, conn.transaction():
                    await orders.commit(conn, data, idempotency_key=f"b-{n}", api_key_id=None, store="s", terminal="t")
                times[name].append((time.perf_counter() - start) * 1000)
        for name in sides:
            rounds_ms[name].append(statistics.median(times[name][-per_round:]))
    await pool.close()
    today, promos = statistics.median(times["today"]), statistics.median(times["promotions"])
    return {
        "today_ms": round(today, 2),
        "promotions_ms": round(promos, 2),
        "slower": round(promos / today - 1, 3),
        "rounds_ms": {name: [round(v, 2) for v in ms] for name, ms in rounds_ms.items()},
    }


async def promotion_history(url: str) -> None:
    """The seeded purchases as a chain that has run promotions for a while keeps them: each met the bench
    cart's two limited promotions and two others (their uses), the tables analyzed as
    autovacuum keeps them. An empty history would leave the planner a plan for empty tables."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """
            INSERT INTO promotion_uses (order_pk, promotion_id, revision, customer_id, used_at, discount, points)
            SELECT o.id, p.id, 1, o.customer_id, o.purchased_at, 100, 0
              FROM orders o, unnest(ARRAY['limited-0', 'limited-1', 'p-1', 'p-2']) AS p (id)
            """
        )
        await conn.execute("VACUUM ANALYZE promotion_uses")
    finally:
        await conn.close()


async def store_catalog(url: str, catalog: Catalog) -> None:
    """``catalog`` as stored, live promotions (approved revision 1) and its groups. An empty catalog
    stores one promotion that ran and ended: stored promotions are in charge, none of them runs."""
    conn = await asyncpg.connect(url)
    await _init_connection(conn)
    now = datetime.now(UTC)
    rows = [(a.id, "active", msgspec.to_builtins(a.promotion)) for a in catalog.promotions]
    if not rows:
        ended = parse_promotion(
            {"id": "ended", "title": {"en": "E"}, "benefit": {"type": "amount_off", "lines": {}, "amount": 1}}
        )
        rows = [("ended", "ended", msgspec.to_builtins(ended))]
    try:
        async with conn.transaction():
            await conn.executemany(
                "INSERT INTO promotions (id, status, live_revision, created_at, created_by, updated_at)"
                " VALUES ($1, $2, 1, $3, 'bench', $3)",
                [(pid, status, now + timedelta(milliseconds=n)) for n, (pid, status, _) in enumerate(rows)],
            )
            await conn.executemany(
                "INSERT INTO promotion_revisions (promotion_id, revision, body, author, created_at, state)"
                " VALUES ($1, 1, $2, 'bench', $3, 'approved')",
                [(pid, body, now) for pid, _, body in rows],
            )
            await conn.executemany(
                "INSERT INTO promotion_groups (id, mode, priority, max_discount_bp, updated_at)"
                " VALUES ($1, $2, $3, $4, $5)",
                [(g, r.mode, r.priority, r.max_discount_bp, now) for g, r in catalog.groups.items() if g != "default"],
            )
            await catalog_changed(conn)
    finally:
        await conn.close()


LUA = """
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
math.randomseed(%(seed)d)
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(key)s"}
request = function()
  return wrk.format("POST", "/v1/pos/orders/calculate", headers, bodies[math.random(#bodies)])
end
"""


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far, user and system (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def api_process(url: str, at: str) -> Iterator[tuple[str, int]]:
    """One API process (``bench.harness.start_server``) whose clock shows ``at`` (``HH:MM`` UTC) when it
    starts (``bench.app.ShiftedClock``): its base URL and its pid."""
    port = free_port()
    pure = {"KARTKA_PURE_PYTHON_ENGINE": "1"} if pure_requested() else {}
    process = start_server(url, port, 1, {"BENCH_AT": at, **pure})  # the core this benchmark measures
    try:
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def calculate_http(seconds: float, rounds: int, customers: int, connections: int, at: str) -> dict[str, Any]:
    """The till's calculate against an API process with 500 promotions and one with none: requests per
    second (wall clock), and requests per CPU second of the API process, which is what its throughput
    is when it has a core to itself and what a shared, loaded machine does not distort."""
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (Debian: apt install wrk)"}
    rng = random.Random(3)
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(scratch())
        bases: dict[str, str] = {}
        pids: dict[str, int] = {}
        scripts: dict[str, Path] = {}
        for side, catalog in (("none", Catalog(zone=DEFAULT_PROGRAM.zone)), ("500", catalog_of(500))):
            url = stack.enter_context(fresh_database(f"kartka_bench_calculate_{side}"))
            cards, key = asyncio.run(seed(url, customers))
            asyncio.run(store_catalog(url, catalog))
            bodies = workdir / f"{side}.txt"
            carts = [cart(rng) for _ in range(200)]
            bodies.write_text(
                "".join(
                    json.dumps(
                        {"card": cards[n % len(cards)], "lines": msgspec.to_builtins(lines), "redeem_points": 100}
                    )
                    + "\n"
                    for n, lines in enumerate(carts)
                )
            )
            scripts[side] = workdir / f"{side}.lua"
            scripts[side].write_text(LUA % {"bodies": bodies, "seed": secrets.randbelow(2**31), "key": key})
            bases[side], pids[side] = stack.enter_context(api_process(url, at))
            first = httpx.post(
                f"{bases[side]}/v1/pos/orders/calculate",
                content=bodies.read_text().splitlines()[0],
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            first.raise_for_status()

        def wrk(side: str, duration: float) -> dict[str, Any]:
            command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration:.0f}s", "--latency"]
            cpu = cpu_seconds(pids[side])
            done = subprocess.run(
                [*command, "-s", str(scripts[side]), bases[side]], check=True, capture_output=True, text=True
            )
            cpu = cpu_seconds(pids[side]) - cpu
            served = re.search(r"(\d+) requests in", done.stdout)
            try:
                figures = parse_wrk(done.stdout)
            except (KeyError, TypeError) as exc:
                raise RuntimeError(f"cannot read wrk's report:\n{done.stdout}\n{done.stderr}") from exc
            figures["per_cpu_s"] = int(served[1]) / cpu if served and cpu else 0.0
            return figures

        for side in bases:
            wrk(side, 2)  # warm up: connections, caches, the first catalog read
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in bases}
        for _ in range(rounds):
            for side in bases:
                runs[side].append(wrk(side, seconds))
    rates = {side: statistics.median(r["requests_per_second"] for r in runs[side]) for side in runs}
    per_cpu = {side: statistics.median(r["per_cpu_s"] for r in runs[side]) for side in runs}
    errors = sum(r["errors"] for side in runs for r in runs[side])
    p50 = {side: statistics.median(r["p50_ms"] for r in runs[side]) for side in runs}
    pairs = [b["per_cpu_s"] / a["per_cpu_s"] for a, b in zip(runs["none"], runs["500"], strict=True) if a["per_cpu_s"]]
    return {
        "none_per_s": round(rates["none"]),
        "with_500_per_s": round(rates["500"]),
        "share": round(rates["500"] / rates["none"], 3),
        "none_per_cpu_s": round(per_cpu["none"]),
        "with_500_per_cpu_s": round(per_cpu["500"]),
        "share_per_cpu": round(per_cpu["500"] / per_cpu["none"], 3),
        # Each round's 500-promotion side against the no-promotion side measured just before it: a machine
        # whose speed drifts over the run (neighbours come and go) moves both of a pair alike.
        "share_per_cpu_of_pairs": round(statistics.median(pairs), 3) if pairs else None,
        "p50_ms": {side: round(v, 2) for side, v in p50.items()},
        "rounds": {side: [round(r["requests_per_second"]) for r in runs[side]] for side in runs},
        "rounds_per_cpu_s": {side: [round(r["per_cpu_s"]) for r in runs[side]] for side in runs},
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="calculate in process: time for both sides")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--http-seconds", type=float, default=3.0, help="calculate over HTTP: per side per round")
    parser.add_argument("--http-rounds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=32, help="calculate over HTTP: wrk's connections")
    parser.add_argument("--commits", type=int, default=25, help="commits per side per round")
    parser.add_argument("--commit-rounds", type=int, default=10, help="commit: rounds, sides alternating")
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument(
        "--at",
        default=f"{AT:%H:%M}",
        help="calculate over HTTP and commit: the hour (HH:MM UTC) their clocks start at (default: the engine side's)",
    )
    parser.add_argument("--count-side", nargs=2, metavar=("SIDE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count_side:  # one side of the instruction count, run under callgrind by instructions()
        count_side(args.count_side[0], Path(args.count_side[1]))
        return
    core = "compiled (mypyc)" if compiled() else "plain Python"
    print(f"pricing core: {core} (KARTKA_PURE_PYTHON_ENGINE=1 measures the plain one)")
    http = calculate_http(args.http_seconds, args.http_rounds, args.customers, args.connections, args.at)
    results: dict[str, Any] = {"core": core, "calculate_http": http}
    print(f"load average {' '.join(open('/proc/loadavg').read().split()[:3])} at the start")  # noqa: SIM115
    print("calculate over HTTP (one API process, wrk):", results["calculate_http"])
    results["calculate"] = calculate(args.seconds, args.rounds)
    print("calculate (engine only, 5-line cart):", results["calculate"])
    try:
        results["instructions"] = instructions()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:  # the other figures are still saved
        results["instructions"] = {"failed": str(exc)}
    print("calculate in process, instructions per cart (callgrind):", results["instructions"])
    with fresh_database("kartka_bench_promotions") as url:
        results["commit"] = asyncio.run(commit(url, args.customers, args.commits, args.commit_rounds, args.at))
    print("commit (one connection, sequential):", results["commit"])
    print("saved to", save("promotions", results))


if __name__ == "__main__":
    main()
