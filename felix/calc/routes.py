"""Which routes this node needs, per source: one IPAM block, or one workload endpoint.

* a block affine to this node -> LOCAL_BLOCK (the BGP daemon advertises it unless
  its pool has disableBGPExport; the dataplane blackholes the unused part);
* a block affine to another node -> REMOTE_BLOCK via that node, encapsulated per
  the pool's mode (``encap_for``);
* a WEP on this node -> LOCAL_WORKLOAD /32 or /128 on its veth; advertised when the
  IP is not covered by this node's own block (a borrowed IP);
* a WEP on another node whose IP is not covered by that node's own block
  (borrowed from another node's block, or in no affine block) -> REMOTE_WORKLOAD to
  it, so the more specific route beats the block owner's REMOTE_BLOCK.
"""

from __future__ import annotations

from felix.calc.state import ClusterState, IPNetwork, canonical_net, wep_nets
from model.resources import ENCAP_ALWAYS, ENCAP_CROSS_SUBNET, IPPool, WorkloadEndpoint
from proto import calc_pb2

# Which route wins when two sources name one destination (lower wins).
PRIORITY = {
    calc_pb2.LOCAL_WORKLOAD: 0,
    calc_pb2.REMOTE_WORKLOAD: 1,
    calc_pb2.LOCAL_BLOCK: 2,
    calc_pb2.REMOTE_BLOCK: 3,
}


def same_subnet(state: ClusterState, hostname: str, remote: str, version: int) -> bool:
    """True when the remote node's address lies in this node's subnet (its prefix length)."""
    local_if = state.node_address(hostname, version)
    remote_if = state.node_address(remote, version)
    if local_if is None or remote_if is None:
        return False
    return remote_if.ip in local_if.network


def encap_for(pool: IPPool | None, version: int, same: bool) -> int:
    """VXLAN wins over IPIP when a pool sets both; CrossSubnet encapsulates off-subnet only."""
    if pool is None or version != 4:
        return calc_pb2.ENCAP_TYPE_NONE
    for mode, encap in (
        (pool.spec.vxlan_mode, calc_pb2.ENCAP_TYPE_VXLAN),
        (pool.spec.ipip_mode, calc_pb2.ENCAP_TYPE_IPIP),
    ):
        if mode == ENCAP_ALWAYS or (mode == ENCAP_CROSS_SUBNET and not same):
            return encap
    return calc_pb2.ENCAP_TYPE_NONE


def _base(
    state: ClusterState, hostname: str, net: IPNetwork, node: str, rtype: int
) -> calc_pb2.RouteUpdate:
    pool = state.pool_for(net)
    addr = state.node_address(node, net.version)
    route = calc_pb2.RouteUpdate(
        dst=str(net),
        type=rtype,  # type: ignore[arg-type]
        dst_node=node,
        dst_node_ip=str(addr.ip) if addr else "",
    )
    if pool is not None:
        route.pool_cidr = str(canonical_net(pool.spec.cidr))
        route.nat_outgoing = pool.spec.nat_outgoing
    if node != hostname:
        route.same_subnet = same_subnet(state, hostname, node, net.version)
        route.encap = encap_for(pool, net.version, route.same_subnet)  # type: ignore[assignment]
    return route


def _exported(state: ClusterState, net: IPNetwork) -> bool:
    pool = state.pool_for(net)
    return pool is None or not pool.spec.disable_bgp_export


def block_routes(state: ClusterState, hostname: str, cidr: str) -> dict[str, calc_pb2.RouteUpdate]:
    block = state.blocks.get(cidr)
    if block is None or not block.affinity:
        return {}
    net = canonical_net(cidr)
    if block.affinity == hostname:
        route = _base(state, hostname, net, hostname, calc_pb2.LOCAL_BLOCK)
        route.advertise = _exported(state, net)
    else:
        route = _base(state, hostname, net, block.affinity, calc_pb2.REMOTE_BLOCK)
    return {route.dst: route}


def wep_routes(
    state: ClusterState, hostname: str, wep: WorkloadEndpoint
) -> dict[str, calc_pb2.RouteUpdate]:
    node = wep.spec.node
    out: dict[str, calc_pb2.RouteUpdate] = {}
    for net in wep_nets(wep):
        block = state.block_containing(net)
        owner = block.affinity if block else None
        covered_by_own_block = owner == node
        if node == hostname:
            route = _base(state, hostname, net, node, calc_pb2.LOCAL_WORKLOAD)
            route.workload_interface = wep.spec.interface_name
            route.advertise = not covered_by_own_block and _exported(state, net)
        elif covered_by_own_block:
            continue
        else:
            route = _base(state, hostname, net, node, calc_pb2.REMOTE_WORKLOAD)
        route.borrowed = owner is not None and owner != node
        out[route.dst] = route
    return out
