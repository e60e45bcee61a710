"""Benchmark of the APNs provider: pushes per second to a fake APNs speaking real HTTP/2 over TLS.

    .venv-test/bin/python -m bench.apns [--batches 30]

The fake (``tests/fakes/apns.py``) runs in a process of its own (in this one, every socket write would
hand the GIL to the fake's thread for up to 5 ms and the figure would measure that) and checks every
provider token as Apple does: the figure is comparable between two implementations measured the same
way on the same machine, not APNs' own capacity. The baseline is the same fake driven by
a bare ``httpx`` HTTP/2 client (the same requests and token, no outcome mapping): what the HTTP stack and
the fake allow. Batches go out as the worker sends them (``ApnsProvider.max_batch`` concurrent streams on
one connection).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import jwt

from bench.harness import save
from notifications.model import Channel, Outbound, Outcome
from notifications.providers.apns import ApnsProvider, apns_id
from tests.fakes.apns import FakeApns
from tests.fakes.tls import TlsFiles, make_apns_key, make_tls

KEY_ID = "BENCHKEY01"
TEAM_ID = "BENCHTEAM1"
TOPIC = "by.kartka.app"


def _batch(start: int, size: int) -> list[Outbound]:
    return [
        Outbound(
            id=n,
            key=f"points-earned:{n}",
            channel=Channel.APNS,
            recipient=f"{n:064x}",
            text="Начислено 120 баллов",
        )
        for n in range(start, start + size)
    ]


class Rate:
    """Pushes per second of wall time and per second of this process's CPU time (the client's alone).
    On a shared machine the wall figure depends on the neighbours; the CPU figure much less."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def done(self, pushes: int) -> tuple[float, float]:
        return pushes / (time.perf_counter() - self.wall), pushes / (time.process_time() - self.cpu)


async def _provider_rate(provider: ApnsProvider, batches: int) -> tuple[float, float]:
    await provider.send(_batch(0, provider.max_batch))  # connect and warm up
    size = provider.max_batch
    rate = Rate()
    for b in range(batches):
        results = await provider.send(_batch((b + 1) * size, size))
        assert all(r.outcome is Outcome.SENT for r in results), results[:3]
    return rate.done(batches * size)


async def _baseline_rate(
    fake: FakeApns, ca_file: Path, private_pem: str, batches: int, size: int
) -> tuple[float, float]:
    context = ssl.create_default_context(cafile=str(ca_file))
    token = jwt.encode(
        {"iss": TEAM_ID, "iat": int(time.time())}, private_pem, algorithm="ES256", headers={"kid": KEY_ID}
    )
    async with httpx.AsyncClient(http2=True, verify=context, base_url=fake.url) as client:

        async def one(n: int) -> None:
            response = await client.post(
                f"/3/device/{n:064x}",
                content=b'{"aps":{"alert":"x"}}',
                headers={
                    "authorization": f"bearer {token}",
                    "apns-topic": TOPIC,
                    "apns-id": apns_id(str(n)),
                    "apns-push-type": "alert",
                    "apns-priority": "10",
                },
            )
            assert response.status_code == 200, response.text

        await asyncio.gather(*(one(n) for n in range(size)))
        rate = Rate()
        for b in range(batches):
            await asyncio.gather(*(one((b + 1) * size + n) for n in range(size)))
        return rate.done(batches * size)


def _serve_fake(tls: TlsFiles, public_pem: str, pipe: multiprocessing.connection.Connection) -> None:
    """The fake APNs in a child process: send the port, serve until told to stop."""
    fake = FakeApns(tls, public_pem=public_pem, key_id=KEY_ID, team_id=TEAM_ID)
    fake.start()
    pipe.send(fake.port)
    pipe.recv()
    fake.stop()


async def run(batches: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kartka-bench-apns-") as scratch:
        directory = Path(scratch)
        tls, key = make_tls(directory), make_apns_key(directory)
        ours, theirs = multiprocessing.Pipe()
        child = multiprocessing.get_context("spawn").Process(target=_serve_fake, args=(tls, key.public_pem, theirs))
        child.start()
        fake = FakeApns(tls)  # only for its URL: the one serving is in the child
        fake.port = ours.recv()
        try:
            provider = ApnsProvider(
                url=fake.url,
                key_pem=key.private_pem,
                key_id=KEY_ID,
                team_id=TEAM_ID,
                topic=TOPIC,
                ca_file=tls.ca_file,
                timeout=30.0,
            )
            try:
                rate = await _provider_rate(provider, batches)
            finally:
                await provider.aclose()
            baseline = await _baseline_rate(fake, tls.ca_file, key.private_pem, batches, provider.max_batch)
        finally:
            ours.send("stop")
            child.join(10)
    return {
        "pushes": batches * provider.max_batch,
        "provider_per_second": round(rate[0]),
        "provider_per_cpu_second": round(rate[1]),
        "baseline_httpx_per_second": round(baseline[0]),
        "baseline_httpx_per_cpu_second": round(baseline[1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=30, help="batches of 100 pushes to time (default 30)")
    results = asyncio.run(run(parser.parse_args().batches))
    for name, value in results.items():
        print(f"{name:>28}: {value}")
    print(f"saved to {save('apns', results)}")


if __name__ == "__main__":
    main()
