"""This node's BGP speaker: its own settings and whom it peers with.

Peers come from three places, deduplicated by peer id (IP, plus ":port" when not
179); an explicit BGPPeer beats the mesh, and between two BGPPeers the one whose
name sorts first wins, so the result does not depend on arrival order:

* the node-to-node mesh (unless the default BGPConfiguration disables it): every
  other node with an address of the same family. As in Calico, route reflectors
  stand outside the mesh: a reflector has no mesh peers and is no one's mesh peer;
  it peers through BGPPeer resources (``peerSelector``);
* BGPPeer resources that apply to this node (``node`` names it, ``nodeSelector``
  selects it, or neither is set: a global peer) towards ``peerIP`` ...
* ... or towards every node ``peerSelector`` selects (never this node itself); and,
  as the other end of those sessions, a node that ``peerSelector`` selects peers with
  every node the BGPPeer applies to.

Route reflection: when this node has a cluster id and the peer node has none, the
peer is this node's client; reflectors sharing a cluster id are plain peers.
"""

from __future__ import annotations

import ipaddress
import logging

from felix.calc import selector
from felix.calc.state import ClusterState, parse_interface
from model.durations import parse_duration
from model.resources import BGPConfiguration, BGPPeerSpec, Node
from proto import calc_pb2

log = logging.getLogger(__name__)

DEFAULT_AS = 64512
DEFAULT_PORT = 179


def default_config(state: ClusterState) -> BGPConfiguration | None:
    return state.bgp_configs.get("default")


def cluster_as(state: ClusterState) -> int:
    cfg = default_config(state)
    return (cfg.spec.as_number if cfg else None) or DEFAULT_AS


def node_as(state: ClusterState, node: Node) -> int:
    return (node.spec.bgp.as_number if node.spec.bgp else None) or cluster_as(state)


def mesh_enabled(state: ClusterState) -> bool:
    cfg = default_config(state)
    return cfg is None or cfg.spec.node_to_node_mesh_enabled is not False


def _cluster_id(node: Node) -> str:
    return node.spec.bgp.route_reflector_cluster_id if node.spec.bgp else ""


def bgp_config(state: ClusterState, hostname: str) -> calc_pb2.BGPConfigUpdate | None:
    """None until this node's Node resource (with a BGP section) is known."""
    node = state.nodes.get(hostname)
    if node is None or node.spec.bgp is None:
        return None
    cfg = default_config(state)
    v4 = parse_interface(node.spec.bgp.ipv4_address)
    v6 = parse_interface(node.spec.bgp.ipv6_address)
    return calc_pb2.BGPConfigUpdate(
        as_number=node_as(state, node),
        router_id=str(v4.ip) if v4 else "",
        node_ipv4=str(v4.ip) if v4 else "",
        node_ipv6=str(v6.ip) if v6 else "",
        listen_port=(cfg.spec.listen_port if cfg else None) or DEFAULT_PORT,
        node_to_node_mesh=mesh_enabled(state),
        rr_cluster_id=_cluster_id(node),
        log_severity=cfg.spec.log_severity_screen if cfg else "Info",
    )


def restart_seconds(text: str) -> int:
    """A BGPPeer's ``maxRestartTime`` in whole seconds for the stream; 0 when unset.

    ValueError for text that is not a Go duration or is negative (the field is unsigned).
    """
    if not text.strip():
        return 0
    seconds = parse_duration(text)
    if seconds < 0:
        raise ValueError(f"duration {text!r} must not be negative")
    return int(seconds)


