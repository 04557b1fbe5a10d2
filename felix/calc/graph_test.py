"""State-sequence tests: the same datastore states applied in different orders must
leave a consumer of the stream holding the same dataplane state (Calico's calc-graph
test style), and the stream must obey its contract on every path."""

from __future__ import annotations

import itertools

import pytest

from felix.calc import messages
from felix.calc.testing import (
    State,
    bgp_config,
    bgp_peer,
    drive,
    felix_config,
    node,
    pool,
    state,
    wep,
)
from proto import calc_pb2

HOST = "node-a"
R = messages.ROUTE

NODE_A = node(
    "node-a", "10.0.1.5/24", ipv6="fd00:1::5/64", labels={"rack": "r1"},
    vxlan=("10.65.0.1", "66:00:00:00:00:0a"),
)  # fmt: skip
NODE_B = node("node-b", "10.0.1.6/24", vxlan=("10.65.0.65", "66:00:00:00:00:0b"))
NODE_C = node("node-c", "10.0.2.7/24", asn=65010, vxlan=("10.65.0.129", "66:00:00:00:00:0c"))
NODE_C_MOVED = node("node-c", "10.0.1.7/24", asn=65010, vxlan=("10.65.0.129", "66:00:00:00:00:0c"))
NODE_RR = node("node-rr", "10.0.2.9/24", rr="1.0.0.1", labels={"route-reflector": "true"})

POOLS = (
    pool("vxlan-cs", "10.65.0.0/16", vxlan="CrossSubnet", nat_outgoing=True),
    pool("vxlan-always", "10.66.0.0/16", vxlan="Always"),
    pool("ipip-cs", "10.67.0.0/16", ipip="CrossSubnet"),
    pool("no-export", "10.68.0.0/16", disable_bgp_export=True),
    pool("v6", "fd00:10::/64"),
)
BLOCKS = (
    ("10.65.0.0/26", "node-a"),
    ("10.65.0.64/26", "node-b"),
    ("10.65.0.128/26", "node-c"),
    ("10.66.0.0/26", "node-c"),
    ("10.67.0.0/26", "node-c"),
    ("10.67.0.64/26", "node-b"),
    ("10.68.0.0/26", "node-a"),
    ("10.65.1.0/26", None),
    ("fd00:10::/122", "node-a"),
)
WEPS = (
    wep("default", "pod1", "node-a", "10.65.0.2/32", "fd00:10::2/128"),
    wep("default", "pod2", "node-a", "10.65.0.70/32"),  # borrowed from node-b's block
    wep("default", "pod3", "node-c", "10.65.0.3/32"),  # borrowed from node-a's block
    wep("default", "pod4", "node-b", "10.65.0.66/32"),  # in node-b's own block
    wep("kube-system", "dns", "node-b", "10.65.1.7/32"),  # in an unaffine block
)
BGP = (
    bgp_config(as_number=64600),
    bgp_peer("tor", peer_ip="10.0.1.1", as_number=65000),
    bgp_peer("rack1", node_selector="rack == 'r1'", peer_ip="10.0.1.2:1179", as_number=65001),
    bgp_peer("rack2", node_selector="rack == 'r2'", peer_ip="10.0.1.3", as_number=65002),
    bgp_peer("to-rr", peer_selector="has(route-reflector)"),
)
FELIX = (
    felix_config("default", vxlan_vni=4097),
    felix_config("node.node-a", log_severity_screen="Debug"),
    felix_config("node.node-b", log_severity_screen="Warning"),
)

S_NODES = state(NODE_A, NODE_B, NODE_C, NODE_RR, *POOLS)
S_BLOCKS = {**S_NODES, **state(*BLOCKS)}
S_WEPS = {**S_BLOCKS, **state(*WEPS)}
S_FULL = {**S_WEPS, **state(*BGP, *FELIX)}
S_CHANGED = {
    **S_FULL,
    **state(
        NODE_C_MOVED, ("10.65.0.128/26", "node-b"), bgp_config(node_to_node_mesh_enabled=False)
    ),
}
del S_CHANGED[("WorkloadEndpoint", "default", WEPS[1].name)]
S_REMOVED = dict(S_CHANGED)
for gone in (NODE_B, POOLS[2], BGP[1]):
    del S_REMOVED[(type(gone).KIND, "", gone.name)]
S_LOCAL_ONLY = state(NODE_A, POOLS[0], ("10.65.0.0/26", "node-a"))

