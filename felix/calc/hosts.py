"""Per-node facts every consumer needs: HostMetadata and VXLAN tunnel endpoints."""

from __future__ import annotations

from felix.calc.state import parse_interface
from model.resources import Node
from proto import calc_pb2


def host_metadata(node: Node) -> calc_pb2.HostMetadataUpdate:
    bgp = node.spec.bgp
    msg = calc_pb2.HostMetadataUpdate(hostname=node.name, labels=dict(node.metadata.labels))
    if bgp is not None:
        msg.ipv4_addr = bgp.ipv4_address
        msg.ipv6_addr = bgp.ipv6_address
        msg.as_number = bgp.as_number or 0
        msg.rr_cluster_id = bgp.route_reflector_cluster_id
    return msg


def vtep(node: Node) -> calc_pb2.VXLANTunnelEndpointUpdate | None:
    """A VTEP needs the tunnel address, the MAC and the underlay address; else none."""
    spec = node.spec
    parent = parse_interface(spec.bgp.ipv4_address) if spec.bgp else None
    if not (spec.ipv4_vxlan_tunnel_addr and spec.vxlan_tunnel_mac_addr and parent):
        return None
    return calc_pb2.VXLANTunnelEndpointUpdate(
        node=node.name,
        mac=spec.vxlan_tunnel_mac_addr,
        ipv4_addr=spec.ipv4_vxlan_tunnel_addr,
        parent_device_ip=str(parent.ip),
    )
