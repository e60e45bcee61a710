"""Benchmark: how long a promotion change takes to price carts on a second API process (target < 1 s).

    .venv-test/bin/python -m bench.reload [--rounds N]

It makes a fresh database (as ``bench/run.py`` does), starts two API servers (two uvicorn processes, as
two replicas would be), and through the first one drafts, submits and approves a promotion (10 % off
milk), then pauses and resumes it ``--rounds`` times. After each change is answered, the second server's
``calculate`` is asked again and again until its price shows the change: that delay is the figure
(median and worst), and every round must be under a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from typing import Any

import asyncpg
import httpx

from bench.harness import fresh_database, save, serving
from bench.run import CART, seed
from kartka.keys import Scope, create_key

PROMOTION = {
    "id": "bench-reload",
    "title": {"en": "-10% on milk"},
    "benefit": {"type": "percent_off", "lines": {"skus": ["milk"]}, "percent_bp": 1000},
}


async def _keys(url: str) -> tuple[str, str]:
    conn = await asyncpg.connect(url)
    try:
        author, _ = await create_key(conn, scope=Scope.ADMIN, name="bench author")
        approver, _ = await create_key(conn, scope=Scope.ADMIN, name="bench approver")
        return author, approver
    finally:
        await conn.close()


async def measure(first: str, second: str, card: str, pos: str, author: str, approver: str, rounds: int) -> Any:
    async with httpx.AsyncClient(timeout=5) as client:
        till = {"Authorization": f"Bearer {pos}"}

        async def discount() -> int:
            answer = await client.post(
                f"{second}/v1/pos/orders/calculate", json={"card": card, "lines": CART}, headers=till
            )
            answer.raise_for_status()
            return int(answer.json()["discount"])

        async def change(path: str, key: str, **kwargs: Any) -> None:
            answer = await client.post(
                f"{first}/v1/admin/promotions{path}", headers={"Authorization": f"Bearer {key}"}, **kwargs
            )
            assert answer.status_code in (200, 201), answer.text

        async def until(changed: Any) -> float:
            started = time.monotonic()
            while not changed(await discount()):
                if time.monotonic() - started > 10:
                    raise RuntimeError("the second process never priced the change")
            return time.monotonic() - started

        before = await discount()
        await change("", author, json=PROMOTION)
        await change("/bench-reload/submit", author)
        await change("/bench-reload/approve", approver)
        delays = [await until(lambda d: d != before)]
        live = await discount()
        for _ in range(rounds):
            await change("/bench-reload/pause", author)
            delays.append(await until(lambda d: d != live))
            await change("/bench-reload/resume", author)
            delays.append(await until(lambda d: d == live))
    return {
        "changes": len(delays),
        "median_ms": round(statistics.median(delays) * 1000, 1),
        "max_ms": round(max(delays) * 1000, 1),
        "all_under_1s": max(delays) < 1.0,
        "discount_before_after": [before, live],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="pause/resume rounds after the approval")
    args = parser.parse_args()
    with fresh_database("kartka_bench_reload") as url:
        cards, pos = asyncio.run(seed(url, 10))
        author, approver = asyncio.run(_keys(url))
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(serving(url, 1))
            second = stack.enter_context(serving(url, 1))
            results = asyncio.run(measure(first, second, cards[0], pos, author, approver, args.rounds))
    print(
        f"a change reaches the second API process in {results['median_ms']} ms (median), "
        f"{results['max_ms']} ms at worst, over {results['changes']} changes"
    )
    print(f"saved to {save('reload', results)}")


if __name__ == "__main__":
    main()