SEQUENCE: list[State] = [
    {},
    S_NODES,
    S_BLOCKS,
    S_WEPS,
    S_FULL,
    S_CHANGED,
    S_REMOVED,
    S_LOCAL_ONLY,
]


def final(st: State) -> dict:
    """What a consumer holds when it gets only the final state."""
    return drive(HOST, [st]).folded()


def comparable(folded: dict, st: State) -> dict:
    """BGPConfig has no Remove: once this node's Node is gone the consumer keeps the last
    one, which a fresh graph never sent. Leave it out of the comparison then."""
    if ("Node", "", HOST) not in st:
        folded = {k: v for k, v in folded.items() if k[0] != messages.BGP_CONFIG}
    return folded


def _orders() -> dict[str, list[State]]:
    half = len(SEQUENCE) // 2
    return {
        "forward": SEQUENCE,
        "reversed": SEQUENCE[::-1],
        "second-half-first": SEQUENCE[half:] + SEQUENCE[:half],
        "evens-then-odds": SEQUENCE[::2] + SEQUENCE[1::2],
        "there-and-back": SEQUENCE + SEQUENCE[-2::-1],
    }


@pytest.mark.parametrize("in_sync_at", [0, 3, None], ids=["sync-first", "sync-mid", "sync-last"])
@pytest.mark.parametrize("order", list(_orders()))
def test_any_order_of_states_converges_to_the_final_states_dataplane(order, in_sync_at):
    states = _orders()[order]
    run = drive(HOST, states, in_sync_at)
    assert comparable(run.folded(), states[-1]) == final(states[-1])


@pytest.mark.parametrize("i,j", list(itertools.product(range(len(SEQUENCE)), repeat=2)))
def test_every_pair_of_states_converges(i, j):
    run = drive(HOST, [SEQUENCE[i], SEQUENCE[j]], 1)
    assert comparable(run.folded(), SEQUENCE[j]) == final(SEQUENCE[j])


def test_squashed_full_state_gives_the_expected_routes():
    got = final(S_FULL)
    routes = {k[1]: v for k, v in got.items() if k[0] == R}
    # Own blocks: advertised unless the pool says no.
    assert routes["10.65.0.0/26"].type == calc_pb2.LOCAL_BLOCK
    assert routes["10.65.0.0/26"].advertise
    assert routes["10.65.0.0/26"].nat_outgoing
    assert routes["10.68.0.0/26"].type == calc_pb2.LOCAL_BLOCK
    assert not routes["10.68.0.0/26"].advertise
    assert routes["fd00:10::/122"].type == calc_pb2.LOCAL_BLOCK
    # Remote blocks, encapsulation per pool mode and subnet.
    b = routes["10.65.0.64/26"]
    assert (b.type, b.dst_node, b.dst_node_ip, b.encap, b.same_subnet) == (
        calc_pb2.REMOTE_BLOCK, "node-b", "10.0.1.6", calc_pb2.ENCAP_TYPE_NONE, True,
    )  # fmt: skip
    assert routes["10.65.0.128/26"].encap == calc_pb2.ENCAP_TYPE_VXLAN  # other subnet
    assert routes["10.66.0.0/26"].encap == calc_pb2.ENCAP_TYPE_VXLAN  # Always
    assert routes["10.67.0.0/26"].encap == calc_pb2.ENCAP_TYPE_IPIP  # CrossSubnet, off-subnet
    assert routes["10.67.0.64/26"].encap == calc_pb2.ENCAP_TYPE_NONE  # CrossSubnet, on-subnet
    assert "10.65.1.0/26" not in routes  # no affinity: nobody to route to
    # Workloads.
    pod1 = routes["10.65.0.2/32"]
    assert (pod1.type, pod1.workload_interface, pod1.borrowed, pod1.advertise) == (
        calc_pb2.LOCAL_WORKLOAD, "calipod1", False, False,
    )  # fmt: skip
    assert routes["fd00:10::2/128"].type == calc_pb2.LOCAL_WORKLOAD
    pod2 = routes["10.65.0.70/32"]  # ours, borrowed: we advertise the /32
    assert (pod2.type, pod2.borrowed, pod2.advertise) == (calc_pb2.LOCAL_WORKLOAD, True, True)
    pod3 = routes["10.65.0.3/32"]  # inside our block, living on node-c
    assert (pod3.type, pod3.dst_node, pod3.borrowed, pod3.encap) == (
        calc_pb2.REMOTE_WORKLOAD, "node-c", True, calc_pb2.ENCAP_TYPE_VXLAN,
    )  # fmt: skip
    assert "10.65.0.66/32" not in routes  # covered by node-b's block route
    dns = routes["10.65.1.7/32"]
    assert (dns.type, dns.dst_node, dns.borrowed) == (calc_pb2.REMOTE_WORKLOAD, "node-b", False)
    # Local endpoints only.
    weps = {k[1] for k in got if k[0] == messages.WEP}
    assert weps == {("k8s", "default/pod1", "eth0"), ("k8s", "default/pod2", "eth0")}
    # Hosts and VTEPs for every node, including ourselves.
    assert {k[1] for k in got if k[0] == messages.HOST} == {"node-a", "node-b", "node-c", "node-rr"}
    assert {k[1] for k in got if k[0] == messages.VTEP} == {"node-a", "node-b", "node-c"}
    assert got[(messages.VTEP, "node-c")].parent_device_ip == "10.0.2.7"


