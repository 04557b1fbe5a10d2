"""Workload interfaces manager: host-side veth settings for local pods.

A pod's default route points at 169.254.1.1, which nobody owns: the host end of the
veth answers ARP for it (proxy_arp, with no delay) and forwards. Interfaces with our
prefix whose endpoint is gone (after InSync) lose their routes; the CNI plugin
deletes the veth itself.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket

from felix.calc.messages import wep_key
from felix.dataplane.config import DataplaneConfig
from felix.dataplane.kernel import Kernel
from felix.netlink.codec import Route
from felix.netlink.constants import RTPROT_KERNEL
from felix.netlink.programmer import DELETE, RouteOp
from proto import calc_pb2

log = logging.getLogger(__name__)

IPV4_SYSCTLS = (
    ("net/ipv4/conf/{}/proxy_arp", "1"),
    ("net/ipv4/conf/{}/forwarding", "1"),
    ("net/ipv4/neigh/{}/proxy_delay", "0"),
)
IPV6_SYSCTLS = (
    ("net/ipv6/conf/{}/forwarding", "1"),
    ("net/ipv6/conf/{}/accept_ra", "0"),
)


class WorkloadInterfaceManager:
    def __init__(self, config: DataplaneConfig, kernel: Kernel) -> None:
        self.config = config
        self.kernel = kernel
        self._endpoints: dict[tuple[str, str, str], str] = {}  # id -> interface name
        self._configured: dict[str, int] = {}  # interface -> ifindex it was set up with
        self._cleaned: dict[str, int] = {}  # orphan interface -> ifindex already cleaned
        self._in_sync = False
        self._host_done = False
        self._dirty = True

    def on_update(self, msg: calc_pb2.ToDataplane) -> None:
        kind = msg.WhichOneof("payload")
        if kind == "workload_endpoint_update":
            ep = msg.workload_endpoint_update.endpoint
            if ep.node and ep.node != self.config.hostname:
                return
            self._endpoints[wep_key(msg.workload_endpoint_update.id)] = ep.name
            self._dirty = True
        elif kind == "workload_endpoint_remove":
            if self._endpoints.pop(wep_key(msg.workload_endpoint_remove.id), None) is not None:
                self._dirty = True
        elif kind == "in_sync":
            self._in_sync = True
            self._dirty = True

    @property
    def waiting(self) -> set[str]:
        """Interfaces of known endpoints not configured yet (the veth does not exist)."""
        return set(self._endpoints.values()) - set(self._configured)

    def apply(self) -> None:
        if not self._host_done:
            self.kernel.set_sysctl("net/ipv4/ip_forward", "1")
            self._host_done = True
        links = self.kernel.routes.link_indexes()
        wanted = set(self._endpoints.values())
        if not self._dirty and all(self._configured.get(n) == links.get(n) for n in wanted):
            return
        for name in wanted:
            idx = links.get(name)
            if idx is None:
                self._configured.pop(name, None)
                continue
            if self._configured.get(name) == idx:
                continue
            self._configure(name)
            self._configured[name] = idx
            log.info("workload interface configured iface=%s ifindex=%d", name, idx)
        for name in list(self._configured):
            if name not in wanted:
                del self._configured[name]
        if self._in_sync:
            self._remove_orphan_routes(links, wanted)
        self._dirty = False

    def _configure(self, name: str) -> None:
        for path, value in IPV4_SYSCTLS:
            self.kernel.set_sysctl(path.format(name), value)
        for path, value in IPV6_SYSCTLS:
            with contextlib.suppress(FileNotFoundError):  # IPv6 disabled on this host
                self.kernel.set_sysctl(path.format(name), value)
        self.kernel.with_ipr(lambda ipr: ipr.link("set", ifname=name, state="up"))

    def _remove_orphan_routes(self, links: dict[str, int], wanted: set[str]) -> None:
        """Delete the routes of our-prefix interfaces no endpoint claims (one dump for all)."""
        prefix = self.config.interface_prefix
        orphans = {
            idx: name
            for name, idx in links.items()
            if name.startswith(prefix) and name not in wanted and self._cleaned.get(name) != idx
        }
        if orphans:
            by_oif: dict[int, list[Route]] = {idx: [] for idx in orphans}
            for fam in (socket.AF_INET, socket.AF_INET6):
                for r in self.kernel.routes.dump_routes(fam, table=self.config.route_table):
                    # Keep the kernel's own (link-local) routes: they go with the link.
                    if r.oif in by_oif and r.protocol != RTPROT_KERNEL:
                        by_oif[r.oif].append(r)
            for idx, name in orphans.items():
                routes = by_oif[idx]
                res = self.kernel.routes.apply([RouteOp(DELETE, r) for r in routes])
                real = [e for e in res.errors if e.errno != errno.ESRCH]
                if real:
                    raise RuntimeError(f"removing routes of orphan interface {name}: {real[0]}")
                self._cleaned[name] = idx
                log.info(
                    "orphan workload interface routes removed iface=%s routes=%d",
                    name,
                    len(routes),
                )
        for name in list(self._cleaned):
            if name not in links:
                del self._cleaned[name]
