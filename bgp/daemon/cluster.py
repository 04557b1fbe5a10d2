"""Cluster mode, the pure part: Felix's calculation-graph stream in, a ``DaemonConfig`` out.

``StreamView`` folds the BGP-relevant messages of one subscription (BGPConfigUpdate,
BGPPeerUpdate/Remove, RouteUpdate/Remove with ``advertise``) into plain state;
``daemon_config`` turns that state into the speaker's configuration; ``needs_restart``
says whether the speaker can follow a change live (peers, originated prefixes) or has
to be rebuilt (AS, router id, listen port, cluster id). No I/O here: the loop that
feeds it is ``bgp.daemon.felix_client``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from dataclasses import dataclass, field

from bgp.daemon.config import (
    ConfigError,
    DaemonConfig,
    GracefulRestart,
    Originate,
    PeerConfig,
)
from proto import calc_pb2

log = logging.getLogger("bgp.cluster")

DEFAULT_PORT = 179
PEER_KINDS = {calc_pb2.MESH: "mesh", calc_pb2.NODE: "node", calc_pb2.GLOBAL: "global"}


@dataclass
class StreamView:
    """What one subscription has said so far about this node's BGP speaker."""

    bgp: calc_pb2.BGPConfigUpdate | None = None
    peers: dict[str, calc_pb2.BGPPeerUpdate] = field(default_factory=dict)
    advertise: dict[str, calc_pb2.RouteUpdate] = field(default_factory=dict)
    in_sync: bool = False

    def apply(self, msg: calc_pb2.ToDataplane) -> bool:
        """Fold one message in; True when it changed something the speaker cares about."""
        kind = msg.WhichOneof("payload")
        if kind == "in_sync":
            self.in_sync = True
            return True
        if kind == "bgp_config_update":
            changed = self.bgp != msg.bgp_config_update
            self.bgp = msg.bgp_config_update
            return changed
        if kind == "bgp_peer_update":
            u = msg.bgp_peer_update
            changed = self.peers.get(u.id) != u
            self.peers[u.id] = u
            return changed
        if kind == "bgp_peer_remove":
            return self.peers.pop(msg.bgp_peer_remove.id, None) is not None
        if kind == "route_update":
            r = msg.route_update
            if r.advertise:
                changed = self.advertise.get(r.dst) != r
                self.advertise[r.dst] = r
                return changed
            return self.advertise.pop(r.dst, None) is not None
        if kind == "route_remove":
            return self.advertise.pop(msg.route_remove.dst, None) is not None
        return False


@dataclass(frozen=True)
class Settings:
    """What the command line adds to what Felix says."""

    listen_address: str = "0.0.0.0"  # "node": bind to the node's own IPv4 address
    admin_socket: str | None = None
    hold_time: int = 90
    connect_retry_time: int = 5
    graceful_restart_time: int = 120


def _ip(where: str, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def peer_config(u: calc_pb2.BGPPeerUpdate, cfg: calc_pb2.BGPConfigUpdate) -> PeerConfig:
    """One BGPPeerUpdate as a speaker peer. A peer that is a cluster node listens on the
    cluster's port (BGPConfiguration listenPort), like this node does."""
    where = f"BGPPeerUpdate({u.id}).peer_ip"
    if u.port:
        port = u.port
    elif u.peer_node:
        port = cfg.listen_port or DEFAULT_PORT
    else:
        port = DEFAULT_PORT
    return PeerConfig(
        address=_ip(where, u.peer_ip),
        as_number=u.as_number or cfg.as_number,
        port=port,
        password=u.password or None,
        route_reflector_client=u.route_reflector_client,
        keep_original_next_hop=u.keep_original_next_hop,
        restart_time=u.max_restart_time or None,  # 0: the --graceful-restart-time default
        kind=PEER_KINDS.get(u.type, ""),
    )


def daemon_config(view: StreamView, settings: Settings) -> DaemonConfig | None:
    """The speaker's configuration, or None while this node has no BGP config (no Node
    resource with a BGP section yet). ConfigError names the field at fault."""
    cfg = view.bgp
    if cfg is None:
        return None
    if not cfg.as_number:
        raise ConfigError("BGPConfigUpdate.as_number: required")
    if not cfg.router_id:
        raise ConfigError("BGPConfigUpdate.router_id: required (the node has no IPv4 address)")
    try:
        router_id = ipaddress.IPv4Address(cfg.router_id)
    except ValueError as e:
        raise ConfigError(f"BGPConfigUpdate.router_id: {e}") from None
    cluster_id = None
    if cfg.rr_cluster_id:
        try:
            cluster_id = ipaddress.IPv4Address(cfg.rr_cluster_id)
        except ValueError as e:
            raise ConfigError(f"BGPConfigUpdate.rr_cluster_id: {e}") from None
    node_v4 = ipaddress.IPv4Address(cfg.node_ipv4) if cfg.node_ipv4 else None
    node_v6 = ipaddress.IPv6Address(cfg.node_ipv6) if cfg.node_ipv6 else None
    own = {a for a in (node_v4, node_v6) if a is not None}

    peers: list[PeerConfig] = []
    seen: dict[str, str] = {}
    for pid in sorted(view.peers):
        u = view.peers[pid]
        try:
            pc = peer_config(u, cfg)
        except ConfigError as e:
            log.warning("bgp peer ignored id=%s error=%s", pid, e)
            continue
        key = str(pc.address)
        if pc.address in own:
            log.warning("bgp peer ignored id=%s reason='this node itself'", pid)
            continue
        if key in seen:
            # The speaker keys peers by address: one session per address.
            log.warning("bgp peer ignored id=%s reason='address already used by %s'", pid,
                        seen[key])  # fmt: skip
            continue
        seen[key] = pid
        peers.append(pc)

    originate = tuple(
        Originate(ipaddress.ip_network(dst, strict=False)) for dst in sorted(view.advertise)
    )
    listen = settings.listen_address
    if listen == "node":
        if node_v4 is None:
            raise ConfigError("listen address 'node': the node has no IPv4 address")
        listen = str(node_v4)
    return DaemonConfig(
        local_as=cfg.as_number,
        router_id=router_id,
        listen_address=listen,
        listen_port=cfg.listen_port or DEFAULT_PORT,
        peers=tuple(peers),
        cluster_id=cluster_id,
        originate=originate,
        graceful_restart=GracefulRestart(True, settings.graceful_restart_time),
        admin_socket=settings.admin_socket,
        hold_time=settings.hold_time,
        connect_retry_time=settings.connect_retry_time,
        # Originated routes (this node's blocks) point at the node's own address.
        next_hop_v4=node_v4,
        next_hop_v6=node_v6,
    )


def needs_restart(old: DaemonConfig, new: DaemonConfig) -> bool:
    """True when ``new`` differs from ``old`` in more than peers and originated routes."""
    strip = {"peers": (), "originate": ()}
    return dataclasses.replace(old, **strip) != dataclasses.replace(new, **strip)
