"""The admin gRPC API (proto/bgp_admin.proto) on a unix socket: ListPeers, ListRib."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import grpc

from bgp.daemon.speaker import Speaker
from bgp.rib import Path
from bgp.wire.types import AFI_IPV4, AFI_IPV6, AS_SEQUENCE, AS_SET
from proto import bgp_admin_pb2 as pb
from proto import bgp_admin_pb2_grpc as pb_grpc

log = logging.getLogger("bgp.admin")

_ORIGINS = {0: "IGP", 1: "EGP", 2: "INCOMPLETE"}
_AFIS = {"": None, "ipv4": AFI_IPV4, "ipv6": AFI_IPV6}


def rib_entry(path: Path, best: bool) -> pb.RibEntry:
    a = path.attrs
    as_path = [asn for seg in a.as_path if seg.type in (AS_SEQUENCE, AS_SET) for asn in seg.asns]
    comms = [f"{c >> 16}:{c & 0xFFFF}" for c in a.communities]
    comms += [f"{x}:{y}:{z}" for x, y, z in a.large_communities]
    return pb.RibEntry(
        prefix=str(path.prefix.network),
        next_hop=str(a.next_hop) if a.next_hop is not None else "",
        as_path=as_path,
        origin=_ORIGINS.get(a.origin if a.origin is not None else 2, "INCOMPLETE"),
        local_pref=a.local_pref or 0,
        med=a.med or 0,
        communities=comms,
        from_peer="" if path.source.local else str(path.source.address),
        best=best,
        path_id=path.prefix.path_id,
        originator_id=str(a.originator_id or ""),
        cluster_list=[str(c) for c in a.cluster_list],
    )


SpeakerSource = Speaker | Callable[[], Speaker | None]


class AdminService(pb_grpc.BgpAdminServicer):
    """Serves one speaker, or whichever one a callable returns (cluster mode replaces its
    speaker when the node's AS or router id changes; none runs before Felix says)."""

    def __init__(self, speaker: SpeakerSource) -> None:
        self._source = speaker

    @property
    def speaker(self) -> Speaker | None:
        return self._source if isinstance(self._source, Speaker) else self._source()

    async def ListPeers(self, request, context):
        reply = pb.ListPeersReply()
        speaker = self.speaker
        if speaker is None:
            return reply
        for peer in speaker.peers.values():
            rp = speaker.rib.peers.get(peer.key)
            reply.peers.append(
                pb.PeerStatus(
                    address=peer.name,
                    as_number=peer.config.as_number,
                    type=peer.config.kind or ("dynamic" if peer.config.dynamic else "static"),
                    state=str(peer.state),
                    established_since_unix=int(peer.established_since),
                    prefixes_received=len(rp.adj_in) if rp else 0,
                    prefixes_accepted=rp.accepted if rp else 0,
                    prefixes_advertised=len(rp.adj_out) if rp else 0,
                    last_error=peer.last_error
                    or ("" if peer.established else peer.session.fsm.last_error),
                    router_id=str(peer.router_id or ""),
                )
            )
        return reply

    async def ListRib(self, request, context):
        if request.afi not in _AFIS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"afi: must be ipv4, ipv6 or empty, got {request.afi!r}",
            )
        afi = _AFIS[request.afi]
        reply = pb.ListRibReply()
        speaker = self.speaker
        if speaker is None:
            return reply
        rib = speaker.rib
        if request.peer:
            rp = rib.peers.get(request.peer)
            if rp is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"peer: no peer {request.peer!r}")
            for prefix, path in sorted(rp.adj_in.items()):
                if afi is None or prefix.afi == afi:
                    reply.entries.append(rib_entry(path, rib.best.get(prefix) is path))
            return reply
        for dest in sorted(rib.best):
            if afi is not None and dest.afi != afi:
                continue
            for i, path in enumerate(rib.loc[dest]):
                reply.entries.append(rib_entry(path, i == 0))
        return reply


async def serve_admin(speaker: SpeakerSource, path: str) -> grpc.aio.Server:
    """Start the admin server on unix socket ``path`` (replacing a stale socket file)."""
    if os.path.exists(path):
        os.unlink(path)
    server = grpc.aio.server()
    pb_grpc.add_BgpAdminServicer_to_server(AdminService(speaker), server)
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    log.info("admin api listening socket=%s", path)
    return server
