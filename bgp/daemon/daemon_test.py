"""The asyncio speaker over real loopback TCP: two Tabby speakers, or a Tabby speaker and
a scripted peer speaking real BGP bytes (our codec) to provoke error paths."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket

import pytest

from bgp.daemon.config import GracefulRestart as GracefulRestartConfig
from bgp.daemon.speaker import RouteUpdate, Speaker
from bgp.daemon.testing import speaker, until
from bgp.wire import (
    Keepalive,
    MessageReader,
    Negotiated,
    Notification,
    Open,
    Update,
    encode_message,
)
from bgp.wire.capabilities import GracefulRestart
from bgp.wire.types import AS_SEQUENCE, AsPathSegment, PathAttributes, Prefix

pytestmark = pytest.mark.timeout(60)


def test_two_speakers_exchange_routes_stream_them_and_withdraw():
    async def main():
        peer_a = {"address": "127.0.0.1", "asNumber": 65001, "passive": True}
        b = speaker(65002, "127.0.0.2", [peer_a], originate=["10.2.0.0/24"])
        await b.start()
        a = speaker(
            65001,
            "127.0.0.1",
            [{"address": "127.0.0.2", "asNumber": 65002, "port": b.listen_port}],
            originate=["10.1.0.0/24", "10.1.1.0/24"],
        )
        stream = a.routes()
        try:
            await a.start()
            await until("A learns 10.2.0.0/24", lambda: len(a.rib.best) == 3)
            await until("B learns both", lambda: len(b.rib.best) == 3)
            seen: dict = {}
            while "10.2.0.0/24" not in seen or not seen["10.2.0.0/24"]:
                u: RouteUpdate = await asyncio.wait_for(anext(stream), 5)
                seen[str(u.dst)] = u.next_hops
            assert seen["10.2.0.0/24"] == (ipaddress.ip_address("127.0.0.2"),)
            best = b.rib.best[Prefix(ipaddress.ip_network("10.1.0.0/24"))]
            assert best.attrs.as_path == (AsPathSegment(AS_SEQUENCE, (65001,)),)
            assert str(best.attrs.next_hop) == "127.0.0.1"
            # Withdraw on B (as SIGHUP does) and watch it leave A's table and stream.
            b.set_originate(())
            u = await asyncio.wait_for(anext(stream), 5)
            assert (str(u.dst), u.next_hops) == ("10.2.0.0/24", ())
            assert Prefix(ipaddress.ip_network("10.2.0.0/24")) not in a.rib.best
        finally:
            await stream.aclose()
            await a.stop()
            await b.stop()
        # B saw A's Cease/Administrative Shutdown.
        assert b.peers["127.0.0.1"].last_error == "received Cease/Administrative Shutdown"

    asyncio.run(main())


def test_wrong_peer_as_is_refused_with_bad_peer_as():
    async def main():
        b = speaker(
            65002, "127.0.0.2", [{"address": "127.0.0.1", "asNumber": 65099, "passive": True}]
        )
        await b.start()
        a = speaker(
            65001, "127.0.0.1", [{"address": "127.0.0.2", "asNumber": 65002, "port": b.listen_port}]
        )
        try:
            await a.start()
            peer = a.peers["127.0.0.2"]
            await until("A hears Bad Peer AS", lambda: "Bad Peer AS" in peer.last_error)
            assert peer.last_error == "received OPEN Message Error/Bad Peer AS"
            assert b.peers["127.0.0.1"].last_error == "sent OPEN Message Error/Bad Peer AS"
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())


class ScriptedPeer:
    """A raw TCP client that speaks BGP with our codec, to drive the speaker's error paths."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.msgs = MessageReader(ctx=Negotiated())

    @classmethod
    async def connect(cls, port: int, source: str = "127.0.0.3") -> ScriptedPeer:
        sock = socket.socket()
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return cls(*await asyncio.open_connection(sock=sock))

    def send(self, msg) -> None:
        self.writer.write(encode_message(msg, Negotiated()))

    async def next(self, timeout: float = 10):
        while True:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise EOFError
            got = self.msgs.feed(data)
            if got:
                return got[0] if len(got) == 1 else got

    async def until(self, kind, timeout: float = 10):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            got = await self.next(deadline - loop.time())
            for m in got if isinstance(got, list) else [got]:
                if isinstance(m, kind):
                    return m


def passive_speaker(**extra) -> Speaker:
    peer = {"address": "127.0.0.3", "asNumber": 65003, "passive": True}
    peer.update(extra)
    return speaker(65001, "127.0.0.1", [peer])


def scripted_open(hold: int = 3) -> Open:
    return Open.for_speaker(65003, "3.3.3.3", hold_time=hold)


def test_hold_timer_expiry_sends_notification_4():
    async def main():
        s = passive_speaker()
        await s.start()
        try:
            p = await ScriptedPeer.connect(s.listen_port)
            p.send(scripted_open(hold=3))
            p.send(Keepalive())
            await p.until(Keepalive)
            await until("Established", lambda: str(s.peers["127.0.0.3"].state) == "Established")
            # Now stay silent: after 3 s the speaker must give up with Hold Timer Expired.
            note = await p.until(Notification, timeout=6)
            assert (note.code, note.subcode) == (4, 0)
            assert s.peers["127.0.0.3"].last_error == "sent Hold Timer Expired"
        finally:
            await s.stop()

    asyncio.run(main())


