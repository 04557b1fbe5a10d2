"""Route reflection (RFC 4456) with mixed speakers in network namespaces: tabby-bgpd as
reflector for a BIRD client and a tabby client, and BIRD as reflector for two tabby
clients. Every client learns every other client's routes with ORIGINATOR_ID and
CLUSTER_LIST set (checked with birdc and our ListRib), and nothing loops back."""

from __future__ import annotations

import shutil

import grpc
import pytest

from bgp.interop.common import TABBY_AS, bird_conf, env_fixture, peer_lines, tabby_conf  # noqa: F401
from bgp.interop.harness import Bird, Tabby, have_root_netns, wait_for
from proto import bgp_admin_pb2 as pb
from proto import bgp_admin_pb2_grpc as pb_grpc

pytestmark = [
    pytest.mark.skipif(have_root_netns() is not None, reason=str(have_root_netns())),
    pytest.mark.skipif(shutil.which("bird") is None, reason="bird (BIRD 2) not installed"),
    pytest.mark.timeout(120),
]


def candidates(tabby: Tabby, prefix: str) -> list[pb.RibEntry]:
    """Every Loc-RIB candidate path for ``prefix`` (best first)."""
    stub = pb_grpc.BgpAdminStub(grpc.insecure_channel(f"unix:{tabby.sock}"))
    reply = stub.ListRib(pb.ListRibRequest(afi="ipv4"), timeout=5)
    return [e for e in reply.entries if e.prefix == prefix]


def tabby_client(net, d, i: int) -> Tabby:
    """An iBGP tabby-bgpd on node ``i`` peering only with node 0, originating 10.1.<i>.0/24."""
    conf = tabby_conf(
        net, peer_lines(net, [0], asn=TABBY_AS, v6=False), originate=f" [10.1.{i}.0/24]", node=i
    )
    return Tabby(net.nodes[i].ns, d, conf, f"client{i}").start()


def assert_no_loop(client: Tabby, own: str, reflector: str) -> None:
    """The client's own route is its only candidate: nothing came back to it."""
    paths = candidates(client, own)
    assert [p.from_peer for p in paths] == [""], paths
    assert own not in client.rib(peer=reflector)


def test_tabby_reflector_with_bird_client_and_tabby_client(env):
    net, d, started = env
    peers = peer_lines(net, [1, 2], asn=TABBY_AS, v6=False, extra=", routeReflectorClient: true")
    rr = Tabby(net.nodes[0].ns, d, tabby_conf(net, peers, originate=" []"), "rr").start()
    started.append(rr)
    bird = Bird(net.nodes[1].ns, d, bird_conf(net, 1, asn=TABBY_AS, v6=False), "c1")
    started.append(bird)
    client = tabby_client(net, d, 2)
    started.append(client)

    # tabby client -> tabby RR -> BIRD client, checked with birdc.
    out = wait_for("tabby client's route reflected to BIRD", lambda: bird.route("10.1.2.0/24"))
    assert f"BGP.originator_id: {net.v4(2)}" in out
    assert f"BGP.cluster_list: {net.v4(0)}" in out
    assert f"BGP.next_hop: {net.v4(2)}" in out
    # BIRD client -> tabby RR -> tabby client, checked with our ListRib.
    e = wait_for(
        "BIRD's route reflected to the tabby client", lambda: client.rib().get("10.20.1.0/24")
    )
    assert (e.originator_id, list(e.cluster_list)) == (net.v4(1), [net.v4(0)])
    assert (e.next_hop, e.from_peer, list(e.as_path)) == (net.v4(1), net.v4(0), [])
    # The reflector itself keeps one path per prefix and sets nothing on its own table.
    for prefix in ("10.1.2.0/24", "10.20.1.0/24"):
        paths = candidates(rr, prefix)
        assert len(paths) == 1 and paths[0].originator_id == "" and not paths[0].cluster_list
    assert_no_loop(client, "10.1.2.0/24", net.v4(0))

    # Withdrawals are reflected too.
    client.reload(
        tabby_conf(net, peer_lines(net, [0], asn=TABBY_AS, v6=False), originate=" []", node=2)
    )
    wait_for("withdrawal reflected to BIRD", lambda: not bird.route("10.1.2.0/24"))
    bird.cli("disable", "s4")
    wait_for("BIRD withdrawal reflected", lambda: "10.20.1.0/24" not in client.rib())


