"""Per-address limits count the address the app derives, believing X-Forwarded-For from trusted proxies
only. Served by uvicorn as ``kartka serve`` runs it, so the peer address is a real one."""

from __future__ import annotations

import contextlib

import httpx
import msgspec

from boot.web import create_app
from kartka.settings import Settings
from tests.served import served_here


def served(settings: Settings) -> contextlib.AbstractAsyncContextManager[str]:
    app = create_app(msgspec.structs.replace(settings, otp_per_ip_per_hour=2))
    return served_here(app, proxy_headers=False, log_level="warning")


async def _statuses(base: str, forwarded: list[str], *, source: str = "127.0.0.1", first: int = 0) -> list[int]:
    """Codes to new phones, one per X-Forwarded-For value, over a connection from ``source``."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport, base_url=base) as http:
        return [
            (
                await http.post(
                    "/v1/auth/otp", json={"phone": f"+37529777{first + n:04d}"}, headers={"X-Forwarded-For": value}
                )
            ).status_code
            for n, value in enumerate(forwarded)
        ]


async def test_by_default_a_forwarded_address_from_loopback_is_not_believed(settings: Settings) -> None:
    async with served(settings) as base:
        assert await _statuses(base, ["198.51.100.1", "198.51.100.2", "198.51.100.3"]) == [202, 202, 429]


async def test_a_trusted_proxy_names_the_client_and_the_client_cannot_name_itself(settings: Settings) -> None:
    forwarded = [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.1",
        "203.0.113.7, 198.51.100.1",  # the shopper's own header, extended by the proxy: the proxy's word counts
        "198.51.100.3",
    ]
    async with served(msgspec.structs.replace(settings, trusted_proxies="127.0.0.1")) as base:
        assert await _statuses(base, forwarded) == [202, 202, 202, 429, 202]
        # The same header over a connection from an address that is not a trusted proxy changes nothing.
        spoofed = ["198.51.100.4", "198.51.100.5", "198.51.100.6"]
        assert await _statuses(base, spoofed, source="127.0.0.2", first=10) == [202, 202, 429]
