"""tabby-bgpd against real BIRD 2 in network namespaces: what a network engineer peering
a BIRD router with the cluster would check with ``birdc`` and our admin API."""

from __future__ import annotations

import re
import shutil
import time

import pytest

from bgp.interop.common import (  # noqa: F401
    BIRD_AS,
    TABBY_AS,
    bird_conf,
    both_up,
    env6_fixture,
    env_fixture,
    peer_lines,
    tabby_conf,
)
from bgp.interop.harness import Bird, Tabby, have_root_netns, wait_for

pytestmark = [
    pytest.mark.skipif(have_root_netns() is not None, reason=str(have_root_netns())),
    pytest.mark.skipif(shutil.which("bird") is None, reason="bird (BIRD 2) not installed"),
    pytest.mark.timeout(120),
]


def test_ebgp_ipv4_ipv6_routes_both_ways_with_attributes_and_withdrawals(env):
    net, d, started = env
    tabby = Tabby(net.nodes[0].ns, d, tabby_conf(net, peer_lines(net, [1]))).start()
    started.append(tabby)
    bird = Bird(net.nodes[1].ns, d, bird_conf(net, 1))
    started.append(bird)
    wait_for(
        "both sessions up", lambda: tabby.established(net.v4(1)) and tabby.established(net.v6(1))
    )
    wait_for("BIRD t4/t6 Established", lambda: bird.established("t4") and bird.established("t6"))

    # BIRD -> tabby, checked in our Loc-RIB.
    rib = wait_for("BIRD routes in tabby", lambda: len(tabby.rib()) >= 4 and tabby.rib())
    r4, r6 = rib["10.20.1.0/24"], rib["fd00:20:1::/64"]
    assert (r4.next_hop, list(r4.as_path), r4.med, list(r4.communities)) == (
        net.v4(1),
        [BIRD_AS],
        50,
        ["65002:7"],
    )
    assert r4.from_peer == net.v4(1) and r4.origin == "IGP"
    assert (r6.next_hop, list(r6.as_path)) == (net.v6(1), [BIRD_AS])

    # tabby -> BIRD, checked with birdc.
    out4 = wait_for("10.1.0.0/24 in BIRD", lambda: bird.route("10.1.0.0/24"))
    assert f"BGP.next_hop: {net.v4(0)}" in out4
    assert f"BGP.as_path: {TABBY_AS}" in out4
    assert "BGP.med: 10" in out4
    assert "(65001,42)" in out4
    out6 = wait_for("fd00:1::/64 in BIRD", lambda: bird.route("fd00:1::/64"))
    assert f"BGP.next_hop: {net.v6(0)}" in out6

    # Withdrawal BIRD -> tabby.
    bird.cli("disable", "s4")
    wait_for("10.20.1.0/24 withdrawn in tabby", lambda: "10.20.1.0/24" not in tabby.rib())
    assert "fd00:20:1::/64" in tabby.rib()
    # Withdrawal tabby -> BIRD (originated route removed and SIGHUP).
    tabby.reload(tabby_conf(net, peer_lines(net, [1]), originate=' ["fd00:1::/64"]'))
    wait_for("10.1.0.0/24 withdrawn in BIRD", lambda: not bird.route("10.1.0.0/24"))
    assert bird.route("fd00:1::/64")


