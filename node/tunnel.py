"""The node's VXLAN tunnel address and MAC, allocated the way calico-node does.

When any enabled IPv4 pool that selects this node has ``vxlanMode`` Always or
CrossSubnet, the node needs a VTEP: one address from such a pool (IPAM handle
``vxlan-tunnel-addr-<node>``) and a MAC, both written to its Node resource, from where
every Felix derives the VTEP. When no such pool is left, both are cleared and the
address released.

Order of writes (why a crash is safe): assign in IPAM, then write the Node; clear the
Node, then release. A crash in between leaves an address held by the handle and not
named by the Node, which the next run adopts (or releases), never a Node naming a
free address.

``vxlan_pools`` and ``tunnel_mac`` are pure; ``reconcile_vxlan_tunnel`` does the I/O.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
from dataclasses import dataclass

from datastore.api import Conflict, NotFound
from datastore.resources import ResourceStore
from ipam.client import AutoAssignRequest, IPAMClient
from ipam.errors import AddressInUse, IPAMError
from ipam.pools import node_selected
from model.resources import ENCAP_NEVER, IPPool, Node

log = logging.getLogger("tabby.node.tunnel")

HANDLE_PREFIX = "vxlan-tunnel-addr-"
ATTR_TYPE = "vxlanTunnelAddress"
MAX_ATTEMPTS = 10
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def handle_for(node: str) -> str:
    return f"{HANDLE_PREFIX}{node}"


def vxlan_pools(pools: list[IPPool], node_labels: dict[str, str]) -> list[IPPool]:
    """Enabled IPv4 pools with VXLAN on that select this node, in CIDR order."""
    chosen = []
    for pool in pools:
        net = ipaddress.ip_network(pool.spec.cidr, strict=False)
        spec = pool.spec
        if net.version != 4 or spec.disabled or spec.vxlan_mode == ENCAP_NEVER:
            continue
        if node_selected(spec.node_selector or "all()", node_labels):
            chosen.append(pool)
    return sorted(chosen, key=lambda p: ipaddress.ip_network(p.spec.cidr, strict=False))


def in_pools(ip: str, pools: list[IPPool]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(p.spec.cidr, strict=False) for p in pools)


def tunnel_mac(node: str) -> str:
    """A stable MAC for ``node``: hashed from its name, unicast, locally administered.

    Derived rather than random so that a node that lost its Node resource (or runs
    twice) gets the same MAC, and peers' FDB entries stay right.
    """
    raw = bytearray(hashlib.sha256(node.encode()).digest()[:6])
    raw[0] = (raw[0] & 0xFC) | 0x02  # clear multicast bit, set locally administered
    return ":".join(f"{b:02x}" for b in raw)


def valid_mac(mac: str) -> bool:
    """A unicast MAC we may keep (as written by us or an operator)."""
    return bool(_MAC.match(mac.lower())) and not int(mac[:2], 16) & 0x01


@dataclass(frozen=True)
class TunnelState:
    """What the Node says after reconciling; empty strings when VXLAN is not in use."""

    address: str
    mac: str
    released: tuple[str, ...] = ()


def _write_node(store: ResourceStore, name: str, address: str, mac: str) -> None:
    """Set the two Node fields, compare-and-swap, keeping everything else."""
    for _ in range(MAX_ATTEMPTS):
        node = store.get(Node, name)
        spec = node.spec
        if spec.ipv4_vxlan_tunnel_addr == address and spec.vxlan_tunnel_mac_addr == mac:
            return
        spec.ipv4_vxlan_tunnel_addr, spec.vxlan_tunnel_mac_addr = address, mac
        try:
            store.replace(node)
        except Conflict:
            continue
        log.info(
            "node tunnel updated node=%s vxlan_addr=%s mac=%s", name, address or "-", mac or "-"
        )
        return
    raise Conflict(f"Node {name!r}: gave up after {MAX_ATTEMPTS} concurrent modifications")


def _choose_address(
    ipam: IPAMClient, node: Node, pools: list[IPPool], handle: str, attrs: dict[str, str]
) -> str:
    """Keep the Node's address if valid, else adopt one the handle holds, else assign."""
    name = node.name
    current = node.spec.ipv4_vxlan_tunnel_addr
    held = ipam.ips_by_handle(handle)
    if current and in_pools(current, pools):
        if current in held:
            return current
        try:  # named by the Node but not (or no longer) in IPAM: take it back
            ipam.assign_ip(current, handle, name, attrs)
            log.info("vxlan tunnel address re-assigned node=%s ip=%s", name, current)
            return current
        except AddressInUse as exc:
            log.warning("vxlan tunnel address taken, choosing another node=%s err=%s", name, exc)
        except IPAMError as exc:
            log.warning("vxlan tunnel address not re-assignable node=%s err=%s", name, exc)
    elif current:
        log.info("vxlan tunnel address outside every vxlan pool node=%s ip=%s", name, current)
    for ip in held:
        if in_pools(ip, pools):
            log.info("vxlan tunnel address adopted from ipam node=%s ip=%s", name, ip)
            return ip
    result = ipam.auto_assign(
        AutoAssignRequest(
            handle=handle,
            node=name,
            num_ipv4=1,
            ipv4_pools=[p.name for p in pools],
            attrs=attrs,
            node_labels=dict(node.metadata.labels),
        )
    )
    return str(result.ipv4[0].ip)


def reconcile_vxlan_tunnel(store: ResourceStore, ipam: IPAMClient, name: str) -> TunnelState:
    """Make Node ``name``'s VXLAN address and MAC match the pools; idempotent.

    ``NotFound`` if the Node is not registered yet; IPAM errors (``PoolExhausted``, ...)
    and datastore errors pass through with nothing half-written on the Node.
    """
    try:
        node = store.get(Node, name)
    except NotFound:
        raise NotFound(f"Node {name!r} is not registered; register it before its tunnel") from None
    pools = vxlan_pools(store.list(IPPool), dict(node.metadata.labels))
    handle = handle_for(name)
    if not pools:
        if node.spec.ipv4_vxlan_tunnel_addr or node.spec.vxlan_tunnel_mac_addr:
            _write_node(store, name, "", "")
        released = ipam.release_by_handle(handle)
        if released:
            log.info("vxlan tunnel address released node=%s ips=%s", name, ",".join(released))
        return TunnelState("", "", tuple(released))

    attrs = {"node": name, "type": ATTR_TYPE}
    address = _choose_address(ipam, node, pools, handle, attrs)
    extras = [ip for ip in ipam.ips_by_handle(handle) if ip != address]
    mac = node.spec.vxlan_tunnel_mac_addr
    if not valid_mac(mac):
        mac = tunnel_mac(name)
    try:
        _write_node(store, name, address, mac.lower())
    except NotFound:
        raise NotFound(
            f"Node {name!r} disappeared while its VXLAN address was assigned; "
            f"ipam handle {handle} keeps {address} for the next run"
        ) from None
    released: list[str] = []
    if extras:  # an older address of ours, replaced above: the Node no longer names it
        not_allocated = ipam.release_ips(extras)
        released = [ip for ip in extras if ip not in not_allocated]
        log.info("vxlan tunnel address released node=%s ips=%s", name, ",".join(released))
    return TunnelState(address, mac.lower(), tuple(released))