def test_keepalive_before_open_is_fsm_error_in_opensent():
    async def main():
        s = passive_speaker()
        await s.start()
        try:
            p = await ScriptedPeer.connect(s.listen_port)
            await p.until(Open)
            p.send(Keepalive())
            note = await p.until(Notification)
            assert (note.code, note.subcode) == (5, 1)
        finally:
            await s.stop()

    asyncio.run(main())


def test_max_prefixes_exceeded_sends_cease_1_and_drops_routes():
    async def main():
        s = passive_speaker(maxPrefixes=2)
        await s.start()
        try:
            p = await ScriptedPeer.connect(s.listen_port)
            p.send(scripted_open(hold=30))
            p.send(Keepalive())
            await p.until(Keepalive)
            attrs = PathAttributes(
                origin=0,
                as_path=(AsPathSegment(AS_SEQUENCE, (65003,)),),
                next_hop=ipaddress.IPv4Address("127.0.0.3"),
            )
            nets = [Prefix(ipaddress.ip_network(f"10.9.{i}.0/24")) for i in range(3)]
            p.send(Update(attributes=attrs, nlri=nets[:2]))
            await until("2 routes", lambda: len(s.rib.best) == 2)
            p.send(Update(attributes=attrs, nlri=nets[2:]))
            note = await p.until(Notification)
            assert (note.code, note.subcode) == (6, 1)
            await until("routes flushed", lambda: not s.rib.best)
        finally:
            await s.stop()

    asyncio.run(main())


def test_unknown_peer_is_rejected_with_cease_connection_rejected():
    async def main():
        s = speaker(65001, "127.0.0.1", [])
        await s.start()
        try:
            p = await ScriptedPeer.connect(s.listen_port, source="127.0.0.9")
            note = await p.until(Notification)
            assert (note.code, note.subcode) == (6, 5)
        finally:
            await s.stop()

    asyncio.run(main())


def test_simultaneous_connect_ends_with_one_stable_session():
    async def main():
        # Both sides active with tiny retry times: connections cross, collision
        # resolution must leave exactly one Established session that stays up.
        a_port = socket.socket()
        a_port.bind(("127.0.0.1", 0))
        pa = a_port.getsockname()[1]
        a_port.close()
        b = speaker(65002, "127.0.0.2", [{"address": "127.0.0.1", "asNumber": 65001, "port": pa}])
        await b.start()
        a = speaker(
            65001,
            "127.0.0.1",
            [{"address": "127.0.0.2", "asNumber": 65002, "port": b.listen_port}],
            listenPort=pa,
        )
        try:
            await a.start()
            pa_, pb_ = a.peers["127.0.0.2"], b.peers["127.0.0.1"]
            await until("both Established", lambda: pa_.established and pb_.established)
            since = (pa_.established_since, pb_.established_since)
            await asyncio.sleep(2)
            assert (pa_.established_since, pb_.established_since) == since
            assert pa_.other is None and pb_.other is None
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())


def test_per_peer_restart_time_bounds_how_long_a_crashed_peers_routes_are_kept():
    """Cluster mode's BGPPeer maxRestartTime: the peer advertises 120 s, we keep its
    stale routes for the 2 s configured for it (the speaker default would be 120 s)."""

    async def main():
        base = passive_speaker().config
        peer = dataclasses.replace(base.peers[0], restart_time=2)
        s = Speaker(dataclasses.replace(
            base, peers=(peer,), graceful_restart=GracefulRestartConfig(True, 120)))  # fmt: skip
        await s.start()
        try:
            p = await ScriptedPeer.connect(s.listen_port)
            gr = GracefulRestart(restart_time=120, families=((1, 1, True),))
            p.send(Open.for_speaker(65003, "3.3.3.3", hold_time=30, graceful_restart=gr))
            p.send(Keepalive())
            await p.until(Keepalive)
            attrs = PathAttributes(
                origin=0,
                as_path=(AsPathSegment(AS_SEQUENCE, (65003,)),),
                next_hop=ipaddress.IPv4Address("127.0.0.3"),
            )
            p.send(Update(attributes=attrs, nlri=[Prefix(ipaddress.ip_network("10.9.0.0/24"))]))
            await until("route learned", lambda: len(s.rib.best) == 1)
            p.writer.transport.abort()  # a crash: no NOTIFICATION, graceful restart applies
            loop = asyncio.get_running_loop()
            await until("session down", lambda: s.peers["127.0.0.3"].established is None)
            down = loop.time()
            assert len(s.rib.best) == 1, "stale route dropped at once"
            await until("stale route swept", lambda: not s.rib.best, timeout=10)
            assert loop.time() - down >= 1.0  # kept for a while, then gone long before 120 s
        finally:
            await s.stop()

    asyncio.run(main())
