"""tabby-bgpd against real GoBGP (gobgpd + gobgp CLI) in network namespaces."""

from __future__ import annotations

import shutil
import time

import pytest

from bgp.interop.common import TABBY_AS, both_up, env_fixture, peer_lines, tabby_conf  # noqa: F401
from bgp.interop.harness import GoBgp, Tabby, have_root_netns, wait_for

pytestmark = [
    pytest.mark.skipif(have_root_netns() is not None, reason=str(have_root_netns())),
    pytest.mark.skipif(shutil.which("gobgpd") is None, reason="gobgpd not installed"),
    pytest.mark.timeout(120),
]

GOBGP_AS = 65004


def gobgp_conf(net, i: int, asn: int, v6: bool = True, password: str | None = None) -> str:
    neighbors = ""
    fams = [(net.v4(0), "ipv4-unicast")] + ([(net.v6(0), "ipv6-unicast")] if v6 else [])
    auth = f'\n    auth-password = "{password}"' if password else ""
    for addr, fam in fams:
        neighbors += f"""
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{addr}"
    peer-as = {TABBY_AS}{auth}
  [neighbors.timers.config]
    hold-time = 3
    keepalive-interval = 1
    connect-retry = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "{fam}"
"""
    return f"""
[global.config]
  as = {asn}
  router-id = "{net.v4(i)}"
  port = 179
{neighbors}
"""


def attr(path: dict, type_code: int) -> dict:
    return next((a for a in path.get("attrs", []) if a.get("type") == type_code), {})


@pytest.mark.parametrize("ibgp", [False, True], ids=["ebgp", "ibgp"])
def test_gobgp_ipv4_ipv6_both_ways_with_attributes_and_withdrawals(env, ibgp):
    net, d, started = env
    asn = TABBY_AS if ibgp else GOBGP_AS
    tabby = Tabby(net.nodes[0].ns, d, tabby_conf(net, peer_lines(net, [1], asn=asn))).start()
    started.append(tabby)
    gobgp = GoBgp(net.nodes[1].ns, d, gobgp_conf(net, 1, asn))
    started.append(gobgp)
    wait_for("sessions with GoBGP", lambda: both_up(tabby, net, 1), 30)
    assert gobgp.established(net.v4(0))

    gobgp.cli(
        "global", "rib", "add", "10.40.0.0/24", "-a", "ipv4", "community", "65004:9", "med", "20"
    )
    gobgp.cli("global", "rib", "add", "fd00:40::/64", "-a", "ipv6")
    rib = wait_for("GoBGP routes in tabby", lambda: len(tabby.rib()) >= 4 and tabby.rib())
    r4 = rib["10.40.0.0/24"]
    assert r4.next_hop == net.v4(1) and list(r4.communities) == ["65004:9"] and r4.med == 20
    assert list(r4.as_path) == ([] if ibgp else [GOBGP_AS])
    assert rib["fd00:40::/64"].next_hop == net.v6(1)

    v4 = wait_for("tabby route in GoBGP", lambda: gobgp.rib("ipv4").get("10.1.0.0/24"))
    path = v4[0]
    assert attr(path, 3).get("nexthop") == net.v4(0)
    as_path = [a for seg in attr(path, 2).get("as_paths", []) for a in seg.get("asns", [])]
    assert as_path == ([] if ibgp else [TABBY_AS])
    assert attr(path, 8).get("communities") == [65001 << 16 | 42]
    if ibgp:
        assert attr(path, 5).get("value") == 100  # LOCAL_PREF sent inside the AS
    v6 = wait_for("tabby v6 route in GoBGP", lambda: gobgp.rib("ipv6").get("fd00:1::/64"))
    assert attr(v6[0], 14).get("nexthop") == net.v6(0)

    gobgp.cli("global", "rib", "del", "10.40.0.0/24", "-a", "ipv4")
    wait_for("withdrawal reaches tabby", lambda: "10.40.0.0/24" not in tabby.rib())
    tabby.reload(tabby_conf(net, peer_lines(net, [1], asn=asn), originate=' ["fd00:1::/64"]'))
    wait_for("withdrawal reaches GoBGP", lambda: "10.1.0.0/24" not in gobgp.rib("ipv4"))


def test_gobgp_session_survives_idle_beyond_three_hold_times(env):
    net, d, started = env
    tabby = Tabby(net.nodes[0].ns, d, tabby_conf(net, peer_lines(net, [1], GOBGP_AS, False)))
    started.append(tabby.start())
    gobgp = GoBgp(net.nodes[1].ns, d, gobgp_conf(net, 1, GOBGP_AS, v6=False))
    started.append(gobgp)
    wait_for("session with GoBGP", lambda: tabby.established(net.v4(1)), 30)
    wait_for("GoBGP sees it", lambda: gobgp.established(net.v4(0)))
    since = tabby.peers()[net.v4(1)].established_since_unix
    time.sleep(10)  # > 3 x hold time 3 s, only keepalives flowing
    peer = tabby.peers()[net.v4(1)]
    assert peer.state == "Established" and peer.established_since_unix == since
    assert gobgp.established(net.v4(0))
    assert "hold timer" not in gobgp.proc.output().lower()


def test_gobgp_md5_session_up_with_right_password_refused_with_wrong(env):
    net, d, started = env
    peers = peer_lines(net, [1, 2], GOBGP_AS, v6=False, extra=", password: s3cret")
    started.append(Tabby(net.nodes[0].ns, d, tabby_conf(net, peers)).start())
    tabby = started[-1]
    good = GoBgp(net.nodes[1].ns, d, gobgp_conf(net, 1, GOBGP_AS, False, "s3cret"), "good")
    started.append(good)
    bad = GoBgp(net.nodes[2].ns, d, gobgp_conf(net, 2, GOBGP_AS, False, "wrong"), "bad")
    started.append(bad)
    wait_for("MD5 session with the right password", lambda: tabby.established(net.v4(1)), 30)
    good.cli("global", "rib", "add", "10.41.1.0/24", "-a", "ipv4")
    bad.cli("global", "rib", "add", "10.41.2.0/24", "-a", "ipv4")
    wait_for("route over the MD5 session", lambda: "10.41.1.0/24" in tabby.rib())
    assert good.established(net.v4(0))
    time.sleep(4)  # GoBGP retries every second: several refused attempts
    assert tabby.peers()[net.v4(2)].state != "Established"
    assert not bad.established(net.v4(0))
    assert "10.41.2.0/24" not in tabby.rib()
