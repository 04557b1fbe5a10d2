"""Cluster mode's pure translation: Felix's stream messages -> the speaker's configuration."""

from __future__ import annotations

import ipaddress

import pytest

from bgp.daemon.cluster import Settings, StreamView, daemon_config, needs_restart
from bgp.daemon.config import ConfigError
from bgp.daemon.felix_client import learned_message
from bgp.daemon.speaker import RouteUpdate
from proto import calc_pb2

BGP = calc_pb2.BGPConfigUpdate(
    as_number=64512,
    router_id="10.0.0.11",
    node_ipv4="10.0.0.11",
    listen_port=1179,
    node_to_node_mesh=True,
)


def msg(**kw) -> calc_pb2.ToDataplane:
    return calc_pb2.ToDataplane(**kw)


def mesh_peer(ip: str, node: str) -> calc_pb2.ToDataplane:
    return msg(
        bgp_peer_update=calc_pb2.BGPPeerUpdate(
            id=ip, peer_ip=ip, as_number=64512, type=calc_pb2.MESH, peer_node=node, source="mesh"
        )
    )


def block(dst: str, advertise: bool = True) -> calc_pb2.ToDataplane:
    return msg(
        route_update=calc_pb2.RouteUpdate(
            dst=dst, type=calc_pb2.LOCAL_BLOCK, dst_node="n1", advertise=advertise
        )
    )


def view(*messages: calc_pb2.ToDataplane) -> StreamView:
    v = StreamView()
    for m in messages:
        v.apply(m)
    return v


def test_no_bgp_config_means_no_speaker_yet():
    assert daemon_config(view(block("10.244.1.0/26")), Settings()) is None


def test_config_mesh_peers_and_own_blocks_become_speaker_config():
    v = view(
        msg(bgp_config_update=BGP),
        mesh_peer("10.0.0.12", "n2"),
        block("10.244.1.0/26"),
        msg(
            route_update=calc_pb2.RouteUpdate(
                dst="10.244.9.7/32", type=calc_pb2.LOCAL_WORKLOAD, borrowed=True, advertise=True
            )
        ),
        # A remote block is not ours to advertise.
        msg(route_update=calc_pb2.RouteUpdate(dst="10.244.2.0/26", type=calc_pb2.REMOTE_BLOCK)),
    )
    cfg = daemon_config(v, Settings(admin_socket="/run/x.sock"))
    assert cfg is not None
    assert cfg.local_as == 64512
    assert str(cfg.router_id) == "10.0.0.11"
    assert cfg.listen_port == 1179
    assert cfg.admin_socket == "/run/x.sock"
    assert cfg.graceful_restart.enabled
    # Next hop of originated routes: the node's own address.
    assert str(cfg.next_hop_v4) == "10.0.0.11"
    assert [str(o.prefix) for o in cfg.originate] == ["10.244.1.0/26", "10.244.9.7/32"]
    (peer,) = cfg.peers
    assert str(peer.address) == "10.0.0.12"
    # A mesh peer is a node: it listens on the cluster's port too.
    assert (peer.as_number, peer.port, peer.kind) == (64512, 1179, "mesh")


def test_explicit_peer_fields_are_carried_and_port_defaults_to_179():
    v = view(
        msg(bgp_config_update=BGP),
        msg(
            bgp_peer_update=calc_pb2.BGPPeerUpdate(
                id="192.0.2.1",
                peer_ip="192.0.2.1",
                as_number=65001,
                type=calc_pb2.GLOBAL,
                password="s3cret",
                keep_original_next_hop=True,
            )
        ),
        msg(
            bgp_peer_update=calc_pb2.BGPPeerUpdate(
                id="10.0.0.13",
                peer_ip="10.0.0.13",
                as_number=64512,
                type=calc_pb2.NODE,
                peer_node="n3",
                route_reflector_client=True,
            )
        ),
        msg(
            bgp_peer_update=calc_pb2.BGPPeerUpdate(
                id="192.0.2.2:1790", peer_ip="192.0.2.2", as_number=65002, port=1790
            )
        ),
    )
    cfg = daemon_config(v, Settings())
    assert cfg is not None
    peers = {str(p.address): p for p in cfg.peers}
    gw = peers["192.0.2.1"]
    assert (gw.as_number, gw.port, gw.password, gw.keep_original_next_hop, gw.kind) == (
        65001,
        179,
        "s3cret",
        True,
        "global",
    )
    client = peers["10.0.0.13"]
    assert client.route_reflector_client and client.port == 1179 and client.kind == "node"
    assert peers["192.0.2.2"].port == 1790


def test_bgppeer_max_restart_time_becomes_that_peers_restart_time():
    v = view(
        msg(bgp_config_update=BGP),
        msg(bgp_peer_update=calc_pb2.BGPPeerUpdate(id="192.0.2.1", peer_ip="192.0.2.1",
                                                   as_number=65001, max_restart_time=30)),
        mesh_peer("10.0.0.12", "n2"),  # no maxRestartTime: the global default applies
    )  # fmt: skip
    cfg = daemon_config(v, Settings(graceful_restart_time=90))
    assert cfg is not None
    peers = {str(p.address): p for p in cfg.peers}
    assert peers["192.0.2.1"].restart_time == 30
    assert peers["10.0.0.12"].restart_time is None
    assert cfg.graceful_restart.restart_time == 90
    # Changing it is a per-peer change, not a speaker rebuild.
    v.apply(
        msg(
            bgp_peer_update=calc_pb2.BGPPeerUpdate(
                id="192.0.2.1", peer_ip="192.0.2.1", as_number=65001, max_restart_time=60
            )
        )
    )
    new = daemon_config(v, Settings(graceful_restart_time=90))
    assert new is not None and not needs_restart(cfg, new)
    assert {str(p.address): p for p in new.peers}["192.0.2.1"].restart_time == 60


