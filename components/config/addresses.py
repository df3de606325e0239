"""When does a list of CIDRs "admit the internet"? One rule for every key that admits clients by address.

A literal `0.0.0.0/0` is only the obvious case: `0.0.0.0/1` + `128.0.0.0/1`, or a hundred public
/8s, admit the same clients. So the rule looks at what the ranges cover together, counting only
addresses a client on the internet can have:

    A list of CIDRs admits the internet when the union of its ranges covers more globally
    reachable addresses than one /8 holds in that address family (1/256 of the family's space):
    more than 2**24 (16,777,216) public IPv4 addresses, or more than 2**120 public IPv6 addresses.

Globally reachable: IPv4 is everything but the IANA IPv4 Special-Purpose Address Registry's
blocks that are not globally reachable (RFC 6890 and its updates: private 10/8, 172.16/12,
192.168/16, shared 100.64/10, loopback, link-local, documentation and benchmarking nets,
"this network", reserved 240/4), plus multicast 224/4 (never a client's source address). IPv6
is the global unicast space 2000::/3 (RFC 4291) minus the documentation prefixes 2001:db8::/32
(RFC 3849) and 3fff::/20 (RFC 9637).

So private ranges never count (`10.0.0.0/8` admits nobody from the internet), one public /8
(`3.0.0.0/8`) is still allowed, and any union beyond that is the internet, however it is split.
The keys: `gateway.allowedCidrs` (override: `gateway.dangerouslyAllowAnySource`),
`cluster.endpointPublicAccessCidrs` (override: `cluster.allowPublicEndpointFromAnywhere`) and
`cluster.endpointPrivateAccessCidrs` (no override: nothing on the internet routes to a private
endpoint, so such a range is a mistake).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# One /8's worth of the family's space: 1/256 of it.
SHARE_BITS = 8
THRESHOLD = {4: 2 ** (32 - SHARE_BITS), 6: 2 ** (128 - SHARE_BITS)}

# Where globally reachable addresses live, and the blocks inside that are not.
_GLOBAL = {4: ("0.0.0.0/0",), 6: ("2000::/3",)}
_NOT_GLOBAL = {
    4: (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private (RFC 1918)
        "100.64.0.0/10",  # shared address space (RFC 6598)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast: never a source address
        "240.0.0.0/4",  # reserved, and the limited broadcast address
    ),
    6: ("2001:db8::/32", "3fff::/20"),  # documentation
}


def _collapsed(networks: Iterable[Network]) -> list[Network]:
    # one family at a time (collapse_addresses refuses a mix); typed loosely for that reason
    items: list[Any] = list(networks)
    return list(ipaddress.collapse_addresses(items))


def _overlap(a: list[Network], b: list[Network]) -> list[Network]:
    """The intersection of two unions of CIDRs (each collapsed: disjoint ranges), as CIDRs.

    Two CIDRs either nest or are disjoint, so every overlap is the smaller of a pair."""
    found = []
    for x in a:
        for y in b:
            if x.overlaps(y):
                found.append(x if x.prefixlen >= y.prefixlen else y)
    return _collapsed(found)


def public_addresses(cidrs: Iterable[str]) -> dict[int, int]:
    """IP version -> how many globally reachable addresses the union of `cidrs` covers."""
    by_version: dict[int, list[Network]] = {4: [], 6: []}
    for text in cidrs:
        network = ipaddress.ip_network(text, strict=False)
        by_version[network.version].append(network)
    counts = {}
    for version, networks in by_version.items():
        union = _collapsed(networks)
        reachable = _overlap(union, _collapsed(ipaddress.ip_network(n) for n in _GLOBAL[version]))
        excluded = _overlap(reachable, _collapsed(ipaddress.ip_network(n) for n in _NOT_GLOBAL[version]))
        counts[version] = sum(n.num_addresses for n in reachable) - sum(n.num_addresses for n in excluded)
    return counts


def admits_internet(cidrs: Iterable[str]) -> bool:
    """Whether the union of `cidrs` covers more public addresses than one /8 holds (see the module docstring)."""
    return any(count > THRESHOLD[version] for version, count in public_addresses(cidrs).items())


def _amount(version: int, count: int) -> str:
    if version == 4:
        return f"{count:,} public IPv4 addresses"
    return f"about 2^{count.bit_length() - 1} public IPv6 addresses"


def internet_problem(cidrs: Iterable[str]) -> str | None:
    """Why `cidrs` admit the internet, in words for a config error; None when they do not."""
    listed = list(cidrs)
    over = {v: n for v, n in public_addresses(listed).items() if n > THRESHOLD[v]}
    if not over:
        return None
    amounts = " and ".join(_amount(v, n) for v, n in over.items())
    return (
        f"{listed} together cover {amounts}, more than one /8 holds (1/256 of the address space): "
        "that admits the internet"
    )