def test_ibgp_ipv4_ipv6_keeps_local_pref_and_next_hop(env):
    net, d, started = env
    tabby = Tabby(net.nodes[0].ns, d, tabby_conf(net, peer_lines(net, [1], asn=TABBY_AS))).start()
    started.append(tabby)
    bird = Bird(
        net.nodes[1].ns,
        d,
        bird_conf(net, 1, asn=TABBY_AS, export_filter="bgp_local_pref = 200;"),
    )
    started.append(bird)
    wait_for(
        "iBGP sessions up", lambda: tabby.established(net.v4(1)) and tabby.established(net.v6(1))
    )
    rib = wait_for("BIRD routes in tabby", lambda: len(tabby.rib()) >= 4 and tabby.rib())
    r4 = rib["10.20.1.0/24"]
    assert (r4.local_pref, list(r4.as_path), r4.next_hop) == (200, [], net.v4(1))
    assert rib["fd00:20:1::/64"].next_hop == net.v6(1)
    out = wait_for("10.1.0.0/24 in BIRD", lambda: bird.route("10.1.0.0/24"))
    assert "BGP.local_pref: 100" in out
    assert re.search(r"^\s*BGP\.as_path:\s*$", out, re.M), out  # empty inside the AS
    assert f"BGP.as_path: {TABBY_AS}" not in out  # no prepend inside the AS
    assert f"BGP.next_hop: {net.v4(0)}" in out
    assert f"BGP.next_hop: {net.v6(0)}" in wait_for(
        "fd00:1::/64 in BIRD", lambda: bird.route("fd00:1::/64")
    )


def test_session_survives_idle_beyond_three_hold_times(env):
    net, d, started = env
    tabby = Tabby(net.nodes[0].ns, d, tabby_conf(net, peer_lines(net, [1], v6=False))).start()
    started.append(tabby)
    bird = Bird(net.nodes[1].ns, d, bird_conf(net, 1, v6=False))
    started.append(bird)
    wait_for("session up", lambda: tabby.established(net.v4(1)))
    since = tabby.peers()[net.v4(1)].established_since_unix
    time.sleep(10)  # > 3 x hold time 3 s, only keepalives flowing
    peer = tabby.peers()[net.v4(1)]
    assert peer.state == "Established" and peer.established_since_unix == since
    assert bird.established("t4")
    assert "Hold timer" not in bird.proc.output()


def test_md5_session_up_with_right_password_refused_with_wrong(env):
    net, d, started = env
    peers = peer_lines(net, [1, 2], v6=False, extra=", password: s3cret")
    tabby = Tabby(net.nodes[0].ns, d, tabby_conf(net, peers)).start()
    started.append(tabby)
    good = Bird(net.nodes[1].ns, d, bird_conf(net, 1, v6=False, password="s3cret"), "good")
    started.append(good)
    bad = Bird(net.nodes[2].ns, d, bird_conf(net, 2, v6=False, password="wrong"), "bad")
    started.append(bad)
    wait_for("MD5 session with the right password", lambda: tabby.established(net.v4(1)))
    assert wait_for("route over MD5 session", lambda: "10.20.1.0/24" in tabby.rib())
    time.sleep(4)
    assert tabby.peers()[net.v4(2)].state != "Established"
    assert not bad.established("t4")
    assert "10.20.2.0/24" not in tabby.rib()


def test_route_reflector_reflects_between_bird_clients(env):
    net, d, started = env
    peers = peer_lines(net, [1, 2], asn=TABBY_AS, v6=False, extra=", routeReflectorClient: true")
    tabby = Tabby(net.nodes[0].ns, d, tabby_conf(net, peers, originate=" []")).start()
    started.append(tabby)
    b1 = Bird(net.nodes[1].ns, d, bird_conf(net, 1, asn=TABBY_AS, v6=False), "c1")
    started.append(b1)
    b2 = Bird(net.nodes[2].ns, d, bird_conf(net, 2, asn=TABBY_AS, v6=False), "c2")
    started.append(b2)
    out = wait_for("client 1 route reflected to client 2", lambda: b2.route("10.20.1.0/24"))
    assert f"BGP.originator_id: {net.v4(1)}" in out
    assert f"BGP.cluster_list: {net.v4(0)}" in out
    assert f"BGP.next_hop: {net.v4(1)}" in out
    assert wait_for("client 2 route reflected to client 1", lambda: b1.route("10.20.2.0/24"))
    b1.cli("disable", "s4")
    wait_for("withdrawal reflected", lambda: not b2.route("10.20.1.0/24"))


