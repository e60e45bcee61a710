"""The client's address behind proxies: only trusted proxies may name it."""

from __future__ import annotations

import pytest

from kartka.netaddr import ClientAddresses, parse_networks
from kartka.settings import SettingsError, load_settings

PROXIES = ClientAddresses(parse_networks("10.0.0.0/8, 192.0.2.7"))


def test_nobody_is_trusted_by_default() -> None:
    assert load_settings({}).trusted_proxies == ""
    assert ClientAddresses().of("127.0.0.1", ["198.51.100.1"]) == "127.0.0.1"
    assert ClientAddresses().of("192.0.2.7", ["198.51.100.1"]) == "192.0.2.7"


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),  # a trusted proxy names the client
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),  # anyone else may not
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # what the client wrote itself is ignored
        ("10.1.2.3", ["6.6.6.6", "198.51.100.1, 10.9.9.9"], "198.51.100.1"),  # proxy chains, several headers
        ("10.1.2.3", ["198.51.100.1, 192.0.2.7"], "198.51.100.1"),
        ("10.1.2.3", [], "10.1.2.3"),  # nothing forwarded: the proxy itself
        ("10.1.2.3", ["garbage, 10.2.2.2"], "10.2.2.2"),  # unreadable: as far as trusted hops reach
        ("10.1.2.3", ["198.51.100.1:5555"], "198.51.100.1"),
        ("10.1.2.3", ["[2001:db8:1:2::99]:443"], "2001:db8:1:2::/64"),
        ("2001:db8:aa:bb:1:2:3:4", [], "2001:db8:aa:bb::/64"),  # IPv6 counts by the subscriber's /64
        ("::ffff:203.0.113.5", [], "203.0.113.5"),
        ("testclient", ["198.51.100.1"], "testclient"),
    ],
)
def test_the_client_is_the_first_untrusted_hop_from_the_right(peer: str, forwarded: list[str], client: str) -> None:
    assert PROXIES.of(peer, forwarded) == client


def test_trusted_proxies_are_checked_at_start() -> None:
    assert load_settings({"KARTKA_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8, ::1"}).trusted_proxies
    with pytest.raises(SettingsError, match="KARTKA_TRUSTED_PROXIES"):
        load_settings({"KARTKA_TRUSTED_PROXIES": "10.0.0.0/8, proxy.local"})
