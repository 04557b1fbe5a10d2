"""BGP speaker settings and peer resolution: mesh, node/global peers, selectors, RRs."""

from __future__ import annotations

from felix.calc import bgp
from felix.calc.state import ClusterState
from felix.calc.testing import bgp_config, bgp_peer, node
from proto import calc_pb2


def cluster(*nodes, configs=(), peers=()) -> ClusterState:
    st = ClusterState()
    for n in nodes:
        st.nodes[n.name] = n
    for c in configs:
        st.bgp_configs[c.name] = c
    for p in peers:
        st.bgp_peers[p.name] = p
    return st


A = node("a", "10.0.0.1/24", labels={"zone": "z1"})
B = node("b", "10.0.0.2/24", labels={"zone": "z2"})
C = node("c", "10.0.0.3/24", asn=65003, labels={"zone": "z1"})
RR1 = node("rr1", "10.0.0.10/24", rr="1.1.1.1", labels={"rr": "yes"})
RR2 = node("rr2", "10.0.0.11/24", rr="1.1.1.1", labels={"rr": "yes"})


def test_as_number_prefers_node_then_cluster_default_then_64512():
    assert bgp.bgp_config(cluster(A), "a").as_number == 64512
    assert bgp.bgp_config(cluster(A, configs=[bgp_config(as_number=65100)]), "a").as_number == 65100
    assert bgp.bgp_config(cluster(C, configs=[bgp_config(as_number=65100)]), "c").as_number == 65003


def test_bgp_config_carries_router_id_port_and_mesh_flag():
    st = cluster(RR1, configs=[bgp_config(listen_port=1179, node_to_node_mesh_enabled=False)])
    cfg = bgp.bgp_config(st, "rr1")
    assert (cfg.router_id, cfg.listen_port, cfg.node_to_node_mesh, cfg.rr_cluster_id) == (
        "10.0.0.10", 1179, False, "1.1.1.1",
    )  # fmt: skip
    assert bgp.bgp_config(cluster(B), "a") is None  # our Node is not known yet


def test_full_mesh_is_every_other_node_with_its_own_as():
    peers = bgp.bgp_peers(cluster(A, B, C, node("noaddr")), "a")
    assert set(peers) == {"10.0.0.2", "10.0.0.3"}
    assert all(p.type == calc_pb2.MESH and p.source == "mesh" for p in peers.values())
    assert peers["10.0.0.3"].as_number == 65003
    assert peers["10.0.0.2"].peer_node == "b"


def test_mesh_disabled_leaves_only_explicit_peers():
    st = cluster(A, B, configs=[bgp_config(node_to_node_mesh_enabled=False)])
    assert bgp.bgp_peers(st, "a") == {}


def test_explicit_peer_wins_over_the_mesh_for_the_same_ip():
    st = cluster(A, B, peers=[bgp_peer("to-b", peer_ip="10.0.0.2", as_number=64999, password="s")])
    p = bgp.bgp_peers(st, "a")["10.0.0.2"]
    assert (p.type, p.source, p.as_number, p.password) == (
        calc_pb2.GLOBAL, "BGPPeer(to-b)", 64999, "s",
    )  # fmt: skip


def test_node_and_node_selector_scope_peers_to_matching_nodes():
    st = cluster(
        A, B, C,
        configs=[bgp_config(node_to_node_mesh_enabled=False)],
        peers=[
            bgp_peer("only-b", node="b", peer_ip="192.0.2.1", as_number=65000),
            bgp_peer("zone1", node_selector="zone == 'z1'", peer_ip="192.0.2.2:1179",
                     as_number=65000, max_restart_time="2m"),
        ],
    )  # fmt: skip
    assert set(bgp.bgp_peers(st, "a")) == {"192.0.2.2:1179"}
    assert set(bgp.bgp_peers(st, "b")) == {"192.0.2.1"}
    p = bgp.bgp_peers(st, "c")["192.0.2.2:1179"]
    assert (p.type, p.peer_ip, p.port, p.max_restart_time) == (
        calc_pb2.NODE,
        "192.0.2.2",
        1179,
        120,
    )


