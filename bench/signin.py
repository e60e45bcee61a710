"""Benchmark of phone sign-in: codes sent and codes verified per second, against a baseline from the same run.

    .venv-test/bin/python -m bench.signin            (or ./scripts/bench-signin)

It makes a fresh database (``KARTKA_BENCH_ADMIN_URL``, default the local server, else an embedded one)
with ``--customers`` existing shoppers, serves the app under uvicorn as ``kartka serve`` does (limits per
client address raised, since all the load comes from one address; everything else as configured by
default), and drives with ``wrk``:

- ``baseline``: the bare asyncpg single-row read through the same stack (``bench/app.py``);
- ``send``: ``POST /v1/auth/otp`` for phones never seen before in the run: a keyed hash, the rate-limit
  bookkeeping (an advisory lock, a count, an insert), the code's row and its outbox message, one commit;
- ``verify``: ``POST /v1/auth/token`` with the codes ``send`` issued (read back from the outbox, where they
  wait for the worker), half of them for phones that are customers already and half for new ones, which
  registers them: customer, card, registration and card-link message, a session and a refresh token.

Rounds take turns and the median is reported with each scenario's share of the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from bench.harness import fresh_database, median_round, parse_wrk, save, scratch, serving
from bench.run import card_number
from main.schema import SCHEMA

ROOT = Path(__file__).resolve().parent.parent

LUA = """
local prefix = "%(prefix)s"
local codes = {}
if "%(scenario)s" == "verify" then
  for line in io.lines("%(codes)s") do codes[#codes + 1] = line end
end
local counter = 0
request = function()
  counter = counter + 1
  -- Shoppers come from many addresses (the app trusts X-Forwarded-For from 127.0.0.1, as behind a proxy).
  local address = "10." .. (counter %% 250) .. "." .. (math.floor(counter / 250) %% 250) .. ".%(octet)s"
  local headers = {["Content-Type"] = "application/json", ["X-Forwarded-For"] = address}
  if "%(scenario)s" == "baseline" then
    return wrk.format("POST", "/bench/baseline", headers, '{"code":"%(card)s"}')
  elseif "%(scenario)s" == "send" then
    local phone = prefix .. string.format("%%05d", counter)
    return wrk.format("POST", "/v1/auth/otp", headers, '{"phone":"' .. phone .. '"}')
  end
  local entry = codes[(counter - 1) %% #codes + 1]
  local phone, code = entry:match("(%%S+) (%%S+)")
  return wrk.format("POST", "/v1/auth/token", headers, '{"phone":"' .. phone .. '","code":"' .. code .. '"}')
end
"""


async def seed(url: str, customers: int) -> None:
    """Existing shoppers with cards, phones +37533 0NNNNNN (the ones ``verify`` half signs in again)."""
    conn = await asyncpg.connect(url)
    try:
        await SCHEMA.migrate(conn)
        ids = [uuid.uuid4() for _ in range(customers)]
        await conn.copy_records_to_table(
            "customers",
            records=[(cid, f"+3753300{n:05d}", "pos") for n, cid in enumerate(ids)],
            columns=["id", "phone", "source"],
        )
        await conn.copy_records_to_table(
            "cards",
            records=[(card_number(n), cid) for n, cid in enumerate(ids)],
            columns=["number", "customer_id"],
        )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def wrk(base: str, scenario: str, workdir: Path, seconds: float, connections: int, **values: str) -> dict[str, Any]:
    script = workdir / f"{scenario}-{secrets.token_hex(3)}.lua"
    defaults = {"scenario": scenario, "prefix": "", "codes": "", "card": card_number(0), "octet": "1"}
    script.write_text(LUA % (defaults | values))
    command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:.0f}s", "--latency", "-s", str(script), base]
    return parse_wrk(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


async def issued_codes(url: str, prefix: str) -> list[str]:
    """``phone code`` lines for the codes sent in one round (existing customers' phones first)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT recipient, params->>'code' AS code FROM outbox WHERE template = 'otp' AND recipient LIKE $1",
            prefix + "%",
        )
    finally:
        await conn.close()
    return [f"{r['recipient']} {r['code']}" for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=5, help="per scenario per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="API processes")
    args = parser.parse_args()
    if args.customers > 100_000:
        parser.error("--customers is at most 100000 (their phones share a five-digit range)")
    if shutil.which("wrk") is None:
        raise SystemExit("this benchmark needs wrk (Debian/Ubuntu: apt install wrk; macOS: brew install wrk)")

    many = str(10**9)
    settings = {
        "KARTKA_OTP_PER_IP_PER_HOUR": many,
        "KARTKA_SIGNIN_PER_IP_PER_HOUR": many,
        "KARTKA_SMS_BUDGET_PER_HOUR": many,
        "KARTKA_TRUSTED_PROXIES": "127.0.0.1",
        "KARTKA_RUN_WORKER": "false",
    }
    with fresh_database() as url, scratch() as workdir:
        asyncio.run(seed(url, args.customers))
        with serving(url, args.workers, settings) as base:
            wrk(base, "baseline", workdir, 2, args.connections)  # warm-up
            rounds: dict[str, list[dict[str, Any]]] = {"baseline": [], "send": [], "verify": []}
            for number in range(args.rounds):
                rounds["baseline"].append(wrk(base, "baseline", workdir, args.seconds, args.connections))
                # Half the phones of a round are existing customers (+375330...), half new (+375 33 1...).
                # Each half sends for the whole --seconds, so that verify has codes enough for its --seconds.
                for prefix in ("+3753300", f"+375331{number}"):
                    rounds["send"].append(wrk(base, "send", workdir, args.seconds, args.connections, prefix=prefix))
                codes = asyncio.run(issued_codes(url, "+3753300")) + asyncio.run(issued_codes(url, f"+375331{number}"))
                codes_file = workdir / f"codes-{number}.txt"
                codes_file.write_text("\n".join(secrets.SystemRandom().sample(codes, len(codes))) + "\n")
                figures = wrk(base, "verify", workdir, args.seconds, args.connections, codes=str(codes_file))
                figures["codes_available"] = len(codes)
                rounds["verify"].append(figures)
                asyncio.run(clear_codes(url))
    sends = rounds["send"]
    rounds["send"] = [combine(sends[i], sends[i + 1]) for i in range(0, len(sends), 2)]
    report({scenario: median_round(runs) for scenario, runs in rounds.items()}, args)


async def clear_codes(url: str) -> None:
    """Between rounds: the next round's sends must not meet this round's cooldowns, nor the dead rows
    this round left (each round starts from the same state, as autovacuum would keep it)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DELETE FROM signin_codes; DELETE FROM outbox WHERE template = 'otp'")
        await conn.execute("VACUUM ANALYZE signin_codes, outbox, rate_events, customers, cards, auth_sessions")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def combine(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Two half-rounds of sends (to customers, to new phones) as one round."""
    return {
        "requests_per_second": (first["requests_per_second"] + second["requests_per_second"]) / 2,
        "p50_ms": max(first["p50_ms"], second["p50_ms"]),
        "p99_ms": max(first["p99_ms"], second["p99_ms"]),
        "errors": first["errors"] + second["errors"],
        "client": "wrk",
    }


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    baseline = results["baseline"]["requests_per_second"]
    print(
        f"\n{args.connections} connections, {args.workers} API process(es), {args.customers} customers, "
        f"{args.rounds} rounds of {args.seconds:.0f} s per scenario (median shown), {os.cpu_count()} CPUs"
    )
    print(f"{'scenario':<10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'vs baseline':>13}  rounds")
    for scenario, figures in results.items():
        print(
            f"{scenario:<10}{figures['requests_per_second']:>10.0f}{figures['p50_ms']:>10.2f}"
            f"{figures['p99_ms']:>10.2f}{figures['errors']:>8}{figures['requests_per_second'] / baseline:>13.0%}"
            f"  {figures['rounds']}"
        )
    verify = results["verify"]
    if verify["errors"]:
        print(
            f"verify: {verify['errors']} answers were not 200: the round used up its "
            f"{verify['codes_available']} codes (each works once); give --seconds more, or fewer --connections"
        )
    save("signin", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