def bird_reflector_conf(net, clients: tuple[int, ...]) -> str:
    sessions = ""
    for i in clients:
        sessions += f"""
protocol bgp c{i} {{
  local {net.v4(0)} as {TABBY_AS};
  neighbor {net.v4(i)} as {TABBY_AS};
  rr client;
  direct;
  hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 2;
  ipv4 {{ gateway direct; import all; export all; }};
}}
"""
    return f"""
router id {net.v4(0)};
log stderr all;
protocol device {{ scan time 2; }}
{sessions}
"""


def test_bird_reflector_with_two_tabby_clients(env):
    net, d, started = env
    rr = Bird(net.nodes[0].ns, d, bird_reflector_conf(net, (1, 2)), "rr")
    started.append(rr)
    c1 = tabby_client(net, d, 1)
    started.append(c1)
    c2 = tabby_client(net, d, 2)
    started.append(c2)
    wait_for("both clients up in BIRD", lambda: rr.established("c1") and rr.established("c2"))

    for me, i, j in ((c1, 1, 2), (c2, 2, 1)):
        prefix = f"10.1.{j}.0/24"
        e = wait_for(
            f"client {i} learns client {j}'s route", lambda me=me, p=prefix: me.rib().get(p)
        )
        assert (e.originator_id, list(e.cluster_list)) == (net.v4(j), [net.v4(0)])
        assert (e.next_hop, e.from_peer, list(e.as_path)) == (net.v4(j), net.v4(0), [])
        assert_no_loop(me, f"10.1.{i}.0/24", net.v4(0))
    out = rr.route("10.1.1.0/24")
    assert f"BGP.next_hop: {net.v4(1)}" in out and "BGP.originator_id" not in out

    # One client withdraws: the other forgets the route.
    c1.reload(
        tabby_conf(net, peer_lines(net, [0], asn=TABBY_AS, v6=False), originate=" []", node=1)
    )
    wait_for("withdrawal reflected to client 2", lambda: "10.1.1.0/24" not in c2.rib())
    assert "10.1.2.0/24" in c1.rib()


def test_redundant_tabby_reflectors_sharing_a_cluster_id_drop_each_others_reflections(env):
    """RFC 4456 8: a reflector ignores a route whose CLUSTER_LIST holds its cluster id; with
    two reflectors in one cluster that is what stops a reflected route looping back."""
    net, d, started = env
    cluster = "clusterID: 10.255.255.1"
    rr1_peers = peer_lines(net, [1], asn=TABBY_AS, v6=False, extra=", routeReflectorClient: true")
    rr1_peers += f"\n  - {{address: {net.v4(3)}, asNumber: {TABBY_AS}}}"
    rr1 = Tabby(net.nodes[0].ns, d, tabby_conf(net, rr1_peers, cluster, " []"), "rr1").start()
    started.append(rr1)
    rr2_peers = peer_lines(net, [0], asn=TABBY_AS, v6=False)
    rr2_conf = tabby_conf(net, rr2_peers, cluster, " []", node=3)
    rr2 = Tabby(net.nodes[3].ns, d, rr2_conf, "rr2").start()
    started.append(rr2)
    bird = Bird(net.nodes[1].ns, d, bird_conf(net, 1, asn=TABBY_AS, v6=False), "c1")
    started.append(bird)

    assert wait_for("BIRD's route in rr1", lambda: "10.20.1.0/24" in rr1.rib())
    # rr1 reflects the client route to its non-client peer rr2 ...
    e = wait_for("reflection reaches rr2", lambda: rr2.rib(peer=net.v4(0)).get("10.20.1.0/24"))
    assert list(e.cluster_list) == ["10.255.255.1"] and e.originator_id == net.v4(1)
    # ... which keeps it in Adj-RIB-In but never selects it: its own cluster id is there.
    assert "10.20.1.0/24" not in rr2.rib()
    assert rr2.peers()[net.v4(0)].prefixes_accepted == 0
