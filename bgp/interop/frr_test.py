"""tabby-bgpd against real FRR bgpd (no zebra) in network namespaces, checked with vtysh."""

from __future__ import annotations

import os

import pytest

from bgp.interop.common import TABBY_AS, both_up, env_fixture, peer_lines, tabby_conf  # noqa: F401
from bgp.interop.harness import Frr, Tabby, have_root_netns, wait_for

pytestmark = [
    pytest.mark.skipif(have_root_netns() is not None, reason=str(have_root_netns())),
    pytest.mark.skipif(not os.path.exists("/usr/lib/frr/bgpd"), reason="FRR not installed"),
    pytest.mark.timeout(120),
]

FRR_AS = 65005


def frr_conf(net, i: int, asn: int) -> str:
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
 neighbor {net.v6(0)} timers connect 1
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
