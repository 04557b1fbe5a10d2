"""Route table manager: desired routes from the calc stream and BGP, reconciled with the kernel.

Owns only routes carrying our protocol number in our table; a foreign route is never
replaced or deleted, even for the same prefix (adds use NLM_F_EXCL, deletes carry the
protocol). Updates are incremental (only dirty prefixes are looked at); every
``resync_interval`` a full dump+diff repairs anything changed behind our back. On
start-up the first apply() dumps the table and adopts routes that are already right,
so a restart with unchanged state sends nothing.

Sources for one prefix, highest priority first: a local workload, the calculation
graph (blackhole for a local block, direct or VXLAN for a remote one), BGP-learned.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from felix.dataplane.config import DataplaneConfig
from felix.netlink.codec import NextHop, Route
from felix.netlink.constants import RT_SCOPE_UNIVERSE, RTN_BLACKHOLE, RTNH_F_ONLINK
from felix.netlink.programmer import ADD, DELETE, REPLACE, RouteError, RouteOp, RouteProgrammer
from proto import calc_pb2, felix_services_pb2

log = logging.getLogger(__name__)

_PENDING = object()  # desired, but waiting for an interface or a VTEP


class RouteApplyError(RuntimeError):
    """Some route operations failed; each error names its route. The rest were applied."""

    def __init__(self, errors: list[RouteError]) -> None:
        self.errors = errors
        shown = "; ".join(str(e) for e in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{len(errors)} route operation(s) failed: {shown}{more}")


@dataclass(frozen=True)
class _Learned:
    next_hops: tuple[str, ...]
    peer: str


def normalise_cidr(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False))


class RouteManager:
    """Manager for kernel routes; see the module docstring."""

    def __init__(
        self,
        config: DataplaneConfig,
        programmer: RouteProgrammer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.prog = programmer
        self.clock = clock
        self._graph: dict[str, calc_pb2.RouteUpdate] = {}
        self._vteps: dict[str, str] = {}  # node -> tunnel IPv4
        self._learned: dict[str, _Learned] = {}
        self._learned_stale: set[str] = set()
        self._in_sync = False
        self._learned_synced = False
        self._started = clock()
        self._dirty: set[str] = set()
        self._released: set[str] = set()  # desired earlier in this run, now not
        self._actual: dict[str, Route] | None = None  # our routes in the kernel
        self._last_resync = 0.0
        self._resync_requested = True
        self.pending: set[str] = set()  # desired but not yet programmable

    # -- desired state (no I/O) ------------------------------------------------------

    def on_update(self, msg: calc_pb2.ToDataplane) -> None:
        kind = msg.WhichOneof("payload")
        if kind == "route_update":
            u = msg.route_update
            dst = normalise_cidr(u.dst)
            self._graph[dst] = u
            self._dirty.add(dst)
        elif kind == "route_remove":
            dst = normalise_cidr(msg.route_remove.dst)
            if self._graph.pop(dst, None) is not None:
                self._mark_released(dst)
        elif kind == "vtep_update":
            v = msg.vtep_update
            if self._vteps.get(v.node) != v.ipv4_addr:
                self._vteps[v.node] = v.ipv4_addr
                self._dirty_for_node(v.node)
        elif kind == "vtep_remove":
            if self._vteps.pop(msg.vtep_remove.node, None) is not None:
                self._dirty_for_node(msg.vtep_remove.node)
        elif kind == "in_sync":
            self._in_sync = True
            self._resync_requested = True  # now we may delete what nobody claims

    def on_learned(self, msg: felix_services_pb2.LearnedRouteMessage) -> None:
        """A route the BGP daemon selected (or withdrew), or its end-of-RIB marker."""
        kind = msg.WhichOneof("payload")
        if kind == "update":
            dst = normalise_cidr(msg.update.dst)
            hops = tuple(sorted(set(msg.update.next_hops)))
            self._learned_stale.discard(dst)
            if hops:
                self._learned[dst] = _Learned(hops, msg.update.peer)
                self._dirty.add(dst)
            elif self._learned.pop(dst, None) is not None:  # no next hop: a withdraw
                self._mark_released(dst)
        elif kind == "withdraw":
            dst = normalise_cidr(msg.withdraw)
            self._learned_stale.discard(dst)
            if self._learned.pop(dst, None) is not None:
                self._mark_released(dst)
        elif kind == "end_of_rib":
            for dst in self._learned_stale:
                if self._learned.pop(dst, None) is not None:
                    self._mark_released(dst)
            log.info("learned routes in sync stale_dropped=%d", len(self._learned_stale))
            self._learned_stale.clear()
            if not self._learned_synced:
                self._learned_synced = True
                self._resync_requested = True

    def on_learned_reset(self) -> None:
        """A new BGP daemon stream: what it does not re-announce by end_of_rib goes."""
        self._learned_stale = set(self._learned)

    def request_resync(self) -> None:
        self._resync_requested = True

    def _mark_released(self, dst: str) -> None:
        self._released.add(dst)
        self._dirty.add(dst)

    def _dirty_for_node(self, node: str) -> None:
        self._dirty.update(d for d, u in self._graph.items() if u.dst_node == node)

    # -- desired route computation -------------------------------------------------

    def _route(self, dst: str, **kw: Any) -> Route:
        v6 = ":" in dst
        metric = self.config.route_metric or (1024 if v6 else 0)
        if v6:
            kw.setdefault("scope", RT_SCOPE_UNIVERSE)  # IPv6 has no route scopes
        return Route(
            dst=dst, table=self.config.route_table, protocol=self.config.route_protocol,
            priority=metric, **kw,
        )  # fmt: skip

    def _desired(self, dst: str, links: dict[str, int]) -> Route | object | None:
        u = self._graph.get(dst)
        if u is not None:
            r = self._from_graph(dst, u, links)
            if r is not None:
                return r
        learned = self._learned.get(dst)
        if learned is not None:
            if len(learned.next_hops) == 1:
                return self._route(dst, gateway=learned.next_hops[0])
            return self._route(dst, multipath=tuple(NextHop(gateway=h) for h in learned.next_hops))
        return None

    def _from_graph(
        self, dst: str, u: calc_pb2.RouteUpdate, links: dict[str, int]
    ) -> Route | object | None:
        """The graph's route as a kernel route; _PENDING while its device or VTEP is
        missing; None when the graph's route is not ours to program (left to BGP)."""
        if u.type == calc_pb2.LOCAL_WORKLOAD:
            idx = links.get(u.workload_interface)
            return self._route(dst, oif=idx) if idx else _PENDING
        if u.type == calc_pb2.LOCAL_BLOCK:
            return self._route(dst, type=RTN_BLACKHOLE)
        if u.type not in (calc_pb2.REMOTE_BLOCK, calc_pb2.REMOTE_WORKLOAD):
            return None
        if u.encap == calc_pb2.ENCAP_TYPE_VXLAN:
            tunnel_ip = self._vteps.get(u.dst_node)
            idx = links.get(self.config.vxlan_device)
            if not tunnel_ip or not idx:
                return _PENDING
            return self._route(dst, gateway=tunnel_ip, oif=idx, flags=RTNH_F_ONLINK)
        if u.encap == calc_pb2.ENCAP_TYPE_IPIP:
            idx = links.get(self.config.ipip_device)
            if not idx or not u.dst_node_ip:
                return _PENDING
            return self._route(dst, gateway=u.dst_node_ip, oif=idx, flags=RTNH_F_ONLINK)
        if u.same_subnet and u.dst_node_ip:
            return self._route(dst, gateway=u.dst_node_ip)
        return None  # not on-link: left to BGP-learned routes

    def _owned_by_workload(self, dst: str) -> bool:
        """A local pod's /32 (/128) is the pod's, whoever wrote it first: the CNI plugin
        adds the same route when it plumbs the veth, so Felix replaces rather than adds
        (an exclusive add would fail with EEXIST for every new pod)."""
        u = self._graph.get(dst)
        return u is not None and u.type == calc_pb2.LOCAL_WORKLOAD

    def _may_delete(self, dst: str) -> bool:
        if not self._in_sync:
            return False  # nothing is deleted before the snapshot is complete
        if dst in self._released:
            return True
        return self._learned_synced or (
            self.clock() - self._started >= self.config.learned_routes_grace
        )

    # -- kernel work -----------------------------------------------------------------

    def _full_dump(self) -> tuple[dict[str, Route], list[Route]]:
        actual: dict[str, Route] = {}
        extras: list[Route] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for r in self.prog.dump_routes(
                family, table=self.config.route_table, protocol=self.config.route_protocol
            ):
                if r.dst in actual:
                    extras.append(r)  # a second route of ours for one prefix (other metric)
                else:
                    actual[r.dst] = r
        return actual, extras

    @property
    def routes_programmed(self) -> int:
        """Routes of ours the kernel holds, as of the last apply (a metric for operators)."""
        return len(self._actual or {})

    def apply(self) -> None:
        now = self.clock()
        full = (
            self._actual is None
            or self._resync_requested
            or now - self._last_resync >= self.config.resync_interval
        )
        extras: list[Route] = []
        if full:
            self._actual, extras = self._full_dump()
            self._last_resync = now
            self._resync_requested = False
            candidates = set(self._actual) | set(self._graph) | set(self._learned) | self._dirty
        else:
            candidates = self._dirty | self.pending
        if not candidates and not extras:
            return
        actual = self._actual
        links = self.prog.link_indexes()
        ops: list[RouteOp] = [RouteOp(DELETE, r) for r in extras if self._in_sync]
        still_dirty: set[str] = set()
        self.pending = set()
        for dst in candidates:
            want = self._desired(dst, links)
            have = actual.get(dst)
            if want is _PENDING:
                self.pending.add(dst)
                if have is not None and self._in_sync:
                    # Its VTEP (or tunnel device) is gone: the route would now lead
                    # nowhere. It comes back when what it waits for does.
                    ops.append(RouteOp(DELETE, have))
                continue
            if want is None:
                if have is not None:
                    if self._may_delete(dst):
                        ops.append(RouteOp(DELETE, have))
                    else:
                        still_dirty.add(dst)
                else:
                    self._released.discard(dst)
                continue
            self._released.discard(dst)
            if have is None:
                ops.append(RouteOp(REPLACE if self._owned_by_workload(dst) else ADD, want))
            elif not want.satisfied_by(have):
                if want.priority == have.priority:
                    ops.append(RouteOp(REPLACE, want))
                else:
                    ops.append(RouteOp(DELETE, have))
                    ops.append(RouteOp(ADD, want))
        if ops:
            log.info(
                "programming routes full_resync=%s ops=%d pending=%d",
                full,
                len(ops),
                len(self.pending),
            )
        result = self.prog.apply(ops)
        errnos = {id(e.op): e.errno for e in result.errors}
        errors: list[RouteError] = []
        for e in result.errors:
            if e.op.op == DELETE and e.errno == errno.ESRCH:
                continue  # already gone: the outcome we wanted
            errors.append(e)
            still_dirty.add(e.op.route.dst)
            if e.errno in (errno.EEXIST, errno.ENOBUFS):
                self._resync_requested = True  # our picture of the kernel is off
        for rop in ops:
            err = errnos.get(id(rop), 0)
            if rop.op == DELETE and err in (0, errno.ESRCH):
                if actual.get(rop.route.dst) is rop.route:
                    del actual[rop.route.dst]
                    self._released.discard(rop.route.dst)
            elif rop.op != DELETE and not err:
                actual[rop.route.dst] = rop.route
        self._dirty = still_dirty
        if self.pending:
            log.debug("routes waiting for interface or VTEP count=%d", len(self.pending))
        if errors:
            raise RouteApplyError(errors)
