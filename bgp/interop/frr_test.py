"""tabby-bgpd against real FRR bgpd (no zebra) in network namespaces, checked with vtysh."""

from __future__ import annotations

import os
import time

import pytest

from bgp.interop.common import TABBY_AS, both_up, env_fixture, peer_lines, tabby_conf  # noqa: F401
from bgp.interop.harness import Frr, Tabby, have_root_netns, wait_for

pytestmark = [
    pytest.mark.skipif(have_root_netns() is not None, reason=str(have_root_netns())),
    pytest.mark.skipif(not os.path.exists("/usr/lib/frr/bgpd"), reason="FRR not installed"),
    pytest.mark.timeout(120),
]

FRR_AS = 65005


def frr_conf(net, i: int, asn: int, password: str | None = None) -> str:
    pw = "".join(f"\n neighbor {a} password {password}" for a in (net.v4(0), net.v6(0)))
    pw = pw if password else ""
    return f"""
frr defaults traditional
hostname frr{i}
log stdout
!
router bgp {asn}
 bgp router-id {net.v4(i)}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor {net.v4(0)} remote-as {TABBY_AS}
 neighbor {net.v4(0)} timers 1 3
 neighbor {net.v4(0)} timers connect 1
 neighbor {net.v6(0)} remote-as {TABBY_AS}
 neighbor {net.v6(0)} timers 1 3
 neighbor {net.v6(0)} timers connect 1{pw}
 address-family ipv4 unicast
  network 10.50.0.0/24 route-map SET
  no neighbor {net.v6(0)} activate
 exit-address-family
 address-family ipv6 unicast
  network fd00:50::/64
  neighbor {net.v6(0)} activate
 exit-address-family
!
route-map SET permit 10
 set community 65005:3
 set metric 30
!
"""


@pytest.mark.parametrize("ibgp", [False, True], ids=["ebgp", "ibgp"])
def test_frr_ipv4_ipv6_both_ways_with_attributes_and_withdrawals(env, ibgp):
    net, d, started = env
    asn = TABBY_AS if ibgp else FRR_AS
    tabby = Tabby(net.nodes[0].ns, d, tabby_conf(net, peer_lines(net, [1], asn=asn))).start()
    started.append(tabby)
    frr = Frr(net.nodes[1].ns, d, frr_conf(net, 1, asn))
    started.append(frr)
    wait_for("sessions with FRR", lambda: both_up(tabby, net, 1), 40)
    assert frr.established(net.v4(0))

    rib = wait_for("FRR routes in tabby", lambda: len(tabby.rib()) >= 4 and tabby.rib(), 30)
    r4 = rib["10.50.0.0/24"]
    assert r4.next_hop == net.v4(1) and list(r4.communities) == ["65005:3"] and r4.med == 30
    assert list(r4.as_path) == ([] if ibgp else [FRR_AS])
    assert rib["fd00:50::/64"].next_hop == net.v6(1)

    def frr_route(prefix: str, afi: str) -> dict:
        paths = frr.json(f"show bgp {afi} unicast {prefix}").get("paths", [])
        return paths[0] if paths else {}

    p4 = wait_for("tabby route in FRR", lambda: frr_route("10.1.0.0/24", "ipv4"), 30)
    assert p4["nexthops"][0]["ip"] == net.v4(0)
    assert p4["aspath"]["string"] == ("Local" if ibgp else str(TABBY_AS))
    assert p4["community"]["string"] == "65001:42"
    if ibgp:
        assert p4.get("locPrf") == 100
    else:
        assert p4.get("metric") == 10
    p6 = wait_for("tabby v6 route in FRR", lambda: frr_route("fd00:1::/64", "ipv6"), 30)
    assert p6["nexthops"][0]["ip"] == net.v6(0)

    tabby.reload(tabby_conf(net, peer_lines(net, [1], asn=asn), originate=' ["fd00:1::/64"]'))
    wait_for("withdrawal reaches FRR", lambda: not frr_route("10.1.0.0/24", "ipv4"))


def test_frr_session_survives_idle_beyond_three_hold_times(env):
    net, d, started = env
    tabby = Tabby(net.nodes[0].ns, d, tabby_conf(net, peer_lines(net, [1], FRR_AS))).start()
    started.append(tabby)
    frr = Frr(net.nodes[1].ns, d, frr_conf(net, 1, FRR_AS))
    started.append(frr)
    wait_for("sessions with FRR", lambda: both_up(tabby, net, 1), 40)
    since = tabby.peers()[net.v4(1)].established_since_unix
    time.sleep(10)  # > 3 x hold time 3 s, only keepalives flowing
    peer = tabby.peers()[net.v4(1)]
    assert peer.state == "Established" and peer.established_since_unix == since
    n = frr.json(f"show bgp neighbors {net.v4(0)}")[net.v4(0)]
    assert n["bgpState"] == "Established" and n["bgpTimerUpEstablishedEpoch"] <= since + 1
    assert n["connectionsEstablished"] == 1 and n.get("connectionsDropped", 0) == 0


def test_frr_md5_session_up_with_right_password_refused_with_wrong(env):
    net, d, started = env
    peers = peer_lines(net, [1, 2], FRR_AS, extra=", password: s3cret")
    tabby = Tabby(net.nodes[0].ns, d, tabby_conf(net, peers)).start()
    started.append(tabby)
    good = Frr(net.nodes[1].ns, d, frr_conf(net, 1, FRR_AS, "s3cret"), "good")
    started.append(good)
    bad = Frr(net.nodes[2].ns, d, frr_conf(net, 2, FRR_AS, "wrong"), "bad")
    started.append(bad)
    wait_for("MD5 sessions with the right password", lambda: both_up(tabby, net, 1), 40)
    wait_for("route over the MD5 session", lambda: "10.50.0.0/24" in tabby.rib(), 30)
    assert good.established(net.v4(0))
    time.sleep(4)  # FRR retries every second: several refused attempts
    for addr in (net.v4(2), net.v6(2)):
        assert tabby.peers()[addr].state != "Established"
    assert not bad.established(net.v4(0))
    assert len([e for e in tabby.rib().values() if e.from_peer == net.v4(2)]) == 0
