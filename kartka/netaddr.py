"""Client addresses behind proxies: which proxies to believe, and the address limits count by."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, 192.0.2.7"`` -> networks; a bare address is a network of one. Raises ValueError."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


def _address(text: str) -> IPAddress | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientAddresses:
    """The one place the client's address is derived, for every per-address limit.

    The peer the server saw is the client, unless it is one of the trusted proxies
    (``KARTKA_TRUSTED_PROXIES``; none by default): then ``X-Forwarded-For`` is read from the right,
    skipping trusted hops, and the first address that is not a trusted proxy is the client. Whatever
    lies to the left of it was written by the client and is ignored. IPv6 clients are counted by their
    /64, the block one subscriber gets, or a single phone could take 2^64 turns at every limit.
    """

    def __init__(self, trusted: Iterable[IPNetwork] = ()) -> None:
        self.trusted = tuple(trusted)

    def _is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.trusted)

    def of(self, peer: str | None, forwarded_for: Iterable[str]) -> str:
        """The client of a connection from ``peer`` that carried these ``X-Forwarded-For`` headers."""
        if peer is None:
            return "unknown"
        address = _address(peer)
        if address is None:
            return peer  # not an IP (a test client, a Unix socket): counted as it is
        if self.trusted and self._is_trusted(address):
            hops = [hop for header in forwarded_for for hop in header.split(",")]
            for hop in reversed(hops):
                forwarded = _address(hop)
                if forwarded is None:
                    break  # a hop we cannot read: the last trusted one is as far as we can see
                address = forwarded
                if not self._is_trusted(forwarded):
                    break
        return _limited(address)


def _limited(address: IPAddress) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
