"""The codec's malformed-input table, replayed against a running tabby-bgpd process.

Every case of ``bgp/wire/malformed_test.py`` goes through a real session: a scripted
peer (raw socket, our codec) establishes, announces a route, then sends the malformed
message. What a network engineer would see is asserted: the NOTIFICATION code/subcode
(and the session's routes gone), or for RFC 7606 treat-as-withdraw the route withdrawn
and the session still up, or for attribute-discard the route kept without the
attribute; and in every case the daemon's other session (to a second tabby-bgpd)
stays Established with its route, and /metrics counts what happened.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bgp.interop.common import loopback_net
from bgp.interop.harness import Metrics, Tabby, wait_for, workdir
from bgp.interop.scripted import Persona, Scripted
from bgp.wire import Negotiated, Notification, Open, Update, encode_message
from bgp.wire.attributes import COMMUNITIES
from bgp.wire.malformed_test import CASES, Discard, Reset, Withdraw
from bgp.wire.types import AS_SEQUENCE, AsPathSegment, PathAttributes, Prefix
from datastore.etcd_fixture import free_port

pytestmark = pytest.mark.timeout(120)

DAEMON_AS = 64512
HEALTHY_AS = 64513
CASE_AS = 65001  # the AS in the codec table's AS_PATHs and OPENs
PRIME_COMMUNITY = "1:1"  # on the route announced before each malformed UPDATE
PREFIX = "10.0.0.0/24"  # the prefix every malformed UPDATE in the table carries


IBGP = Persona(3, DAEMON_AS)
EBGP = Persona(4, CASE_AS)
OLD = Persona(5, CASE_AS, four_octet_as=False)
V4_ONLY = Persona(6, DAEMON_AS, families=((1, 1),))
OPENER = Persona(7, CASE_AS)  # sends the malformed OPEN as its first message
PERSONAS = (IBGP, EBGP, OLD, V4_ONLY, OPENER)


def persona_for(raw: bytes, ctx: Negotiated) -> Persona:
    """The session whose negotiated parameters match the case's decoding context."""
    if len(raw) > 18 and raw[18] == 1 and raw[:16] == b"\xff" * 16:
        return OPENER
    if not ctx.four_octet_as:
        return OLD
    if ctx.families == frozenset({(1, 1)}):
        return V4_ONLY
    return IBGP if ctx.ibgp else EBGP


@dataclass
class Lab:
    net: str
    daemon: Tabby
    healthy: Tabby
    port: int
    metrics_url: str
    healthy_since: int

    def addr(self, p: Persona) -> str:
        return self.net + str(p.host)

    def metrics(self) -> Metrics:
        return self.daemon.metrics(self.metrics_url)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    net = loopback_net()
    me, other = net + "1", net + "2"
    port, port2, mport = free_port(me), free_port(other), free_port(me)
    peers = f"\n  - {{address: {other}, asNumber: {HEALTHY_AS}, port: {port2}}}"
    for p in PERSONAS:
        peers += f"\n  - {{address: {net}{p.host}, asNumber: {p.asn}, passive: true}}"
    conf = f"""
localAS: {DAEMON_AS}
routerID: {me}
listenAddress: {me}
listenPort: {port}
holdTime: 30
connectRetryTime: 1
metricsPort: {mport}
metricsAddress: {me}
originate: [10.76.0.0/24]
peers:{peers}
"""
    healthy_conf = f"""
localAS: {HEALTHY_AS}
routerID: {other}
listenAddress: {other}
listenPort: {port2}
holdTime: 30
connectRetryTime: 1
originate: [10.77.0.0/24]
peers:
  - {{address: {me}, asNumber: {DAEMON_AS}, port: {port}}}
"""
    started: list[Tabby] = []
    with workdir() as d:
        try:
            daemon = Tabby(None, d, conf, "daemon").start()
            started.append(daemon)
            healthy = Tabby(None, d, healthy_conf, "healthy").start()
            started.append(healthy)
            wait_for("healthy session", lambda: daemon.established(other))
            wait_for("healthy route", lambda: "10.77.0.0/24" in daemon.rib())
            since = daemon.peers()[other].established_since_unix
            yield Lab(net, daemon, healthy, port, f"http://{me}:{mport}/metrics", since)
        finally:
            for t in reversed(started):
                t.stop()
            for log in sorted(d.glob("*.log")):  # shown by pytest only when a test fails
                print(f"===== {log.name}\n{log.read_text(errors='replace')[-4000:]}")