def split_peer_ip(text: str) -> tuple[str, int]:
    """ "ip", "ip:port", "[v6]:port" or bare v6 -> (ip, port or 0). ValueError if malformed."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 0
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    else:
        host, port = text, 0
    ip = ipaddress.ip_address(host)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return str(ip), (0 if port == DEFAULT_PORT else port)


def peer_id(ip: str, port: int) -> str:
    if not port:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _node_ips(node: Node) -> list[str]:
    out = []
    if node.spec.bgp is not None:
        for text in (node.spec.bgp.ipv4_address, node.spec.bgp.ipv6_address):
            addr = parse_interface(text)
            if addr is not None:
                out.append(str(addr.ip))
    return out


def _local_families(node: Node) -> set[int]:
    return {ipaddress.ip_address(ip).version for ip in _node_ips(node)}


def _rr_client(local: Node, peer: Node | None) -> bool:
    return peer is not None and bool(_cluster_id(local)) and not _cluster_id(peer)


def _applies(spec_node: str, spec_selector: str, hostname: str, labels: dict[str, str]) -> bool:
    if spec_node:
        return spec_node == hostname
    if spec_selector:
        return selector.matches(spec_selector, labels)
    return True


Target = tuple[str, int, Node | None, int]  # (ip, port, node, AS)


def _selected_nodes(
    state: ClusterState, hostname: str, families: set[int], peer_selector: str
) -> list[Target]:
    """Every other node ``peer_selector`` picks, by each address of a shared family."""
    out: list[Target] = []
    for name in sorted(state.nodes):
        node = state.nodes[name]
        if name != hostname and selector.matches(peer_selector, node.metadata.labels):
            out += [
                (ip, 0, node, node_as(state, node))
                for ip in _node_ips(node)
                if ipaddress.ip_address(ip).version in families
            ]
    return out


def _reverse_targets(
    state: ClusterState, hostname: str, families: set[int], spec: BGPPeerSpec
) -> list[Target]:
    """The nodes a peerSelector-BGPPeer applies to, seen from a node it selects."""
    out: list[Target] = []
    for name in sorted(state.nodes):
        node = state.nodes[name]
        if name == hostname:
            continue
        if _applies(spec.node, spec.node_selector, name, node.metadata.labels):
            out += [
                (ip, 0, node, node_as(state, node))
                for ip in _node_ips(node)
                if ipaddress.ip_address(ip).version in families
            ]
    return out


def bgp_peers(state: ClusterState, hostname: str) -> dict[str, calc_pb2.BGPPeerUpdate]:
    local = state.nodes.get(hostname)
    if local is None or local.spec.bgp is None:
        return {}
    families = _local_families(local)
    peers: dict[str, calc_pb2.BGPPeerUpdate] = {}

    # Explicit peers first: the first (by resource name) to claim an id keeps it.
    node_by_ip = {ip: n for n in state.nodes.values() for ip in _node_ips(n)}
    for res in sorted(state.bgp_peers.values(), key=lambda p: p.name):
        spec = res.spec
        labels = local.metadata.labels
        try:
            restart = restart_seconds(spec.max_restart_time)
            ours = _applies(spec.node, spec.node_selector, hostname, labels)
            picked = bool(spec.peer_selector) and selector.matches(spec.peer_selector, labels)
        except ValueError as exc:
            log.warning("bgp peer ignored bgppeer=%s error=%s", res.name, exc)
            continue
        targets: list[Target] = []
        if ours and spec.peer_ip:
            try:
                ip, port = split_peer_ip(spec.peer_ip)
            except ValueError as exc:
                log.warning("bgp peer ignored bgppeer=%s field=peerIP error=%s", res.name, exc)
                continue
            targets.append((ip, port, node_by_ip.get(ip), spec.as_number or 0))
        if ours and spec.peer_selector:
            targets += _selected_nodes(state, hostname, families, spec.peer_selector)
        if picked:
            # A session has two ends: a node the peerSelector picks peers back with every
            # node the BGPPeer applies to (Calico configures both sides the same way).
            targets += _reverse_targets(state, hostname, families, spec)
        common = {
            "type": calc_pb2.GLOBAL if not (spec.node or spec.node_selector) else calc_pb2.NODE,
            "password": spec.password,
            "keep_original_next_hop": spec.keep_original_next_hop,
            "max_restart_time": restart,
            "source": f"BGPPeer({res.name})",
        }
        for ip, port, node, asn in targets:
            pid = peer_id(ip, port)
            if pid in peers:
                continue
            peers[pid] = calc_pb2.BGPPeerUpdate(
                id=pid,
                peer_ip=ip,
                port=port,
                as_number=asn,
                peer_node=node.name if node else "",
                route_reflector_client=_rr_client(local, node),
                **common,
            )

    if mesh_enabled(state) and not _cluster_id(local):
        for name in sorted(state.nodes):
            node = state.nodes[name]
            if name == hostname or _cluster_id(node):
                continue
            for ip in _node_ips(node):
                if ipaddress.ip_address(ip).version not in families or ip in peers:
                    continue
                peers[ip] = calc_pb2.BGPPeerUpdate(
                    id=ip,
                    peer_ip=ip,
                    as_number=node_as(state, node),
                    type=calc_pb2.MESH,
                    peer_node=name,
                    source="mesh",
                )
    return peers
