"""tabby-bgpd's Prometheus metrics, scraped from a running daemon with real peers: a second
tabby-bgpd and a scripted peer (loopback only). The numbers must match what the admin
API (``tabbyctl bgp peers``) shows, and follow sessions going up and down."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from bgp.interop.common import loopback_net
from bgp.interop.harness import REPO, Tabby, wait_for, workdir
from bgp.interop.scripted import Persona, Scripted
from bgp.wire import Notification, encode_message
from datastore.etcd_fixture import free_port

pytestmark = pytest.mark.timeout(90)

A_AS, B_AS = 64512, 64513
STATES = ("Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established")


def test_metrics_follow_peers_routes_and_notifications():
    net = loopback_net()
    a_addr, b_addr = net + "1", net + "2"
    scripted = Persona(3, A_AS)
    c_addr = net + "3"
    pa, pb, mport = free_port(a_addr), free_port(b_addr), free_port(a_addr)
    url = f"http://{a_addr}:{mport}/metrics"
    a_conf = f"""
localAS: {A_AS}
routerID: {a_addr}
listenAddress: {a_addr}
listenPort: {pa}
holdTime: 30
connectRetryTime: 1
metricsPort: {mport}
metricsAddress: {a_addr}
originate: [10.76.0.0/24, 10.76.1.0/24]
peers:
  - {{address: {b_addr}, asNumber: {B_AS}, port: {pb},
      importPrefixes: [{{cidr: 10.77.1.0/24, action: reject}}, 0.0.0.0/0]}}
  - {{address: {c_addr}, asNumber: {A_AS}, passive: true}}
"""
    b_conf = f"""
localAS: {B_AS}
routerID: {b_addr}
listenAddress: {b_addr}
listenPort: {pb}
holdTime: 30
connectRetryTime: 1
originate: [10.77.0.0/24, 10.77.1.0/24, 10.77.2.0/24]
peers:
  - {{address: {a_addr}, asNumber: {A_AS}, port: {pa}}}
"""
    with workdir() as d:
        a = Tabby(None, d, a_conf, "a").start()
        b = None
        try:
            b = Tabby(None, d, b_conf, "b").start()
            wait_for("A-B session", lambda: a.established(b_addr))
            wait_for("B's routes in A", lambda: len(a.rib(peer=b_addr)) == 3)
            wait_for("A's routes in B", lambda: len(b.rib(peer=a_addr)) == 2)
            started = time.time()
            m = a.metrics(url)

            # Per-peer state: exactly one state is 1, and it is the API's state.
            peers = a.peers()
            for addr in (b_addr, c_addr):
                states = {s: m.get("tabby_bgp_peer_state", peer=addr, state=s) for s in STATES}
                assert sum(states.values()) == 1
                assert states[peers[addr].state] == 1
            assert m.get("tabby_bgp_peer_up", peer=b_addr, asn=B_AS) == 1
            assert m.get("tabby_bgp_peer_up", peer=c_addr) == 0
            uptime = m.get("tabby_bgp_peer_uptime_seconds", peer=b_addr)
            assert 0 < uptime <= started - peers[b_addr].established_since_unix + 2
            assert m.get("tabby_bgp_peer_uptime_seconds", peer=c_addr) == 0

            # Prefix counts: same numbers as ListPeers (tabbyctl bgp peers).
            pb_ = peers[b_addr]
            assert m.get("tabby_bgp_peer_prefixes_received", peer=b_addr) == 3
            assert m.get("tabby_bgp_peer_prefixes_accepted", peer=b_addr) == 2  # one filtered
            assert m.get("tabby_bgp_peer_prefixes_advertised", peer=b_addr) == 2
            assert (pb_.prefixes_received, pb_.prefixes_accepted, pb_.prefixes_advertised) == (
                3,
                2,
                2,
            )
            # UPDATEs: B sent at least its routes and two End-of-RIBs; A likewise.
            assert m.get("tabby_bgp_peer_updates_received_total", peer=b_addr) >= 3
            assert m.get("tabby_bgp_peer_updates_sent_total", peer=b_addr) >= 3
            # Loc-RIB: two own + two accepted from B.
            assert m.get("tabby_bgp_loc_rib_prefixes", afi="ipv4") == 4
            assert m.get("tabby_bgp_loc_rib_prefixes", afi="ipv6") == 0
            assert m.types["tabby_bgp_peer_notifications_sent_total"] == "counter"
            assert m.types["tabby_bgp_peer_state"] == "gauge"

            # A scripted peer resets its session with Cease/Administrative Reset.
            s = Scripted(net, pa, scripted)
            try:
                s.establish()
                wait_for("C up", lambda: a.established(c_addr))
                s.send(encode_message(Notification(6, 4)))
            finally:
                s.close()
            wait_for("C down", lambda: not a.established(c_addr))
            m = a.metrics(url)
            got = m.get("tabby_bgp_peer_notifications_received_total", peer=c_addr, code=6)
            assert got == 1
            assert m.get(
                "tabby_bgp_peer_notifications_received_total",
                peer=c_addr,
                code=6,
                subcode=4,
                name="Cease/Administrative Reset",
            )

            # B shuts down: A counts B's NOTIFICATION, and B's routes leave the Loc-RIB.
            updates_in = m.get("tabby_bgp_peer_updates_received_total", peer=b_addr)
            b.stop()
            wait_for("B down", lambda: not a.established(b_addr))
            m = a.metrics(url)
            assert m.get("tabby_bgp_peer_up", peer=b_addr) == 0
            assert m.get("tabby_bgp_peer_uptime_seconds", peer=b_addr) == 0
            assert m.get("tabby_bgp_peer_notifications_received_total", peer=b_addr) == 1
            assert m.get("tabby_bgp_peer_prefixes_received", peer=b_addr) == 0
            assert m.get("tabby_bgp_loc_rib_prefixes", afi="ipv4") == 2
            # Counters are per peer for the daemon's life, not per session.
            assert m.get("tabby_bgp_peer_updates_received_total", peer=b_addr) == updates_in

            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(f"http://{a_addr}:{mport}/nope", timeout=5)
            assert e.value.code == 404
        finally:
            if b is not None:
                b.stop()
            a.stop()


def test_bad_metrics_port_is_a_config_error_naming_the_field(tmp_path):
    conf = tmp_path / "bgpd.yaml"
    conf.write_text("localAS: 64512\nrouterID: 10.0.0.1\nmetricsPort: 70000\n")
    r = subprocess.run(
        [sys.executable, "-m", "bgp.daemon.main", "--config", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert r.returncode == 2
    assert "metricsPort: must be an integer 0..65535, got 70000" in r.stderr