def prime_update(ctx: Negotiated) -> bytes:
    attrs = PathAttributes(
        origin=0,
        as_path=(AsPathSegment(AS_SEQUENCE, (CASE_AS,)),),
        next_hop=ipaddress.IPv4Address("192.0.2.1"),
        communities=(1 << 16 | 1,),
    )
    return encode_message(
        Update(attributes=attrs, nlri=[Prefix(ipaddress.ip_network(PREFIX))]), ctx
    )


def peer_idle(lab: Lab, addr: str) -> bool:
    p = lab.daemon.peers().get(addr)
    return p is not None and p.state in ("Idle", "Active", "Connect")


@pytest.mark.parametrize(
    ("raw", "ctx", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_message_through_the_daemon(lab: Lab, raw: bytes, ctx, expected) -> None:
    persona = persona_for(raw, ctx)
    addr = lab.addr(persona)
    wait_for(f"{addr} ready for a new connection", lambda: peer_idle(lab, addr), 10)
    before = lab.metrics()
    base = {"peer": addr}
    s = Scripted(lab.net, lab.port, persona)
    try:
        if persona is OPENER:
            s.until(Open)  # the daemon speaks first on a passive session
            s.send(raw)
        else:
            neg = s.establish()
            s.send(prime_update(neg))
            wait_for("primed route", lambda: PREFIX in lab.daemon.rib(peer=addr), 10)
            since = lab.daemon.peers()[addr].established_since_unix
            s.send(raw)
        if isinstance(expected, Reset):
            note = s.until(Notification)
            assert (note.code, note.subcode) == (expected.code, expected.subcode)
            if expected.data is not None:
                assert note.data == expected.data
            with pytest.raises((EOFError, ConnectionError)):
                while True:
                    s.next()  # the daemon closes the connection after its NOTIFICATION
            wait_for("routes of the reset session gone", lambda: not lab.daemon.rib(peer=addr))
            sent = "tabby_bgp_peer_notifications_sent_total"
            labels = {**base, "code": expected.code, "subcode": expected.subcode}
            assert lab.metrics().get(sent, **labels) == before.get(sent, **labels) + 1
        elif isinstance(expected, Withdraw):
            wait_for("treat-as-withdraw", lambda: PREFIX not in lab.daemon.rib(peer=addr), 10)
            s.quiet()
            assert lab.daemon.peers()[addr].established_since_unix == since
            taw = "tabby_bgp_peer_updates_treat_as_withdraw_total"
            assert lab.metrics().get(taw, **base) == before.get(taw, **base) + 1
            s.send(prime_update(neg))  # the session still carries routes
            wait_for("route back", lambda: PREFIX in lab.daemon.rib(peer=addr), 10)
        else:
            assert isinstance(expected, Discard)

            def replaced():
                e = lab.daemon.rib(peer=addr).get(PREFIX)
                return e is not None and PRIME_COMMUNITY not in e.communities and e

            entry = wait_for("route replaced by the malformed UPDATE", replaced, 10)
            assert entry.next_hop == "192.0.2.1" and entry.as_path == [CASE_AS]
            if expected.code == COMMUNITIES:  # RFC 7606 3.g: all but the first discarded
                assert list(entry.communities) == ["65001:100"]
            s.quiet()
            assert lab.daemon.peers()[addr].established_since_unix == since
            disc = "tabby_bgp_peer_attributes_discarded_total"
            labels = {**base, "attribute": expected.code}
            assert lab.metrics().get(disc, **labels) == before.get(disc, **labels) + 1
    finally:
        s.close()
    # The other session never noticed.
    healthy = lab.daemon.peers()[lab.net + "2"]
    assert healthy.state == "Established"
    assert healthy.established_since_unix == lab.healthy_since
    assert "10.77.0.0/24" in lab.daemon.rib()
    assert "10.76.0.0/24" in lab.healthy.rib()


def test_table_is_large_enough_and_every_persona_is_used() -> None:
    assert len(CASES) >= 40
    used = {persona_for(raw, ctx) for _, raw, ctx, _ in CASES}
    assert used == set(PERSONAS)
