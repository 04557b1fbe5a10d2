"""The BGP speaker: listener, peers (configured and dynamic), the RIB, originated routes,
and the stream of selected routes (``routes()``, which cluster mode pushes to Felix).
Runs on one asyncio loop; every mode builds one from a ``DaemonConfig``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bgp.daemon.config import DaemonConfig, Originate, PeerConfig
from bgp.daemon.peer import Peer
from bgp.daemon.sockopts import set_md5, set_ttl
from bgp.rib import LocalSettings, Path, Rib
from bgp.wire import Notification, encode_message, errors
from bgp.wire.types import ORIGIN_IGP, PathAttributes, Prefix

log = logging.getLogger("bgp.speaker")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class RouteUpdate:
    """A selected route for the dataplane: empty ``next_hops`` means withdrawn."""

    dst: Network
    next_hops: tuple[IPAddress, ...]
    peer: str = ""  # where the selected path came from (empty: originated here)


def _unmap(addr: IPAddress) -> IPAddress:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class Speaker:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.rib = Rib(LocalSettings(config.local_as, config.router_id, config.cluster_id))
        self.peers: dict[str, Peer] = {}
        self._server: asyncio.AbstractServer | None = None
        self._sock: socket.socket | None = None
        self._subscribers: list[asyncio.Queue[RouteUpdate]] = []
        self.rib.pending_listeners.append(self._on_pending)
        self.rib.best_listeners.append(self._on_best)

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self.set_originate(self.config.originate)
        await self._listen()
        for pc in self.config.peers:
            self.add_peer(pc).start()
        log.info(
            "speaker started local_as=%d router_id=%s peers=%d listen=%s:%d",
            self.config.local_as,
            self.config.router_id,
            len(self.config.peers),
            self.config.listen_address,
            self.listen_port,
        )

    async def stop(self) -> None:
        for peer in list(self.peers.values()):
            peer.stop()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        # Let the NOTIFICATIONs reach the wire before the loop ends.
        await asyncio.sleep(0.05)

    def set_originate(self, originate: tuple[Originate, ...]) -> None:
        """Make the originated routes exactly ``originate`` (start-up and SIGHUP reload)."""
        wanted = {
            Prefix(o.prefix): PathAttributes(
                origin=ORIGIN_IGP, communities=o.communities, med=o.med, next_hop=o.next_hop
            )
            for o in originate
        }
        for prefix in [p for p in self.rib.originated if p not in wanted]:
            self.rib.withdraw_originated(prefix)
            log.info("route withdrawn prefix=%s", prefix)
        for prefix, attrs in wanted.items():
            old = self.rib.originated.get(prefix)
            if old is None or old.attrs != attrs:
                self.rib.originate(prefix, attrs)
                log.info("route originated prefix=%s", prefix)

    def set_peers(self, peers: tuple[PeerConfig, ...]) -> None:
        """Make the configured peers exactly ``peers``, live (cluster mode follows Felix).

        An unchanged peer keeps its session; a changed one is reset (Cease/Administrative
        Reset) and reconnects with its new settings; a removed one gets Cease/Peer
        De-configured and its routes leave the RIB. Dynamic peers are left alone unless
        a configured peer takes their address."""
        wanted = {str(pc.address): pc for pc in peers}
        for key, peer in list(self.peers.items()):
            want = wanted.get(key)
            if want is None:
                if not peer.config.dynamic:
                    self._drop_peer(peer, errors.CEASE_PEER_DECONFIGURED, "removed")
            elif want != peer.config:
                self._drop_peer(peer, errors.CEASE_ADMIN_RESET, "changed")
        self.config = dataclasses.replace(self.config, peers=tuple(peers))
        for key, pc in wanted.items():
            if key in self.peers:
                continue
            sock = self._sock
            v6_ok = sock is not None and sock.family == socket.AF_INET6
            if pc.password and sock is not None and (v6_ok or pc.address.version == 4):
                set_md5(sock, pc.address, pc.password)
            self.add_peer(pc).start()
            log.info("peer added peer=%s asn=%d kind=%s", key, pc.as_number, pc.kind or "static")

    def _drop_peer(self, peer: Peer, subcode: int, why: str) -> None:
        peer.stop(subcode)
        self.remove_peer(peer)
        if self._sock is not None and peer.config.password and not peer.config.dynamic:
            with contextlib.suppress(OSError):
                set_md5(self._sock, peer.config.address, None)
        log.info("peer %s peer=%s", why, peer.name)

    @property
    def listen_port(self) -> int:
        if self._sock is None:
            return self.config.listen_port
        return self._sock.getsockname()[1]

    def add_peer(self, pc: PeerConfig) -> Peer:
        peer = Peer(self, pc)
        self.peers[peer.key] = peer
        return peer

    def remove_peer(self, peer: Peer) -> None:
        if self.peers.get(peer.key) is peer:
            del self.peers[peer.key]
            self.rib.remove_peer(peer.key)
            log.info("peer removed peer=%s dynamic=%s", peer.name, peer.config.dynamic)

    # ---- listening ------------------------------------------------------------------

    async def _listen(self) -> None:
        addr = ipaddress.ip_address(self.config.listen_address)
        family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        for pc in self.config.peers:
            if pc.password and (family == socket.AF_INET6 or pc.address.version == 4):
                set_md5(sock, pc.address, pc.password)
        for lr in self.config.listen_ranges:
            if lr.password and (family == socket.AF_INET6 or lr.cidr.version == 4):
                set_md5(sock, lr.cidr, lr.password)
        sock.bind((str(addr), self.config.listen_port))
        sock.listen(128)
        sock.setblocking(False)
        self._sock = sock
        self._server = await asyncio.start_server(self._accept, sock=sock)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        addr = _unmap(ipaddress.ip_address(peername[0]))
        peer = self.peers.get(str(addr))
        if peer is None:
            lr = next((r for r in self.config.listen_ranges if addr in r.cidr), None)
            if lr is None:
                log.warning("connection rejected peer=%s reason='not configured'", addr)
                note = Notification(errors.CEASE, errors.CEASE_CONNECTION_REJECTED)
                writer.write(encode_message(note))
                writer.close()
                return
            pc = PeerConfig(
                address=addr,
                as_number=lr.as_number,
                password=lr.password,
                passive=True,
                dynamic=True,
            )
            peer = self.add_peer(pc)
            log.info("dynamic peer accepted peer=%s range=%s asn=%d", addr, lr.cidr, lr.as_number)
            peer.start()
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                set_ttl(sock, peer.ttl)  # type: ignore[arg-type]
        peer.accept(reader, writer)

    # ---- RIB hooks and the route stream ---------------------------------------------

    def _on_pending(self, key: str) -> None:
        peer = self.peers.get(key)
        if peer is not None:
            peer.wake()

    def _on_best(self, prefix: Prefix, best: Path | None) -> None:
        if not self._subscribers:
            return
        update = RouteUpdate(prefix.network, _next_hops(best), _source(best))
        for q in self._subscribers:
            q.put_nowait(update)

    async def routes(self) -> AsyncIterator[RouteUpdate]:
        """Selected routes learned from peers: first the current table, then changes.

        Locally originated routes appear with no next hop (nothing to install)."""
        q: asyncio.Queue[RouteUpdate] = asyncio.Queue()
        for dest, best in self.rib.best.items():
            q.put_nowait(RouteUpdate(dest.network, _next_hops(best), _source(best)))
        self._subscribers.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._subscribers.remove(q)


def _next_hops(best: Path | None) -> tuple[IPAddress, ...]:
    if best is None or best.source.local or best.attrs.next_hop is None:
        return ()
    return (best.attrs.next_hop,)


def _source(best: Path | None) -> str:
    if best is None or best.source.local or best.source.address is None:
        return ""
    return str(best.source.address)
