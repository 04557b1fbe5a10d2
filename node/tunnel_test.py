"""The node's VXLAN tunnel address against a real etcd: assigned, kept, adopted, released."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from datastore import keys
from datastore.api import NotFound
from datastore.etcd import EtcdStore
from datastore.etcd_fixture import EtcdServer
from datastore.resources import ResourceStore
from ipam import report
from ipam.client import AutoAssignRequest, IPAMClient
from ipam.errors import PoolExhausted
from model.resources import IPPool, IPPoolSpec, Node, ObjectMeta
from node.registration import register_node
from node.tunnel import handle_for, reconcile_vxlan_tunnel, tunnel_mac, valid_mac, vxlan_pools

pytest_plugins = ["datastore.etcd_fixture"]

PODS = "10.70.0.0/16"  # a plain pool, never used for tunnels
TUNNELS = "10.80.0.0/24"


def pool(name: str, cidr: str, vxlan: str = "Never", **kw: object) -> IPPool:
    spec = IPPoolSpec(cidr=cidr, vxlan_mode=vxlan, **kw)  # type: ignore[arg-type]
    return IPPool(metadata=ObjectMeta(name=name), spec=spec)


@pytest.fixture()
def store(etcd_server: EtcdServer) -> Iterator[ResourceStore]:
    """A store on an emptied Tabby tree (the etcd server is shared by the module)."""
    kv = EtcdStore([etcd_server.endpoint])
    for prefix in (keys.RESOURCES, keys.IPAM):
        for item in kv.list(prefix)[0]:
            kv.delete(item.key)
    try:
        yield ResourceStore(kv)
    finally:
        kv.close()


def held(store: ResourceStore, node: str) -> list[str]:
    return IPAMClient(store.kv).ips_by_handle(handle_for(node))


def test_pool_choice_and_mac_are_pure_and_stable():
    pools = [
        pool("plain", PODS),
        pool("cross", "10.81.0.0/24", "CrossSubnet"),
        pool("always", TUNNELS, "Always"),
        pool("off", "10.82.0.0/24", "Always", disabled=True),
        pool("v6", "fd00:80::/64", "Never"),
        pool("rack2", "10.83.0.0/24", "Always", node_selector="rack == 'r2'"),
    ]
    assert [p.metadata.name for p in vxlan_pools(pools, {"rack": "r1"})] == ["always", "cross"]
    assert "rack2" in [p.metadata.name for p in vxlan_pools(pools, {"rack": "r2"})]
    mac = tunnel_mac("node-a")
    assert mac == tunnel_mac("node-a") != tunnel_mac("node-b")
    first = int(mac[:2], 16)
    assert first & 0x02 and not first & 0x01, "locally administered unicast"
    assert valid_mac(mac) and not valid_mac("") and not valid_mac("01:00:5e:00:00:01")


def test_no_vxlan_pool_means_no_tunnel_address(store: ResourceStore):
    store.create(pool("plain", PODS))
    register_node(store, "tn-a", ipv4="172.16.0.5/24")
    state = reconcile_vxlan_tunnel(store, IPAMClient(store.kv), "tn-a")
    assert (state.address, state.mac) == ("", "")
    node = store.get(Node, "tn-a")
    assert node.spec.ipv4_vxlan_tunnel_addr == "" and node.spec.vxlan_tunnel_mac_addr == ""
    assert held(store, "tn-a") == []


def test_cross_subnet_pool_gives_the_node_an_address_and_mac_once(store: ResourceStore):
    store.create(pool("plain", PODS))
    store.create(pool("tunnels", TUNNELS, "CrossSubnet"))
    register_node(store, "tn-b", ipv4="172.16.0.6/24", as_number=64512)
    ipam = IPAMClient(store.kv)
    state = reconcile_vxlan_tunnel(store, ipam, "tn-b")
    assert ipaddress.ip_address(state.address) in ipaddress.ip_network(TUNNELS)
    node = store.get(Node, "tn-b")
    assert node.spec.ipv4_vxlan_tunnel_addr == state.address
    assert node.spec.vxlan_tunnel_mac_addr == tunnel_mac("tn-b") == state.mac
    assert node.spec.bgp.as_number == 64512, "registration fields are kept"
    assert held(store, "tn-b") == [state.address]
    rev = node.metadata.resource_version

    again = reconcile_vxlan_tunnel(store, ipam, "tn-b")  # a restart
    assert again == state
    assert store.get(Node, "tn-b").metadata.resource_version == rev, "no needless write"
    assert held(store, "tn-b") == [state.address]
    assert report.check(store.kv).ok, "the tunnel address belongs to its node, no leak"


def test_operator_set_mac_is_kept(store: ResourceStore):
    store.create(pool("tunnels", TUNNELS, "Always"))
    register_node(store, "tn-c", ipv4="172.16.0.7/24")
    node = store.get(Node, "tn-c")
    node.spec.vxlan_tunnel_mac_addr = "66:00:00:00:00:07"
    store.replace(node)
    state = reconcile_vxlan_tunnel(store, IPAMClient(store.kv), "tn-c")
    assert state.mac == "66:00:00:00:00:07"
    assert store.get(Node, "tn-c").spec.vxlan_tunnel_mac_addr == "66:00:00:00:00:07"


def test_crash_between_assign_and_node_write_adopts_the_held_address(store: ResourceStore):
    store.create(pool("tunnels", TUNNELS, "Always"))
    register_node(store, "tn-d", ipv4="172.16.0.8/24")
    ipam = IPAMClient(store.kv)
    # What a run that died after IPAM and before the Node write leaves behind.
    res = ipam.auto_assign(AutoAssignRequest(handle=handle_for("tn-d"), node="tn-d"))
    orphan = str(res.ipv4[0].ip)
    state = reconcile_vxlan_tunnel(store, ipam, "tn-d")
    assert state.address == orphan
    assert held(store, "tn-d") == [orphan]
    assert report.check(store.kv).ok


def test_address_released_behind_the_nodes_back_is_taken_back(store: ResourceStore):
    store.create(pool("tunnels", TUNNELS, "Always"))
    register_node(store, "tn-e", ipv4="172.16.0.9/24")
    ipam = IPAMClient(store.kv)
    first = reconcile_vxlan_tunnel(store, ipam, "tn-e").address
    ipam.release_by_handle(handle_for("tn-e"))  # e.g. `tabbyctl ipam release`
    assert reconcile_vxlan_tunnel(store, ipam, "tn-e").address == first
    assert held(store, "tn-e") == [first]


def test_address_now_held_by_a_pod_is_replaced_and_the_pod_keeps_it(store: ResourceStore):
    store.create(pool("tunnels", TUNNELS, "Always"))
    register_node(store, "tn-f", ipv4="172.16.0.10/24")
    ipam = IPAMClient(store.kv)
    first = reconcile_vxlan_tunnel(store, ipam, "tn-f").address
    ipam.release_by_handle(handle_for("tn-f"))
    ipam.assign_ip(first, "k8s-pod-network.abc", "tn-f")
    second = reconcile_vxlan_tunnel(store, ipam, "tn-f").address
    assert second != first
    assert store.get(Node, "tn-f").spec.ipv4_vxlan_tunnel_addr == second
    assert ipam.ips_by_handle("k8s-pod-network.abc") == [first]
    assert held(store, "tn-f") == [second]


def test_pool_moved_gives_a_new_address_and_releases_the_old(store: ResourceStore):
    store.create(pool("old", TUNNELS, "Always"))
    register_node(store, "tn-g", ipv4="172.16.0.11/24")
    ipam = IPAMClient(store.kv)
    old = reconcile_vxlan_tunnel(store, ipam, "tn-g").address
    p = store.get(IPPool, "old")
    p.spec.disabled = True
    store.replace(p)
    store.create(pool("new", "10.81.0.0/24", "CrossSubnet"))
    state = reconcile_vxlan_tunnel(store, ipam, "tn-g")
    assert ipaddress.ip_address(state.address) in ipaddress.ip_network("10.81.0.0/24")
    assert state.released == (old,)
    assert held(store, "tn-g") == [state.address]
    assert store.get(Node, "tn-g").spec.vxlan_tunnel_mac_addr == tunnel_mac("tn-g")


def test_no_vxlan_pool_left_clears_the_node_and_releases(store: ResourceStore):
    store.create(pool("tunnels", TUNNELS, "CrossSubnet"))
    register_node(store, "tn-h", ipv4="172.16.0.12/24")
    ipam = IPAMClient(store.kv)
    addr = reconcile_vxlan_tunnel(store, ipam, "tn-h").address
    p = store.get(IPPool, "tunnels")
    p.spec.vxlan_mode = "Never"
    store.replace(p)
    state = reconcile_vxlan_tunnel(store, ipam, "tn-h")
    assert state.address == "" and state.released == (addr,)
    spec = store.get(Node, "tn-h").spec
    assert spec.ipv4_vxlan_tunnel_addr == "" and spec.vxlan_tunnel_mac_addr == ""
    assert held(store, "tn-h") == []
    assert reconcile_vxlan_tunnel(store, ipam, "tn-h").released == ()


def test_unregistered_node_is_an_error_and_assigns_nothing(store: ResourceStore):
    store.create(pool("tunnels", TUNNELS, "Always"))
    with pytest.raises(NotFound, match="tn-x"):
        reconcile_vxlan_tunnel(store, IPAMClient(store.kv), "tn-x")
    assert held(store, "tn-x") == []


def test_exhausted_pool_is_a_clear_error_and_the_node_is_unchanged(store: ResourceStore):
    store.create(pool("tiny", "10.84.0.0/30", "Always", block_size=30))
    register_node(store, "tn-i", ipv4="172.16.0.13/24")
    ipam = IPAMClient(store.kv)
    for i in range(4):
        ipam.assign_ip(f"10.84.0.{i}", f"k8s-pod-network.p{i}", "tn-i")
    with pytest.raises(PoolExhausted, match="tiny"):
        reconcile_vxlan_tunnel(store, ipam, "tn-i")
    spec = store.get(Node, "tn-i").spec
    assert spec.ipv4_vxlan_tunnel_addr == "" and spec.vxlan_tunnel_mac_addr == ""
    assert held(store, "tn-i") == []