def test_removals_and_advertise_false_withdraw():
    v = view(msg(bgp_config_update=BGP), mesh_peer("10.0.0.12", "n2"), block("10.244.1.0/26"))
    assert v.apply(msg(bgp_peer_remove=calc_pb2.BGPPeerRemove(id="10.0.0.12")))
    assert v.apply(block("10.244.1.0/26", advertise=False))
    cfg = daemon_config(v, Settings())
    assert cfg is not None and cfg.peers == () and cfg.originate == ()
    v.apply(block("10.244.1.64/26"))
    assert v.apply(msg(route_remove=calc_pb2.RouteRemove(dst="10.244.1.64/26")))
    assert not v.advertise


def test_repeated_identical_update_is_not_a_change():
    v = view(msg(bgp_config_update=BGP), mesh_peer("10.0.0.12", "n2"))
    assert not v.apply(mesh_peer("10.0.0.12", "n2"))
    assert not v.apply(msg(bgp_config_update=BGP))
    assert not v.apply(msg(workload_endpoint_remove=calc_pb2.WorkloadEndpointRemove()))


def test_reflector_gets_cluster_id_and_a_changed_as_needs_a_restart():
    rr = calc_pb2.BGPConfigUpdate()
    rr.CopyFrom(BGP)
    rr.rr_cluster_id = "224.0.0.1"
    a = daemon_config(view(msg(bgp_config_update=BGP)), Settings())
    b = daemon_config(view(msg(bgp_config_update=rr)), Settings())
    assert a is not None and b is not None
    assert b.cluster_id == ipaddress.IPv4Address("224.0.0.1")
    assert needs_restart(a, b)
    # Peers and originated routes change live.
    c = daemon_config(view(msg(bgp_config_update=BGP), mesh_peer("10.0.0.12", "n2")), Settings())
    assert c is not None and not needs_restart(a, c)
    other_as = calc_pb2.BGPConfigUpdate()
    other_as.CopyFrom(BGP)
    other_as.as_number = 65000
    d = daemon_config(view(msg(bgp_config_update=other_as)), Settings())
    assert d is not None and needs_restart(a, d)


def test_bad_values_name_the_field():
    bad = calc_pb2.BGPConfigUpdate()
    bad.CopyFrom(BGP)
    bad.router_id = ""
    with pytest.raises(ConfigError, match=r"BGPConfigUpdate\.router_id"):
        daemon_config(view(msg(bgp_config_update=bad)), Settings())
    bad.router_id = "10.0.0.11"
    bad.rr_cluster_id = "not-an-ip"
    with pytest.raises(ConfigError, match=r"BGPConfigUpdate\.rr_cluster_id"):
        daemon_config(view(msg(bgp_config_update=bad)), Settings())
    # A peer with a bad address is dropped (logged), the rest still apply.
    v = view(
        msg(bgp_config_update=BGP),
        msg(bgp_peer_update=calc_pb2.BGPPeerUpdate(id="x", peer_ip="nonsense", as_number=1)),
        mesh_peer("10.0.0.12", "n2"),
    )
    cfg = daemon_config(v, Settings())
    assert cfg is not None and [str(p.address) for p in cfg.peers] == ["10.0.0.12"]


def test_peer_on_own_address_or_duplicate_address_is_skipped():
    v = view(
        msg(bgp_config_update=BGP),
        mesh_peer("10.0.0.11", "self"),
        mesh_peer("10.0.0.12", "n2"),
        msg(
            bgp_peer_update=calc_pb2.BGPPeerUpdate(
                id="10.0.0.12:1790", peer_ip="10.0.0.12", as_number=64512, port=1790
            )
        ),
    )
    cfg = daemon_config(v, Settings())
    assert cfg is not None
    assert [(str(p.address), p.port) for p in cfg.peers] == [("10.0.0.12", 1179)]


def test_listen_address_node_binds_the_node_address():
    cfg = daemon_config(view(msg(bgp_config_update=BGP)), Settings(listen_address="node"))
    assert cfg is not None and cfg.listen_address == "10.0.0.11"


def test_learned_message_withdraws_when_no_usable_next_hop():
    net = ipaddress.ip_network("10.244.2.0/26")
    hop = ipaddress.ip_address("10.0.0.12")
    own = frozenset({"10.0.0.11"})
    m = learned_message(RouteUpdate(net, (hop,), "10.0.0.12"), own)
    assert (m.update.dst, list(m.update.next_hops), m.update.peer) == (
        "10.244.2.0/26",
        ["10.0.0.12"],
        "10.0.0.12",
    )
    assert learned_message(RouteUpdate(net, ()), own).withdraw == "10.244.2.0/26"
    back = RouteUpdate(net, (ipaddress.ip_address("10.0.0.11"),))
    assert learned_message(back, own).withdraw == "10.244.2.0/26"


def test_cli_needs_exactly_one_mode(capsys):
    from bgp.daemon.main import main

    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    assert "one of --config FILE or --felix-socket PATH is required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--config", "/x.yaml", "--felix-socket", "/y.sock"])
    assert e.value.code == 2
    assert "two different modes" in capsys.readouterr().err
