"""AllocationBlock arithmetic and codec (pure)."""

from __future__ import annotations

import ipaddress
import json

import pytest

from ipam.block import AllocationBlock, affinity_node, host_affinity
from ipam.errors import AddressInUse

ip = ipaddress.ip_address


@pytest.mark.parametrize(
    ("cidr", "ordinal", "addr"),
    [
        ("10.65.0.0/26", 0, "10.65.0.0"),
        ("10.65.0.64/26", 63, "10.65.0.127"),
        ("fd00::/122", 5, "fd00::5"),
        ("10.0.0.8/30", 3, "10.0.0.11"),
    ],
)
def test_ordinal_address_roundtrip(cidr, ordinal, addr):
    b = AllocationBlock.new(cidr, None)
    assert b.address(ordinal) == ip(addr)
    assert b.ordinal(ip(addr)) == ordinal


def test_ordinal_outside_block_is_an_error():
    b = AllocationBlock.new("10.65.0.0/30", None)
    with pytest.raises(ValueError, match=r"not in block 10\.65\.0\.0/30"):
        b.ordinal(ip("10.65.0.4"))
    with pytest.raises(ValueError):
        b.address(4)


def test_allocate_in_order_and_stop_when_full():
    b = AllocationBlock.new("10.0.0.0/30", "host:n1")
    assert b.allocate(3, "h1", {"pod": "a"}) == [ip("10.0.0.0"), ip("10.0.0.1"), ip("10.0.0.2")]
    assert (b.in_use, b.free) == (3, 1)
    assert b.allocate(5, "h2") == [ip("10.0.0.3")]
    assert b.allocate(1, "h3") == []
    assert b.handle_counts() == {"h1": 3, "h2": 1}
    assert len(b.attributes) == 2  # one entry per distinct (handle, secondary)


def test_release_goes_to_the_back_and_reports_handles():
    b = AllocationBlock.new("10.0.0.0/29", None)
    b.allocate(2, "h1")
    b.allocate(1, "h2")
    missed, per_handle = b.release([ip("10.0.0.0"), ip("10.0.0.7")])
    assert missed == [ip("10.0.0.7")]
    assert per_handle == {"h1": 1}
    assert b.unallocated[-1] == 0  # reused last
    assert b.allocate(1, "h3") == [ip("10.0.0.3")]


def test_release_by_handle_compacts_attributes():
    b = AllocationBlock.new("10.0.0.0/29", None)
    b.allocate(2, "h1")
    b.allocate(2, "h2", {"pod": "x"})
    assert b.release_handle("h1") == [ip("10.0.0.0"), ip("10.0.0.1")]
    assert [a.handle_id for a in b.attributes] == ["h2"]
    assert b.allocations[2:4] == [0, 0]
    assert b.release_handle("h1") == []
    b.release_handle("h2")
    assert b.is_empty() and b.attributes == []


def test_assign_specific_address_and_in_use():
    b = AllocationBlock.new("10.0.0.0/30", None)
    b.assign(ip("10.0.0.2"), "h1", None)
    assert 2 not in b.unallocated
    with pytest.raises(AddressInUse, match="handle=h1"):
        b.assign(ip("10.0.0.2"), "h2", None)
    assert b.allocate(4, "h2") == [ip("10.0.0.0"), ip("10.0.0.1"), ip("10.0.0.3")]


def test_sequence_number_moves_on_every_change():
    b = AllocationBlock.new("10.0.0.0/30", None)
    b.allocate(1, "h")
    b.release([ip("10.0.0.0")])
    assert b.sequence_number == 2
    b.release([ip("10.0.0.0")])  # nothing to do
    assert b.sequence_number == 2


def test_json_roundtrip_uses_shared_field_names():
    b = AllocationBlock.new("10.65.0.0/26", host_affinity("node-a"), strict_affinity=True)
    b.allocate(2, "k8s-pod-network.abc", {"namespace": "default", "pod": "p"})
    d = json.loads(b.to_json())
    assert set(d) == {
        "cidr",
        "affinity",
        "strictAffinity",
        "allocations",
        "unallocated",
        "attributes",
        "sequenceNumber",
    }
    assert d["cidr"] == "10.65.0.0/26" and d["affinity"] == "host:node-a"
    assert d["attributes"] == [
        {"handleID": "k8s-pod-network.abc", "secondary": {"namespace": "default", "pod": "p"}}
    ]
    assert d["allocations"][:3] == [0, 0, None]
    assert AllocationBlock.from_json(b.to_json()) == b


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("cidr"), "cidr"),
        (lambda d: d.update(allocations=[None]), "allocations"),
        (lambda d: d["allocations"].__setitem__(5, 9), r"allocations\[5\]"),
        (lambda d: d.update(unallocated=[]), "unallocated"),
        (lambda d: d.update(affinity=3), "affinity"),
    ],
)
def test_decode_errors_name_the_field(mutate, field):
    d = json.loads(AllocationBlock.new("10.0.0.0/29", None).to_json())
    mutate(d)
    with pytest.raises(ValueError, match=field):
        AllocationBlock.from_json(json.dumps(d))


def test_affinity_strings():
    assert host_affinity("n1") == "host:n1"
    assert affinity_node("host:n1") == "n1"
    assert affinity_node(None) is None
    assert affinity_node("virtual:x") is None
