"""Benchmark of wallet passes: signed passes built per second, and the PassKit web service under load.

    .venv-test/bin/python -m bench.wallet            (or ./scripts/bench-wallet)

Two parts, each against a baseline measured in the same run:

- In process: ``build_pkpass`` (pass.json, images, strings, manifest, detached CMS signature) for a
  card's data, against a bare RSA-2048 signature of the same manifest, the one cost no pass can avoid.
- Over HTTP, with ``wrk`` against the app under uvicorn as ``kartka serve`` runs it, on a fresh database
  (``KARTKA_BENCH_ADMIN_URL``) seeded like the till benchmark, every card with a pass:
  ``baseline`` (a bare asyncpg single-row read through the same stack), ``pass`` (``GET
  /passkit/v1/passes/...``: the token checked, balance and tier read, the pass built and signed) and
  ``not-modified`` (the same with ``If-Modified-Since``: the 304 a phone gets when nothing changed).
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import os
import secrets
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bench.harness import fresh_database, median_round, parse_wrk, save, scratch, serving
from bench.run import seed
from wallet.models import BalanceView, Expiring, NextTier, TierView
from wallet.passes.apple import ApplePassData, build_pkpass
from wallet.passes.devcerts import generate_dev_certs
from wallet.passes.identity import load_pass_identity

ROOT = Path(__file__).resolve().parent.parent
TYPE_ID = "pass.by.kartka.loyalty"  # the development certificates' pass type

LUA = """
local entries = {}
for line in io.lines("%(passes)s") do entries[#entries + 1] = line end
math.randomseed(%(seed)d)
request = function()
  local entry = entries[math.random(#entries)]
  local serial, token = entry:match("(%%S+) (%%S+)")
  if "%(scenario)s" == "baseline" then
    return wrk.format("POST", "/bench/baseline", {["Content-Type"] = "application/json"}, '{"code":"' .. serial .. '"}')
  end
  local headers = {["Authorization"] = "ApplePass " .. token}
  if "%(scenario)s" == "not-modified" then headers["If-Modified-Since"] = "%(since)s" end
  return wrk.format("GET", "/passkit/v1/passes/%(pass_type)s/" .. serial, headers)
end
"""


def in_process(count: int, workdir: Path) -> dict[str, float]:
    dev = generate_dev_certs(workdir / "certs", pass_type_id=TYPE_ID, team_id="KARTKADEV0", organization="Kartka")
    identity = load_pass_identity(dev.cert_file, dev.key_file, dev.wwdr_file)
    data = ApplePassData(
        serial_number="2000000000017",
        authentication_token=secrets.token_urlsafe(32),
        web_service_url="https://loyalty.example/passkit",
        card_number="2000000000017",
        holder_name="Анна",
        balance=BalanceView(
            available=12_550, pending=2_500, next_available_at=datetime.now(UTC), expiring_soon=Expiring(0, None)
        ),
        tier=TierView(
            code="standart",
            name="Standart",
            rate=500,
            spend_365d=20_000,
            next=NextTier(code="gold", name="Gold", threshold=50_000),
            to_next=30_000,
        ),
        card_page_url="https://loyalty.example/c/" + "0" * 32,
        number_locale="ru",
    )
    build_pkpass(data, identity)  # warm caches (strings, images)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    manifest = b"{" + b'"pass.json":"' + b"0" * 40 + b'"}' * 8
    rounds: dict[str, list[float]] = {"rsa_sign": [], "build_pkpass": []}
    for _ in range(3):  # alternate, take the median
        started = time.perf_counter()
        for _ in range(count):
            key.sign(manifest, padding.PKCS1v15(), hashes.SHA256())
        rounds["rsa_sign"].append(count / (time.perf_counter() - started))
        started = time.perf_counter()
        for _ in range(count):
            build_pkpass(data, identity)
        rounds["build_pkpass"].append(count / (time.perf_counter() - started))
    return {name: sorted(values)[1] for name, values in rounds.items()}


async def give_passes(url: str) -> tuple[list[str], datetime]:
    """A pass for every card, updated a minute ago; ``serial token`` lines for wrk."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """
            INSERT INTO passes (serial_number, card_number, authentication_token, updated_at, created_at)
            SELECT number, number, encode(sha256(number::bytea), 'hex'),
                   date_trunc('second', now()) - interval '1 minute', now() FROM cards
            """
        )
        await conn.execute("VACUUM ANALYZE passes")
        rows = await conn.fetch("SELECT serial_number, authentication_token, updated_at FROM passes")
    finally:
        await conn.close()
    return [f"{r['serial_number']} {r['authentication_token']}" for r in rows], rows[0]["updated_at"]


def wrk(base: str, scenario: str, passes_file: Path, since: str, seconds: float, connections: int) -> dict[str, Any]:
    script = passes_file.parent / f"{scenario}.lua"
    values = {"passes": passes_file, "seed": secrets.randbelow(2**31), "scenario": scenario, "since": since}
    script.write_text(LUA % (values | {"pass_type": TYPE_ID}))
    command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:.0f}s", "--latency", "-s", str(script), base]
    return parse_wrk(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--builds", type=int, default=2_000, help="in-process passes per round")
    parser.add_argument("--seconds", type=float, default=5, help="per HTTP scenario per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="API processes")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("this benchmark needs wrk (Debian/Ubuntu: apt install wrk; macOS: brew install wrk)")
    with scratch() as workdir:
        local = in_process(args.builds, workdir)
        with fresh_database() as url:
            asyncio.run(seed(url, args.customers))
            entries, updated = asyncio.run(give_passes(url))
            passes_file = workdir / "passes.txt"
            passes_file.write_text("\n".join(entries) + "\n")
            since = email.utils.format_datetime(updated.astimezone(UTC), usegmt=True)
            scenarios = ("baseline", "pass", "not-modified")
            rounds: dict[str, list[dict[str, Any]]] = {s: [] for s in scenarios}
            with serving(url, args.workers, {"KARTKA_CERTS_DIR": str(workdir / "certs")}) as base:
                for number in range(args.rounds):
                    for scenario in scenarios:
                        if number == 0:
                            wrk(base, scenario, passes_file, since, 2, args.connections)  # warm-up
                        figures = wrk(base, scenario, passes_file, since, args.seconds, args.connections)
                        rounds[scenario].append(figures)
    report(local, {s: median_round(r) for s, r in rounds.items()}, args)


def report(local: dict[str, float], http: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\nin process, one core, median of 3 rounds of {args.builds}:")
    share = local["build_pkpass"] / local["rsa_sign"]
    print(f"  bare RSA-2048 signature (baseline)  {local['rsa_sign']:>8.0f} /s  100%")
    print(f"  signed .pkpass built                {local['build_pkpass']:>8.0f} /s  {share:.0%}")
    print(
        f"\nHTTP: {args.connections} connections, {args.workers} API process(es), {args.customers} passes, "
        f"{args.rounds} rounds of {args.seconds:.0f} s (median shown), {os.cpu_count()} CPUs"
    )
    baseline = http["baseline"]["requests_per_second"]
    print(f"{'scenario':<14}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'vs baseline':>13}  rounds")
    for scenario, figures in http.items():
        print(
            f"{scenario:<14}{figures['requests_per_second']:>10.0f}{figures['p50_ms']:>10.2f}"
            f"{figures['p99_ms']:>10.2f}{figures['errors']:>8}{figures['requests_per_second'] / baseline:>13.0%}"
            f"  {figures['rounds']}"
        )
    save("wallet", {"args": vars(args), "in_process": local, "http": http})


if __name__ == "__main__":
    main()