def test_dynamic_neighbours_from_listen_range_come_up_without_static_config(env6):
    """Five peers from the listen range, none configured: three BIRD, two tabby-bgpd."""
    net, d, started = env6
    extra = f"listenRanges:\n  - {{cidr: 10.99.{net.subnet}.0/24, asNumber: {BIRD_AS}}}"
    tabby = Tabby(net.nodes[0].ns, d, tabby_conf(net, " []", extra=extra)).start()
    started.append(tabby)
    birds = [Bird(net.nodes[i].ns, d, bird_conf(net, i, v6=False), f"b{i}") for i in (1, 2, 3)]
    started.extend(birds)
    for i in (4, 5):
        conf = tabby_conf(
            net,
            peer_lines(net, [0], asn=TABBY_AS, v6=False),
            originate=f" [10.20.{i}.0/24]",
            node=i,
            asn=BIRD_AS,
        )
        started.append(Tabby(net.nodes[i].ns, d, conf, f"t{i}").start())
    five = (1, 2, 3, 4, 5)
    peers = wait_for(
        "five dynamic peers Established",
        lambda: (
            (p := tabby.peers())
            and all(p.get(net.v4(i)) and p[net.v4(i)].state == "Established" for i in five)
            and p
        ),
        30,
    )
    assert {peers[net.v4(i)].type for i in five} == {"dynamic"}
    assert len(peers) == 5
    wanted = {f"10.20.{i}.0/24" for i in five}
    rib = wait_for("routes of all five", lambda: wanted <= set(tabby.rib()) and tabby.rib())
    assert {rib[f"10.20.{i}.0/24"].next_hop for i in five} == {net.v4(i) for i in five}
    # A dynamic peer that goes away is forgotten, with its routes.
    birds[0].stop()
    wait_for("dynamic peer removed", lambda: net.v4(1) not in tabby.peers(), 15)
    assert "10.20.1.0/24" not in tabby.rib()
    started[-1].stop()  # a tabby-bgpd peer stops too (Cease), same outcome
    wait_for("tabby dynamic peer removed", lambda: net.v4(5) not in tabby.peers(), 15)
    assert "10.20.5.0/24" not in tabby.rib()
    assert len(tabby.peers()) == 3


def test_graceful_restart_bird_keeps_stale_routes_until_restart_and_end_of_rib(env):
    net, d, started = env
    gr = "gracefulRestart: {enabled: true, restartTime: 60}"
    both = """
  - 10.1.0.0/24
  - 10.2.0.0/24"""
    peers = peer_lines(net, [1], v6=False)
    tabby = Tabby(net.nodes[0].ns, d, tabby_conf(net, peers, extra=gr, originate=both)).start()
    started.append(tabby)
    bird = Bird(net.nodes[1].ns, d, bird_conf(net, 1, v6=False, extra="graceful restart on;"))
    started.append(bird)
    wait_for("both routes in BIRD", lambda: bird.route("10.1.0.0/24") and bird.route("10.2.0.0/24"))
    assert tabby.proc is not None
    tabby.proc.kill()  # SIGKILL: no NOTIFICATION, like a crash
    tabby.proc.p.wait(5)
    wait_for("BIRD notices the restart", lambda: not bird.established("t4"), 15)
    time.sleep(2)
    assert bird.route("10.1.0.0/24") and bird.route("10.2.0.0/24"), "stale routes dropped"
    # Restart with only one of the routes: End-of-RIB must sweep the other.
    tabby.stop()
    tabby.sock.unlink(missing_ok=True)
    tabby.conf.write_text(tabby.conf.read_text().replace("  - 10.2.0.0/24\n", ""))
    tabby.start()
    wait_for("session back", lambda: bird.established("t4"), 20)
    wait_for("stale 10.2.0.0/24 swept after End-of-RIB", lambda: not bird.route("10.2.0.0/24"))
    assert bird.route("10.1.0.0/24")