def test_clients_peer_with_reflectors_and_reflectors_mark_them_clients():
    st = cluster(
        A, B, RR1, RR2,
        configs=[bgp_config(node_to_node_mesh_enabled=False)],
        peers=[bgp_peer("to-rr", peer_selector="has(rr)"),
               bgp_peer("rr-to-all", node_selector="has(rr)", peer_selector="all()")],
    )  # fmt: skip
    client = bgp.bgp_peers(st, "a")
    assert set(client) == {"10.0.0.10", "10.0.0.11"}
    assert not any(p.route_reflector_client for p in client.values())
    reflector = bgp.bgp_peers(st, "rr1")
    assert set(reflector) == {"10.0.0.1", "10.0.0.2", "10.0.0.11"}  # never itself
    assert reflector["10.0.0.1"].route_reflector_client
    assert reflector["10.0.0.2"].route_reflector_client
    # Same cluster id: a plain peer, not a client.
    assert not reflector["10.0.0.11"].route_reflector_client
    assert reflector["10.0.0.11"].peer_node == "rr2"


def test_a_node_picked_by_peer_selector_peers_back_with_the_nodes_the_peer_applies_to():
    # One BGPPeer for the clients only (Calico's usual RR setup): the reflectors must
    # still configure their end of every client session, as clients and not as peers.
    st = cluster(
        A, B, RR1, RR2,
        configs=[bgp_config(node_to_node_mesh_enabled=False)],
        peers=[bgp_peer("clients-to-rr", node_selector="!has(rr)", peer_selector="has(rr)")],
    )  # fmt: skip
    assert set(bgp.bgp_peers(st, "a")) == {"10.0.0.10", "10.0.0.11"}
    reflector = bgp.bgp_peers(st, "rr1")
    assert set(reflector) == {"10.0.0.1", "10.0.0.2"}  # not rr2: the peer does not apply to it
    assert all(p.route_reflector_client for p in reflector.values())
    assert reflector["10.0.0.1"].peer_node == "a"
    assert reflector["10.0.0.1"].type == calc_pb2.NODE


def test_reflectors_stand_outside_the_mesh():
    st = cluster(A, B, RR1)
    assert set(bgp.bgp_peers(st, "a")) == {"10.0.0.2"}
    assert bgp.bgp_peers(st, "rr1") == {}


def test_malformed_peer_is_skipped_and_the_rest_still_apply(caplog):
    st = cluster(A, peers=[bgp_peer("bad", peer_ip="10.0.0.300"),
                           bgp_peer("good", peer_ip="10.0.0.99", as_number=1)])  # fmt: skip
    assert set(bgp.bgp_peers(st, "a")) == {"10.0.0.99"}
    assert "bgppeer=bad field=peerIP" in caplog.text


def test_peer_with_a_negative_or_malformed_max_restart_time_is_skipped(caplog):
    st = cluster(A, peers=[
        bgp_peer("neg", peer_ip="10.0.0.97", as_number=1, max_restart_time="-5s"),
        bgp_peer("typo", peer_ip="10.0.0.98", as_number=1, max_restart_time="5 min"),
        bgp_peer("good", peer_ip="10.0.0.99", as_number=1, max_restart_time="2m"),
    ])  # fmt: skip
    peers = bgp.bgp_peers(st, "a")
    assert set(peers) == {"10.0.0.99"}
    assert peers["10.0.0.99"].max_restart_time == 120
    assert "bgppeer=neg" in caplog.text and "bgppeer=typo" in caplog.text


def test_peer_ip_forms():
    assert bgp.split_peer_ip("10.0.0.1") == ("10.0.0.1", 0)
    assert bgp.split_peer_ip("10.0.0.1:179") == ("10.0.0.1", 0)
    assert bgp.split_peer_ip("[fd00::1]:1179") == ("fd00::1", 1179)
    assert bgp.peer_id("fd00::1", 1179) == "[fd00::1]:1179"
    assert bgp.restart_seconds("1h30m") == 5400
    assert bgp.restart_seconds("") == 0
