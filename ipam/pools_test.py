"""Pool selection and block picking (pure)."""

from __future__ import annotations

import ipaddress
import json

import pytest

from ipam.errors import NoSuitablePool
from ipam.pools import Pool, next_free_block, node_selected, pool_for_ip, pool_from_resource

net = ipaddress.ip_network


def _pool(name, cidr, bs=26, **kw) -> Pool:
    return Pool(name=name, cidr=net(cidr), block_size=bs, **kw)


def test_pool_from_resource_defaults_block_size_per_family():
    v4 = {"metadata": {"name": "p4"}, "spec": {"cidr": "10.65.0.0/16"}}
    v6 = {"metadata": {"name": "p6"}, "spec": {"cidr": "fd00::/48", "disabled": True}}
    assert pool_from_resource(json.dumps(v4)) == _pool("p4", "10.65.0.0/16", 26)
    p6 = pool_from_resource(json.dumps(v6))
    assert (p6.block_size, p6.disabled) == (122, True)


def test_pool_from_resource_rejects_block_size_larger_than_pool():
    bad = {"metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/28", "blockSize": 24}}
    with pytest.raises(ValueError, match=r"IPPool p: field spec.blockSize"):
        pool_from_resource(json.dumps(bad))


def test_pool_from_resource_rejects_huge_blocks():
    bad = {"metadata": {"name": "p6"}, "spec": {"cidr": "fd00::/48", "blockSize": 64}}
    with pytest.raises(ValueError, match=r"IPPool p6: field spec.blockSize: /64 blocks"):
        pool_from_resource(json.dumps(bad))


def test_next_free_block_skips_taken_and_ends():
    p = _pool("p", "10.0.0.0/28", 30)
    assert next_free_block(p, []) == net("10.0.0.0/30")
    assert next_free_block(p, [net("10.0.0.0/30"), net("10.9.0.0/30")]) == net("10.0.0.4/30")
    assert next_free_block(p, list(p.blocks())) is None


def test_next_free_block_on_huge_v6_pool_is_lazy():
    p = _pool("p", "fd00::/48", 122)
    assert next_free_block(p, [net("fd00::/122")]) == net("fd00::40/122")


def test_pool_for_ip_only_enabled():
    pools = [_pool("off", "10.1.0.0/16", disabled=True), _pool("on", "10.2.0.0/16")]
    assert pool_for_ip(pools, ipaddress.ip_address("10.2.3.4")).name == "on"
    assert pool_for_ip(pools, ipaddress.ip_address("10.1.3.4")) is None


@pytest.mark.parametrize(
    ("selector", "labels", "want"),
    [
        ("all()", {}, True),
        ("", {}, True),
        ("rack == 'r1'", {"rack": "r1"}, True),
        ("rack == 'r1'", {"rack": "r2"}, False),
        ("rack != 'r1'", {}, True),
        ("has(edge)", {"edge": ""}, True),
        ('has(edge) && zone == "z"', {"edge": "1", "zone": "y"}, False),
        ("zone in {'a', 'b'} || !has(edge)", {"zone": "c"}, True),
        ("zone ==", {"zone": ""}, False),  # does not parse: matches nothing
    ],
)
def test_node_selected(selector, labels, want):
    assert node_selected(selector, labels) is want


def test_select_pools_reasons():
    from ipam.pools import select_pools

    pools = [
        _pool("v6", "fd00::/48", 122),
        _pool("off", "10.1.0.0/16", disabled=True),
        _pool("r1", "10.2.0.0/16", node_selector="rack == 'r1'"),
        _pool("any", "10.3.0.0/16"),
    ]
    assert [p.name for p in select_pools(pools, 4, {"rack": "r1"})] == ["r1", "any"]
    assert [p.name for p in select_pools(pools, 4, {})] == ["any"]
    with pytest.raises(NoSuitablePool, match=r"requested pool v6 .* is not IPv4"):
        select_pools(pools, 4, {}, ["v6"])
    with pytest.raises(NoSuitablePool) as e:
        select_pools(pools[:3], 4, {"rack": "r2"})
    assert e.value.reasons == [
        "pool off is disabled",
        "pool r1 nodeSelector \"rack == 'r1'\" does not match",
    ]
