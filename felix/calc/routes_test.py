"""CrossSubnet / Always / Never decisions and borrowed-IP routes, resolver by resolver."""

from __future__ import annotations

import ipaddress

import pytest

from felix.calc import routes
from felix.calc.state import Block, ClusterState
from felix.calc.testing import node, pool, wep
from proto import calc_pb2

VXLAN, IPIP, NONE = calc_pb2.ENCAP_TYPE_VXLAN, calc_pb2.ENCAP_TYPE_IPIP, calc_pb2.ENCAP_TYPE_NONE


def cluster(local_addr: str, remote_addr: str, vxlan: str = "Never", ipip: str = "Never"):
    st = ClusterState()
    st.nodes["a"] = node("a", local_addr)
    st.nodes["b"] = node("b", remote_addr)
    st.pools["p"] = pool("p", "10.65.0.0/16", vxlan=vxlan, ipip=ipip)
    st.set_block(Block("10.65.1.0/26", "b"), "10.65.1.0/26")
    return st


@pytest.mark.parametrize(
    "local,remote,vxlan,ipip,want",
    [
        ("10.0.1.5/24", "10.0.1.6/24", "CrossSubnet", "Never", NONE),
        ("10.0.1.5/24", "10.0.2.6/24", "CrossSubnet", "Never", VXLAN),
        # The local prefix length decides: a /16 holds 10.0.2.6, so it is on-subnet.
        ("10.0.1.5/16", "10.0.2.6/24", "CrossSubnet", "Never", NONE),
        ("10.0.1.5/24", "10.0.1.6/24", "Always", "Never", VXLAN),
        ("10.0.1.5/24", "10.0.2.6/24", "Never", "Never", NONE),
        ("10.0.1.5/24", "10.0.2.6/24", "Never", "CrossSubnet", IPIP),
        ("10.0.1.5/24", "10.0.1.6/24", "Never", "CrossSubnet", NONE),
        ("10.0.1.5/24", "10.0.1.6/24", "Never", "Always", IPIP),
        # A bare address is a /32: nothing else is on its subnet.
        ("10.0.1.5", "10.0.1.6/24", "CrossSubnet", "Never", VXLAN),
    ],
)
def test_remote_block_encapsulation_follows_pool_mode_and_subnet(local, remote, vxlan, ipip, want):
    st = cluster(local, remote, vxlan, ipip)
    route = routes.block_routes(st, "a", "10.65.1.0/26")["10.65.1.0/26"]
    assert route.type == calc_pb2.REMOTE_BLOCK
    assert (route.dst_node, route.dst_node_ip) == ("b", remote.split("/")[0])
    assert route.encap == want
    local_net = ipaddress.ip_interface(local).network
    assert route.same_subnet == (ipaddress.ip_address(route.dst_node_ip) in local_net)


def test_cross_subnet_without_the_local_address_encapsulates():
    st = cluster("10.0.1.5/24", "10.0.1.6/24", vxlan="CrossSubnet")
    st.nodes["a"] = node("a")  # no BGP address yet: cannot prove same subnet
    route = routes.block_routes(st, "a", "10.65.1.0/26")["10.65.1.0/26"]
    assert (route.encap, route.same_subnet) == (VXLAN, False)


def test_block_of_an_unknown_node_has_no_next_hop_yet():
    st = cluster("10.0.1.5/24", "10.0.1.6/24")
    del st.nodes["b"]
    route = routes.block_routes(st, "a", "10.65.1.0/26")["10.65.1.0/26"]
    assert (route.dst_node, route.dst_node_ip) == ("b", "")


def test_block_owner_keeps_its_block_and_routes_the_borrowed_ip_to_the_borrower():
    st = cluster("10.0.1.5/24", "10.0.2.6/24", vxlan="CrossSubnet")
    st.set_block(Block("10.65.0.0/26", "a"), "10.65.0.0/26")
    borrowed = wep("ns", "p", "b", "10.65.0.9/32")
    st.set_wep(("ns", borrowed.name), borrowed)
    assert routes.block_routes(st, "a", "10.65.0.0/26")["10.65.0.0/26"].type == calc_pb2.LOCAL_BLOCK
    r = routes.wep_routes(st, "a", borrowed)["10.65.0.9/32"]
    assert (r.type, r.dst_node, r.borrowed, r.encap, r.advertise) == (
        calc_pb2.REMOTE_WORKLOAD, "b", True, VXLAN, False,
    )  # fmt: skip
    # On the borrower itself it is a local workload it must advertise.
    local = routes.wep_routes(st, "b", borrowed)["10.65.0.9/32"]
    assert (local.type, local.borrowed, local.advertise) == (calc_pb2.LOCAL_WORKLOAD, True, True)


def test_borrowed_ip_in_a_no_export_pool_is_not_advertised():
    st = cluster("10.0.1.5/24", "10.0.2.6/24")
    st.pools["p"].spec.disable_bgp_export = True
    w = wep("ns", "p", "a", "10.65.1.9/32")
    st.set_wep(("ns", w.name), w)
    r = routes.wep_routes(st, "a", w)["10.65.1.9/32"]
    assert (r.borrowed, r.advertise) == (True, False)