def test_squashed_full_state_gives_the_expected_config_and_bgp():
    got = final(S_FULL)
    cfg = got[(messages.CONFIG, messages.SINGLETON)].config
    assert cfg["vxlan_vni"] == "4097"  # global
    assert cfg["log_severity_screen"] == "Debug"  # node-specific over global
    assert cfg["vxlan_enabled"] == "true"  # unset: some pool uses VXLAN
    assert cfg["ipip_enabled"] == "true"
    assert cfg["device_route_protocol"] == "80"  # default
    bgpc = got[(messages.BGP_CONFIG, messages.SINGLETON)]
    assert (bgpc.as_number, bgpc.router_id, bgpc.node_to_node_mesh) == (64600, "10.0.1.5", True)
    peers = {k[1]: v for k, v in got.items() if k[0] == messages.BGP_PEER}
    assert set(peers) == {"10.0.1.6", "10.0.2.7", "10.0.1.1", "10.0.1.2:1179", "10.0.2.9"}
    assert peers["10.0.1.6"].type == calc_pb2.MESH
    assert peers["10.0.2.7"].as_number == 65010  # the peer node's own AS
    assert peers["10.0.1.1"].type == calc_pb2.GLOBAL
    assert (peers["10.0.1.2:1179"].type, peers["10.0.1.2:1179"].port) == (calc_pb2.NODE, 1179)
    rr = peers["10.0.2.9"]
    assert (rr.source, rr.peer_node, rr.route_reflector_client) == (
        "BGPPeer(to-rr)",
        "node-rr",
        False,
    )


def test_changes_move_routes_flip_encap_and_drop_the_mesh():
    got = final(S_CHANGED)
    routes = {k[1]: v for k, v in got.items() if k[0] == R}
    moved = routes["10.65.0.128/26"]  # block re-affined to node-b
    assert (moved.dst_node, moved.encap) == ("node-b", calc_pb2.ENCAP_TYPE_NONE)
    assert routes["10.66.0.0/26"].encap == calc_pb2.ENCAP_TYPE_VXLAN  # Always stays
    assert routes["10.67.0.0/26"].encap == calc_pb2.ENCAP_TYPE_NONE  # node-c now on-subnet
    assert "10.65.0.70/32" not in routes
    peers = {k[1] for k in got if k[0] == messages.BGP_PEER}
    assert peers == {"10.0.1.1", "10.0.1.2:1179", "10.0.2.9"}  # no mesh


def test_going_to_nothing_removes_everything_removable():
    run = drive(HOST, [S_FULL, {}], 1)
    left = {k[0] for k in run.folded()}
    # Config and BGP config have no Remove: the last value stays with the consumer.
    assert left == {messages.CONFIG, messages.BGP_CONFIG}


def test_this_nodes_ipip_tunnel_address_reaches_the_config_and_follows_the_node():
    """The IPIP manager puts ``IpInIpTunnelAddr`` on tunl0; only this node's counts."""
    with_addr = node("node-a", "10.0.1.5/24")
    with_addr.spec.ipv4_ipip_tunnel_addr = "10.67.0.1"
    other = node("node-b", "10.0.1.6/24")
    other.spec.ipv4_ipip_tunnel_addr = "10.67.0.65"
    run = drive(HOST, [state(NODE_A, other), state(with_addr, other)])
    cfg = run.folded()[(messages.CONFIG, messages.SINGLETON)].config
    assert cfg["IpInIpTunnelAddr"] == "10.67.0.1"
    assert (
        "IpInIpTunnelAddr"
        not in final(state(NODE_A, other))[(messages.CONFIG, messages.SINGLETON)].config
    )
