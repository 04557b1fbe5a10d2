"""Route publisher, pure part: datastore blocks and nodes -> advertised routes."""

from __future__ import annotations

import ipaddress
import json

from bgp.daemon.publisher import PublisherView
from datastore import keys
from ipam.block import AllocationBlock

NODES = keys.resource_prefix("nodes")


def node_value(v4: str = "", v6: str = "") -> bytes:
    return json.dumps(
        {"kind": "Node", "metadata": {"name": "x"}, "spec": {"bgp": {"ipv4Address": v4,
                                                                     "ipv6Address": v6}}}
    ).encode()  # fmt: skip


def block_value(cidr: str, owner: str | None, holders: dict[str, str] | None = None) -> bytes:
    block = AllocationBlock.new(cidr, f"host:{owner}" if owner else None)
    for ip, node in (holders or {}).items():
        block.assign(ipaddress.ip_address(ip), f"h-{ip}", {"node": node})
    return block.to_json()


def routes(v: PublisherView) -> dict[str, str]:
    return {str(o.prefix): str(o.next_hop) for o in v.originate()}


def test_every_block_via_its_owner_and_borrowed_addresses_via_their_holder():
    v = PublisherView()
    for name, value in (("n1", node_value("10.0.0.1/24", "fd00::1/64")),
                        ("n2", node_value("10.0.1.2/24"))):  # fmt: skip
        v.update(NODES + name, value, NODES, keys.IPAM_BLOCKS)
    v.update(
        keys.block_key("10.244.1.0/26"),
        block_value("10.244.1.0/26", "n1", {"10.244.1.5": "n1", "10.244.1.9": "n2"}),
        NODES,
        keys.IPAM_BLOCKS,
    )
    v.update(keys.block_key("10.244.2.0/26"), block_value("10.244.2.0/26", "n2"), NODES,
             keys.IPAM_BLOCKS)  # fmt: skip
    v.update(keys.block_key("fd00:244::/122"), block_value("fd00:244::/122", "n1"), NODES,
             keys.IPAM_BLOCKS)  # fmt: skip
    # n2 has no IPv6 address: its v6 block (if any) would have no next hop.
    v.update(keys.block_key("fd00:245::/122"), block_value("fd00:245::/122", "n2"), NODES,
             keys.IPAM_BLOCKS)  # fmt: skip
    assert routes(v) == {
        "10.244.1.0/26": "10.0.0.1",
        "10.244.1.9/32": "10.0.1.2",  # borrowed by n2 from n1's block
        "10.244.2.0/26": "10.0.1.2",
        "fd00:244::/122": "fd00::1",
    }


def test_removed_node_or_block_is_withdrawn_and_bad_values_count_as_deleted():
    v = PublisherView()
    v.update(NODES + "n1", node_value("10.0.0.1/24"), NODES, keys.IPAM_BLOCKS)
    v.update(NODES + "n2", node_value("10.0.1.2/24"), NODES, keys.IPAM_BLOCKS)
    k1, k2 = keys.block_key("10.244.1.0/26"), keys.block_key("10.244.2.0/26")
    v.update(k1, block_value("10.244.1.0/26", "n1"), NODES, keys.IPAM_BLOCKS)
    v.update(k2, block_value("10.244.2.0/26", "n2"), NODES, keys.IPAM_BLOCKS)
    assert len(v.originate()) == 2
    v.update(NODES + "n2", None, NODES, keys.IPAM_BLOCKS)  # node removed, block remains
    assert routes(v) == {"10.244.1.0/26": "10.0.0.1"}
    v.update(k1, b"{not json", NODES, keys.IPAM_BLOCKS)
    assert routes(v) == {} and v.bad_values == 1
    v.update(k1, block_value("10.244.1.0/26", "n1"), NODES, keys.IPAM_BLOCKS)
    v.update(NODES + "n1", node_value("not-an-ip"), NODES, keys.IPAM_BLOCKS)
    assert routes(v) == {} and v.bad_values == 2
    # A block without a host affinity is nobody's: not advertised.
    v.update(NODES + "n1", node_value("10.0.0.1/24"), NODES, keys.IPAM_BLOCKS)
    v.update(k1, block_value("10.244.1.0/26", None), NODES, keys.IPAM_BLOCKS)
    assert routes(v) == {}


POOLS = keys.resource_prefix("ippools")


def pool_value(cidr: str, disable_export: bool) -> bytes:
    return json.dumps(
        {"kind": "IPPool", "metadata": {"name": "p"},
         "spec": {"cidr": cidr, "disableBGPExport": disable_export}}
    ).encode()  # fmt: skip


def test_blocks_in_a_pool_with_disable_bgp_export_are_not_advertised():
    v = PublisherView()

    def put(key: str, value: bytes | None) -> None:
        v.update(key, value, NODES, keys.IPAM_BLOCKS, POOLS)

    put(NODES + "n1", node_value("10.0.0.1/24"))
    put(NODES + "n2", node_value("10.0.1.2/24"))
    put(POOLS + "public", pool_value("10.244.0.0/16", False))
    put(POOLS + "private", pool_value("10.245.0.0/16", True))
    put(keys.block_key("10.244.1.0/26"), block_value("10.244.1.0/26", "n1"))
    put(keys.block_key("10.245.1.0/26"),
        block_value("10.245.1.0/26", "n1", {"10.245.1.7": "n2"}))  # fmt: skip
    # Only the exported pool's block; the private block and its borrowed /32 stay home.
    assert routes(v) == {"10.244.1.0/26": "10.0.0.1"}
    # The most specific pool decides: a private pool inside the public one.
    put(POOLS + "inner", pool_value("10.244.1.0/24", True))
    assert routes(v) == {}
    # Turning the flag off (or deleting the pool) advertises the blocks again.
    put(POOLS + "inner", None)
    put(POOLS + "private", pool_value("10.245.0.0/16", False))
    assert routes(v) == {
        "10.244.1.0/26": "10.0.0.1",
        "10.245.1.0/26": "10.0.0.1",
        "10.245.1.7/32": "10.0.1.2",
    }
    # A pool value that does not parse counts as deleted and is counted.
    put(POOLS + "private", b'{"spec": {"cidr": "10.245.0.0/16", "disableBGPExport": "yes"}}')
    assert v.bad_values == 1 and POOLS + "private" not in v.pools
