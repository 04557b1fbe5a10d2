"""Tunnel managers: the VXLAN device with static neighbours and FDB, and IPIP (tunl0).

VXLAN without learning: every remote VTEP gets a permanent ARP entry (tunnel IP ->
VTEP MAC) and an FDB entry (VTEP MAC -> the node's underlay IP), so no flooding and
no multicast are needed. Routes into the tunnel are the route manager's job.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from felix.dataplane.config import DataplaneConfig
from felix.dataplane.kernel import Kernel
from proto import calc_pb2

IFF_UP = 0x1  # linux/if.h

log = logging.getLogger(__name__)

VXLAN_OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
IPIP_OVERHEAD = 20
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
AF_BRIDGE = 7


@dataclass(frozen=True)
class Vtep:
    node: str
    mac: str
    ipv4_addr: str
    parent_device_ip: str


def uplink_mtu(ipr: IPRoute, exclude_prefixes: tuple[str, ...]) -> tuple[int, dict[str, int]]:
    """(smallest MTU of links holding a global IPv4 address, address -> ifindex)."""
    addr_links: dict[str, int] = {}
    for a in ipr.get_addr(family=socket.AF_INET):
        if a["scope"] == 0:
            addr_links[a.get("IFA_ADDRESS")] = a["index"]
    mtus = []
    for link in ipr.get_links():
        name = link.get("IFLA_IFNAME") or ""
        if link["index"] in addr_links.values() and not name.startswith(exclude_prefixes):
            mtus.append(link.get("IFLA_MTU"))
    return (min(mtus) if mtus else 1500), addr_links


def publish_mtu(path: str, mtu: int) -> None:
    """Write the pod MTU for the CNI plugin, atomically, only when it changed."""
    try:
        with open(path) as f:
            if f.read().strip() == str(mtu):
                return
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{mtu}\n")
    os.replace(tmp, path)
    log.info("published pod mtu path=%s mtu=%d", path, mtu)


class VXLANManager:
    def __init__(self, config: DataplaneConfig, kernel: Kernel) -> None:
        self.config = config
        self.kernel = kernel
        self._local: Vtep | None = None
        self._remote: dict[str, Vtep] = {}
        self._dirty = True
        self.mtu = 0

    def on_update(self, msg: calc_pb2.ToDataplane) -> None:
        kind = msg.WhichOneof("payload")
        if kind == "vtep_update":
            v = msg.vtep_update
            vtep = Vtep(v.node, v.mac, v.ipv4_addr, v.parent_device_ip)
            if v.node == self.config.hostname:
                self._local = vtep
            else:
                self._remote[v.node] = vtep
            self._dirty = True
        elif kind == "vtep_remove":
            node = msg.vtep_remove.node
            if node == self.config.hostname:
                self._local = None
            else:
                self._remote.pop(node, None)
            self._dirty = True

    def apply(self) -> None:
        if not self._dirty:
            return
        self.kernel.with_ipr(self._apply)
        if self._local is not None:
            publish_mtu(self.config.mtu_file, self.mtu)
        self._dirty = False

    def _apply(self, ipr: IPRoute) -> None:
        name = self.config.vxlan_device
        existing = ipr.link_lookup(ifname=name)
        if self._local is None:
            if existing:
                ipr.link("del", index=existing[0])
                log.info("vxlan device removed dev=%s", name)
            return
        local = self._local
        excl = (self.config.interface_prefix, name, self.config.ipip_device, "lo")
        detected, addr_links = uplink_mtu(ipr, excl)
        self.mtu = self.config.vxlan_mtu or detected - VXLAN_OVERHEAD
        parent = addr_links.get(local.parent_device_ip)
        if parent is None:
            raise RuntimeError(
                f"vxlan parent: no interface holds parent_device_ip {local.parent_device_ip}"
            )
        idx = self._ensure_device(ipr, existing[0] if existing else None, parent, local)
        # The tunnel address, alone, as a /32.
        have = {
            (a.get("IFA_ADDRESS"), a["prefixlen"])
            for a in ipr.get_addr(index=idx, family=socket.AF_INET)
        }
        for addr, plen in have - {(local.ipv4_addr, 32)}:
            ipr.addr("del", index=idx, address=addr, prefixlen=plen)
        if (local.ipv4_addr, 32) not in have:
            ipr.addr("add", index=idx, address=local.ipv4_addr, prefixlen=32)
        self._sync_neighbours(ipr, idx)

    def _ensure_device(self, ipr: IPRoute, idx: int | None, parent: int, local: Vtep) -> int:
        c = self.config
        if idx is not None:
            link = ipr.get_links(idx)[0]
            info = link.get("IFLA_LINKINFO")
            data = info.get("IFLA_INFO_DATA") if info else None
            ok = (
                info is not None
                and info.get("IFLA_INFO_KIND") == "vxlan"
                and data.get("IFLA_VXLAN_ID") == c.vxlan_vni
                and data.get("IFLA_VXLAN_PORT") == c.vxlan_port
                and data.get("IFLA_VXLAN_LINK") == parent
                and data.get("IFLA_VXLAN_LOCAL") == local.parent_device_ip
                and not data.get("IFLA_VXLAN_LEARNING")
            )
            if not ok:
                log.info("vxlan device differs, recreating dev=%s", c.vxlan_device)
                ipr.link("del", index=idx)
                idx = None
        if idx is None:
            ipr.link(
                "add",
                ifname=c.vxlan_device,
                kind="vxlan",
                vxlan_id=c.vxlan_vni,
                vxlan_port=c.vxlan_port,
                vxlan_learning=0,
                vxlan_link=parent,
                vxlan_local=local.parent_device_ip,
            )
            idx = ipr.link_lookup(ifname=c.vxlan_device)[0]
            log.info("vxlan device created dev=%s vni=%d", c.vxlan_device, c.vxlan_vni)
        # Only what differs: setting even the same MAC makes the kernel flush every
        # neighbour on the device, dropping the remote VTEPs' entries until the next sync.
        link = ipr.get_links(idx)[0]
        changes: dict[str, object] = {}
        if (link.get("IFLA_ADDRESS") or "").lower() != local.mac.lower():
            changes["address"] = local.mac
        if link.get("IFLA_MTU") != self.mtu:
            changes["mtu"] = self.mtu
        if not link["flags"] & IFF_UP:
            changes["state"] = "up"
        if changes:
            ipr.link("set", index=idx, **changes)
        return idx

    def _sync_neighbours(self, ipr: IPRoute, idx: int) -> None:
        want_arp = {v.ipv4_addr: v.mac.lower() for v in self._remote.values()}
        want_fdb = {v.mac.lower(): v.parent_device_ip for v in self._remote.values()}
        for n in ipr.get_neighbours(family=socket.AF_INET, ifindex=idx):
            dst, mac = n.get("NDA_DST"), (n.get("NDA_LLADDR") or "").lower()
            if n["ifindex"] == idx and want_arp.get(dst) != mac:
                _ignore_gone(ipr.neigh, "del", ifindex=idx, dst=dst)
        for n in ipr.get_neighbours(family=AF_BRIDGE, ifindex=idx):
            mac, dst = (n.get("NDA_LLADDR") or "").lower(), n.get("NDA_DST")
            if n["ifindex"] == idx and want_fdb.get(mac) != dst:
                _ignore_gone(
                    ipr.neigh, "del", family=AF_BRIDGE, ifindex=idx, lladdr=mac, dst=dst,
                    flags=NTF_SELF,
                )  # fmt: skip
        for ip, mac in want_arp.items():
            ipr.neigh("replace", ifindex=idx, dst=ip, lladdr=mac, state=NUD_PERMANENT)
        for mac, ip in want_fdb.items():
            ipr.neigh(
                "replace", family=AF_BRIDGE, ifindex=idx, lladdr=mac, dst=ip, flags=NTF_SELF,
                state=NUD_PERMANENT,
            )  # fmt: skip
        log.debug("vxlan neighbours synced remote_vteps=%d", len(want_arp))


def _ignore_gone(fn: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    """Call a pyroute2 delete; an entry already gone is the outcome we wanted."""
    try:
        fn(*args, **kwargs)
    except NetlinkError as exc:
        if exc.code not in (errno.ENOENT, errno.ESRCH):
            raise


def kernel_has_ipip(kernel: Kernel) -> bool:
    """True when this kernel can create ipip tunnels (tunl0 exists or can be made)."""

    def probe(ipr: IPRoute) -> bool:
        return bool(ipr.link_lookup(ifname="tunl0"))

    if kernel.with_ipr(probe):
        return True
    return os.path.isdir("/sys/module/ipip")


class IPIPManager:
    """tunl0 up with the node's IPIP tunnel address and MTU; routes use `dev tunl0 onlink`.

    The tunnel address comes from ConfigUpdate key ``IpInIpTunnelAddr`` (as in Calico;
    ``felix.calc.config`` fills it from this node's ``spec.ipv4IPIPTunnelAddr``).
    """

    def __init__(self, config: DataplaneConfig, kernel: Kernel) -> None:
        self.config = config
        self.kernel = kernel
        self._addr = ""
        self._dirty = True

    def on_update(self, msg: calc_pb2.ToDataplane) -> None:
        if msg.WhichOneof("payload") == "config_update":
            addr = msg.config_update.config.get("IpInIpTunnelAddr", "")
            if addr != self._addr:
                self._addr, self._dirty = addr, True

    def apply(self) -> None:
        if not self._dirty:
            return

        def do(ipr: IPRoute) -> None:
            found = ipr.link_lookup(ifname=self.config.ipip_device)
            if not found:
                try:
                    ipr.link("add", ifname=self.config.ipip_device, kind="ipip")
                except NetlinkError as exc:
                    raise RuntimeError(f"kernel lacks ipip: cannot create tunl0: {exc}") from exc
                found = ipr.link_lookup(ifname=self.config.ipip_device)
            idx = found[0]
            mtu, _ = uplink_mtu(ipr, (self.config.interface_prefix, "tunl", "vxlan", "lo"))
            ipr.link("set", index=idx, mtu=mtu - IPIP_OVERHEAD, state="up")
            if self._addr:
                have = {
                    a.get("IFA_ADDRESS") for a in ipr.get_addr(index=idx, family=socket.AF_INET)
                }
                if self._addr not in have:
                    ipr.addr("add", index=idx, address=self._addr, prefixlen=32)

        self.kernel.with_ipr(do)
        self._dirty = False
