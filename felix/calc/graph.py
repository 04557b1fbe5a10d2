"""The calculation graph for one node: typed inputs in, keyed output changes out.

Inputs only record state and mark what they affect as dirty; ``recompute()`` (once
per datastore batch) re-runs the affected resolvers and reports each output whose
value changed to the sink as ``(category, key, value or None)``. Marking instead of
recomputing at once keeps a large snapshot linear: a thousand nodes arriving in one
batch recompute the peer list once, not a thousand times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Any

from felix.calc import bgp, config, hosts, messages, pools, routes
from felix.calc.messages import WepKey
from felix.calc.state import Block, ClusterState, ResourceId, canonical_net, wep_nets
from model.resources import (
    BGPConfiguration,
    BGPPeer,
    FelixConfiguration,
    IPAMConfiguration,
    IPPool,
    Node,
    Resource,
    WorkloadEndpoint,
)
from proto import calc_pb2

log = logging.getLogger(__name__)

Sink = Callable[[str, Hashable, Any], None]
Source = tuple[str, ...]  # ("block", cidr) or ("wep", namespace, name)


def workload_endpoint_id(wep: WorkloadEndpoint) -> calc_pb2.WorkloadEndpointID:
    """How the stream (and EndpointStatus.WaitReady) names an endpoint.

    workload_id is "<namespace>/<pod>" for pods, else the workload or container id.
    """
    spec = wep.spec
    if spec.pod:
        workload = f"{wep.namespace or 'default'}/{spec.pod}"
    else:
        workload = spec.workload or spec.container_id or wep.name
    return calc_pb2.WorkloadEndpointID(
        orchestrator_id=spec.orchestrator, workload_id=workload, endpoint_id=spec.endpoint
    )


def workload_endpoint(wep: WorkloadEndpoint) -> calc_pb2.WorkloadEndpointUpdate:
    nets = wep_nets(wep)
    return calc_pb2.WorkloadEndpointUpdate(
        id=workload_endpoint_id(wep),
        endpoint=calc_pb2.WorkloadEndpoint(
            state="active",
            name=wep.spec.interface_name,
            mac=wep.spec.mac,
            ipv4_nets=[str(n) for n in nets if n.version == 4],
            ipv6_nets=[str(n) for n in nets if n.version == 6],
            labels=dict(wep.metadata.labels),
            node=wep.spec.node,
        ),
    )


class CalcGraph:
    def __init__(self, hostname: str, sink: Sink) -> None:
        self.hostname = hostname
        self.state = ClusterState()
        self._sink = sink
        self._outputs: dict[str, dict[Hashable, Any]] = {c: {} for c in messages.ORDER}
        self._config_dirty = True  # a node always has a configuration, even the defaults
        self._pools_dirty = False
        self._bgp_dirty = False
        self._hosts_dirty: set[str] = set()
        self._vteps_dirty: set[str] = set()
        self._all_routes_dirty = False
        self._blocks_dirty: set[str] = set()
        self._weps_dirty: set[ResourceId] = set()
        self._routes_by_source: dict[Source, dict[str, calc_pb2.RouteUpdate]] = {}
        self._sources_by_dst: dict[str, set[Source]] = {}
        self._wep_output_key: dict[ResourceId, WepKey] = {}

    # --- inputs -------------------------------------------------------------------------

    def update_resource(self, res: Resource) -> None:
        self._apply(type(res).KIND, res.name, res.namespace, res)

    def remove_resource(self, kind: str, name: str, namespace: str | None = None) -> None:
        self._apply(kind, name, namespace, None)

    def update_block(self, cidr: str, affinity_node: str | None) -> None:
        key = str(canonical_net(cidr))
        self.state.set_block(Block(key, affinity_node or None), key)
        self._block_changed(key)

    def remove_block(self, cidr: str) -> None:
        key = str(canonical_net(cidr))
        if self.state.set_block(None, key) is not None:
            self._block_changed(key)

    def _apply(self, kind: str, name: str, namespace: str | None, res: Resource | None) -> None:
        st = self.state
        if kind == Node.KIND:
            _store(st.nodes, name, res)
            self._node_changed(name)
        elif kind == IPPool.KIND:
            _store(st.pools, name, res)
            self._pools_dirty = self._config_dirty = self._all_routes_dirty = True
        elif kind == WorkloadEndpoint.KIND:
            rid = (namespace or "", name)
            st.set_wep(rid, res)  # type: ignore[arg-type]
            self._weps_dirty.add(rid)
        elif kind == BGPConfiguration.KIND:
            _store(st.bgp_configs, name, res)
            self._bgp_dirty = True
        elif kind == BGPPeer.KIND:
            _store(st.bgp_peers, name, res)
            self._bgp_dirty = True
        elif kind == FelixConfiguration.KIND:
            _store(st.felix_configs, name, res)
            self._config_dirty = True
        elif kind == IPAMConfiguration.KIND:
            _store(st.ipam_configs, name, res)
        else:
            log.debug("calc graph ignores kind=%s name=%s", kind, name)

    def _node_changed(self, name: str) -> None:
        self._hosts_dirty.add(name)
        self._vteps_dirty.add(name)
        self._bgp_dirty = True
        if name == self.hostname:
            self._all_routes_dirty = True  # same-subnet decisions all hinge on us
            self._config_dirty = True  # our IPIP tunnel address is in the config
        else:
            self._blocks_dirty |= self.state.blocks_by_node.get(name, set())
            self._weps_dirty |= self.state.weps_by_node.get(name, set())

    def _block_changed(self, cidr: str) -> None:
        self._blocks_dirty.add(cidr)
        self._weps_dirty |= self.state.weps_in(cidr)  # borrowed or not may have flipped

    # --- recompute ----------------------------------------------------------------------

    def recompute(self) -> None:
        st = self.state
        if self._config_dirty:
            self._config_dirty = False
            cfg = config.effective_config(
                self.hostname, st.felix_configs, st.pools.values(), st.nodes.get(self.hostname)
            )
            self._set(messages.CONFIG, messages.SINGLETON, cfg)
        for name in sorted(self._hosts_dirty):
            node = st.nodes.get(name)
            self._set(messages.HOST, name, hosts.host_metadata(node) if node else None)
        self._hosts_dirty.clear()
        if self._pools_dirty:
            self._pools_dirty = False
            self._replace_all(messages.POOL, pools.pool_updates(st.pools.values()))
        for name in sorted(self._vteps_dirty):
            node = st.nodes.get(name)
            self._set(messages.VTEP, name, hosts.vtep(node) if node else None)
        self._vteps_dirty.clear()
        self._recompute_routes()
        for rid in sorted(self._weps_dirty):
            self._recompute_wep(rid)
        self._weps_dirty.clear()
        if self._bgp_dirty:
            self._bgp_dirty = False
            cfg_msg = bgp.bgp_config(st, self.hostname)
            if cfg_msg is not None:
                self._set(messages.BGP_CONFIG, messages.SINGLETON, cfg_msg)
            self._replace_all(messages.BGP_PEER, bgp.bgp_peers(st, self.hostname))

    def _recompute_wep(self, rid: ResourceId) -> None:
        wep = self.state.weps.get(rid)
        new_key: WepKey | None = None
        if wep is not None and wep.spec.node == self.hostname:
            msg = workload_endpoint(wep)
            new_key = messages.wep_key(msg.id)
            self._set(messages.WEP, new_key, msg)
        old_key = self._wep_output_key.pop(rid, None)
        if old_key is not None and old_key != new_key:
            self._set(messages.WEP, old_key, None)
        if new_key is not None:
            self._wep_output_key[rid] = new_key

    def _recompute_routes(self) -> None:
        st = self.state
        sources: set[Source]
        if self._all_routes_dirty:
            sources = set(self._routes_by_source)
            sources |= {("block", c) for c in st.blocks}
            sources |= {("wep", *rid) for rid in st.weps}
        else:
            sources = {("block", c) for c in self._blocks_dirty}
            sources |= {("wep", *rid) for rid in self._weps_dirty}
        self._all_routes_dirty = False
        self._blocks_dirty.clear()
        affected: set[str] = set()
        for src in sources:
            if src[0] == "block":
                new = routes.block_routes(st, self.hostname, src[1])
            else:
                wep = st.weps.get((src[1], src[2]))
                new = routes.wep_routes(st, self.hostname, wep) if wep else {}
            old = self._routes_by_source.pop(src, {})
            if new:
                self._routes_by_source[src] = new
            for dst in old.keys() - new.keys():
                self._sources_by_dst[dst].discard(src)
            for dst in new.keys() - old.keys():
                self._sources_by_dst.setdefault(dst, set()).add(src)
            affected |= old.keys() | new.keys()
        for dst in sorted(affected):
            srcs = self._sources_by_dst.get(dst)
            if not srcs:
                self._sources_by_dst.pop(dst, None)
                self._set(messages.ROUTE, dst, None)
                continue
            winner = min(
                srcs,
                key=lambda s: (routes.PRIORITY[self._routes_by_source[s][dst].type], s),
            )
            self._set(messages.ROUTE, dst, self._routes_by_source[winner][dst])

    # --- outputs ------------------------------------------------------------------------

    def _set(self, category: str, key: Hashable, value: Any) -> None:
        current = self._outputs[category]
        if value is None:
            if key in current:
                del current[key]
                self._sink(category, key, None)
        elif current.get(key) != value:
            current[key] = value
            self._sink(category, key, value)

    def _replace_all(self, category: str, new: dict[Any, Any]) -> None:
        for key in [k for k in self._outputs[category] if k not in new]:
            self._set(category, key, None)
        for key in sorted(new):
            self._set(category, key, new[key])

    def outputs(self) -> dict[str, dict[Hashable, Any]]:
        """The graph's current desired state, per category (read-only view for tests)."""
        return self._outputs


def _store(table: dict[str, Any], name: str, res: Resource | None) -> None:
    if res is None:
        table.pop(name, None)
    else:
        table[name] = res
