"""The one rule for "admits the internet" (components/config/addresses.py), with property tests.

Any set of ranges whose union covers more globally reachable addresses than one /8 holds admits
the internet, however it is split: `0.0.0.0/1` + `128.0.0.0/1` exactly like `0.0.0.0/0`.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.config import parse_stack_config
from components.config.addresses import _NOT_GLOBAL, THRESHOLD, admits_internet, internet_problem, public_addresses
from tests.unit.test_config_checks import _raw_config
from tests.unit.test_config_errors import BadConfig

V4_TOTAL = 2**32
PRIVATE_V4 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")


def v4_networks(min_prefix: int = 0, max_prefix: int = 32) -> st.SearchStrategy[ipaddress.IPv4Network]:
    return st.builds(
        lambda address, prefix: ipaddress.IPv4Network((address, prefix), strict=False),
        st.integers(0, V4_TOTAL - 1),
        st.integers(min_prefix, max_prefix),
    )


def v6_networks(min_prefix: int = 0, max_prefix: int = 128) -> st.SearchStrategy[ipaddress.IPv6Network]:
    return st.builds(
        lambda address, prefix: ipaddress.IPv6Network((address, prefix), strict=False),
        st.integers(0, 2**128 - 1),
        st.integers(min_prefix, max_prefix),
    )


def _texts(networks) -> list[str]:
    return [str(n) for n in networks]


# --------------------------------------------------------------------------- the cases people write


@pytest.mark.parametrize(
    "cidrs",
    [
        ["0.0.0.0/0"],
        ["0.0.0.0/1", "128.0.0.0/1"],  # the example: passed the old `/0` check
        ["::/0"],
        ["::/1", "8000::/1"],
        ["2000::/3"],
        ["2000::/7"],
        ["3.0.0.0/8", "4.0.0.0/32"],  # one public /8 and a single address more
        [f"{i}.0.0.0/8" for i in range(1, 100) if i not in (10, 100, 127)],  # many /8s
        ["10.0.0.0/8", "0.0.0.0/1", "128.0.0.0/1"],  # a private range in the list hides nothing
    ],
)
def test_ranges_that_admit_the_internet(cidrs):
    assert admits_internet(cidrs)
    assert "admits the internet" in internet_problem(cidrs)


@pytest.mark.parametrize(
    "cidrs",
    [
        [],
        ["203.0.113.7/32"],
        ["3.0.0.0/8"],  # exactly one public /8: allowed (the old endpoint rule allowed it too)
        ["10.0.0.0/7"],  # 10/8 is private, so only 11/8 is public: one /8
        list(PRIVATE_V4),
        ["224.0.0.0/3"],  # multicast and reserved: never a client's address
        ["fc00::/7", "fe80::/10", "::1/128"],  # unique local, link-local, loopback
        ["2000::/8"],  # one /8 of IPv6, less the documentation prefix inside it
        ["2001:db8::/32", "3fff::/20"],
        ["10.1.0.0/16", "100.64.0.0/16"],  # the committed stacks' VPC CIDRs (internal gateway default)
    ],
)
def test_ranges_that_do_not(cidrs):
    assert not admits_internet(cidrs)
    assert internet_problem(cidrs) is None


def test_the_thresholds_are_one_slash_8_of_each_family():
    assert THRESHOLD == {4: 2**24, 6: 2**120}
    assert public_addresses(["3.0.0.0/8"]) == {4: 2**24, 6: 0}
    assert public_addresses(["2000::/7"]) == {4: 0, 6: 2**121 - 2**96}  # 2001:db8::/32 is inside


# --------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(st.lists(v4_networks(), max_size=6), st.data())
def test_splitting_a_range_into_its_halves_changes_nothing(networks, data):
    """However a range is split, the union (and so the verdict) is the same."""
    if not networks:
        return
    index = data.draw(st.integers(0, len(networks) - 1))
    target = networks[index]
    if target.prefixlen == target.max_prefixlen:
        return
    halves = list(target.subnets(prefixlen_diff=1))
    split = networks[:index] + halves + networks[index + 1 :]
    assert public_addresses(_texts(split)) == public_addresses(_texts(networks))
    assert admits_internet(_texts(split)) == admits_internet(_texts(networks))


@settings(max_examples=300, deadline=None)
@given(st.lists(v4_networks(), max_size=6), st.lists(v6_networks(), max_size=4), st.randoms())
def test_order_and_repetition_change_nothing(v4, v6, rnd):
    cidrs = _texts(v4 + v6)
    shuffled = cidrs + cidrs[: len(cidrs) // 2]
    rnd.shuffle(shuffled)
    assert public_addresses(shuffled) == public_addresses(cidrs)


@settings(max_examples=300, deadline=None)
@given(st.lists(v4_networks(), max_size=5), v4_networks(), st.lists(v6_networks(), max_size=3), v6_networks())
def test_adding_a_range_never_admits_fewer(v4, extra4, v6, extra6):
    before = public_addresses(_texts(v4 + v6))
    after = public_addresses(_texts([*v4, extra4, *v6, extra6]))
    assert after[4] >= before[4] and after[6] >= before[6]
    if admits_internet(_texts(v4 + v6)):
        assert admits_internet(_texts([*v4, extra4, *v6, extra6]))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(PRIVATE_V4), st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_private_ranges_never_count(block, address, extra_bits):
    network = ipaddress.ip_network(block)
    prefix = min(32, network.prefixlen + extra_bits)
    inside = ipaddress.ip_network(
        (int(network.network_address) | (address % network.num_addresses), prefix), strict=False
    )
    assert public_addresses([str(inside)])[4] == 0


@settings(max_examples=150, deadline=None)
@given(st.lists(v4_networks(min_prefix=22), min_size=1, max_size=4))
def test_counting_agrees_with_enumerating_every_address(networks):
    """The interval arithmetic against brute force: small ranges, address by address (overlaps included)."""
    excluded = [ipaddress.ip_network(n) for n in _NOT_GLOBAL[4]]
    addresses = {a for n in networks for a in n}
    expected = sum(1 for a in addresses if not any(a in block for block in excluded))
    assert public_addresses(_texts(networks))[4] == expected


@settings(max_examples=200, deadline=None)
@given(v4_networks(max_prefix=7))
def test_any_public_v4_range_wider_than_slash_8_admits_the_internet_unless_mostly_private(network):
    public = public_addresses([str(network)])[4]
    assert admits_internet([str(network)]) == (public > 2**24)
    # a /7 or wider is 2^25+ addresses: only the special-purpose blocks can bring it under
    if public <= 2**24:
        assert network.num_addresses - public >= 2**24


# --------------------------------------------------------------------------- the keys that use it


@pytest.mark.parametrize(
    "overrides",
    [
        {"gateway.allowedCidrs": ["10.0.0.0/8", "192.168.0.0/16"]},
        {"gateway.allowedCidrs": ["3.0.0.0/8"]},
        {"cluster.endpointPublicAccess": True, "cluster.endpointPublicAccessCidrs": ["3.0.0.0/8", "10.0.0.0/8"]},
    ],
)
def test_the_keys_accept_what_does_not_admit_the_internet(overrides):
    parse_stack_config(_raw_config(BadConfig("ok", "dev", overrides, "", "")), {"hfToken"})


@pytest.mark.parametrize(
    "overrides",
    [
        {"gateway.allowedCidrs": ["0.0.0.0/1", "128.0.0.0/1"], "gateway.dangerouslyAllowAnySource": True},
        {
            "cluster.endpointPublicAccess": True,
            "cluster.endpointPublicAccessCidrs": ["0.0.0.0/1", "128.0.0.0/1"],
            "cluster.allowPublicEndpointFromAnywhere": True,
        },
    ],
)
def test_the_explicit_keys_still_allow_it(overrides):
    parse_stack_config(_raw_config(BadConfig("ok", "dev", overrides, "", "")), {"hfToken"})
