"""Builders and a state-sequence driver for calculation-graph tests (Calico style).

A *state* is the whole datastore as ``{input key: value}``; ``drive`` applies a list
of states one after another as the minimal updates/removals between them, flushing
the sequencer after each, and checks the stream's invariants on the way.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from felix.calc import messages
from felix.calc.graph import CalcGraph
from felix.calc.sequencer import EventSequencer
from model.resources import (
    BGPConfiguration,
    BGPConfigurationSpec,
    BGPPeer,
    BGPPeerSpec,
    FelixConfiguration,
    FelixConfigurationSpec,
    IPPool,
    IPPoolSpec,
    Node,
    NodeBGPSpec,
    NodeSpec,
    ObjectMeta,
    Resource,
    WorkloadEndpoint,
    WorkloadEndpointSpec,
)
from proto import calc_pb2

State = dict[tuple[str, ...], Any]
Folded = dict[tuple[str, Hashable], Any]


def node(
    name: str,
    ipv4: str = "",
    *,
    ipv6: str = "",
    asn: int | None = None,
    rr: str = "",
    labels: dict[str, str] | None = None,
    vxlan: tuple[str, str] | None = None,
) -> Node:
    spec = NodeSpec(bgp=NodeBGPSpec(ipv4, ipv6, asn, rr) if (ipv4 or ipv6) else None)
    if vxlan:
        spec.ipv4_vxlan_tunnel_addr, spec.vxlan_tunnel_mac_addr = vxlan
    return Node(metadata=ObjectMeta(name=name, labels=dict(labels or {})), spec=spec)


def pool(name: str, cidr: str, vxlan: str = "Never", ipip: str = "Never", **kw: Any) -> IPPool:
    return IPPool(
        metadata=ObjectMeta(name=name),
        spec=IPPoolSpec(cidr=cidr, vxlan_mode=vxlan, ipip_mode=ipip, **kw),
    )


def wep(ns: str, pod: str, node_name: str, *ips: str, iface: str = "") -> WorkloadEndpoint:
    return WorkloadEndpoint(
        metadata=ObjectMeta(name=f"{node_name}-k8s-{pod}-eth0", namespace=ns),
        spec=WorkloadEndpointSpec(
            orchestrator="k8s",
            node=node_name,
            pod=pod,
            interface_name=iface or f"cali{pod[:11]}",
            ip_networks=list(ips),
        ),
    )


def bgp_config(name: str = "default", **kw: Any) -> BGPConfiguration:
    return BGPConfiguration(metadata=ObjectMeta(name=name), spec=BGPConfigurationSpec(**kw))


def bgp_peer(name: str, **kw: Any) -> BGPPeer:
    return BGPPeer(metadata=ObjectMeta(name=name), spec=BGPPeerSpec(**kw))


def felix_config(name: str, **kw: Any) -> FelixConfiguration:
    return FelixConfiguration(metadata=ObjectMeta(name=name), spec=FelixConfigurationSpec(**kw))


def res_key(res: Resource) -> tuple[str, ...]:
    return (type(res).KIND, res.namespace or "", res.name)


def block_key(cidr: str) -> tuple[str, ...]:
    return ("Block", cidr)


def state(*items: Resource | tuple[str, str | None]) -> State:
    """Resources, and blocks as ``(cidr, affine node or None)``."""
    out: State = {}
    for item in items:
        if isinstance(item, tuple):
            out[block_key(item[0])] = item[1]
        else:
            out[res_key(item)] = item
    return out


def apply_state(graph: CalcGraph, prev: State, new: State) -> None:
    for key in prev.keys() - new.keys():
        if key[0] == "Block":
            graph.remove_block(key[1])
        else:
            graph.remove_resource(key[0], key[2], key[1] or None)
    for key, value in new.items():
        if key in prev and prev[key] == value:
            continue
        if key[0] == "Block":
            graph.update_block(key[1], value)
        else:
            graph.update_resource(value)


class Run:
    """One graph + sequencer, driven through states; keeps the stream it emitted."""

    def __init__(self, hostname: str) -> None:
        self.sequencer = EventSequencer()
        self.graph = CalcGraph(hostname, self.sequencer.on_change)
        self.stream: list[calc_pb2.ToDataplane] = []
        self.current: State = {}

    def to(self, new: State) -> list[calc_pb2.ToDataplane]:
        apply_state(self.graph, self.current, new)
        self.current = dict(new)
        return self._flush()

    def in_sync(self) -> list[calc_pb2.ToDataplane]:
        self.sequencer.on_datastore_in_sync()
        return self._flush()

    def _flush(self) -> list[calc_pb2.ToDataplane]:
        self.graph.recompute()
        out = self.sequencer.flush()
        self.stream += out
        return out

    def folded(self) -> Folded:
        return messages.fold(self.stream)


def drive(hostname: str, states: Sequence[State], in_sync_at: int | None = None) -> Run:
    """Apply ``states`` in order; the datastore goes in-sync before state ``in_sync_at``
    (None: after the last)."""
    run = Run(hostname)
    for i, st in enumerate(states):
        if i == in_sync_at:
            run.in_sync()
        run.to(st)
    if in_sync_at is None or in_sync_at >= len(states):
        run.in_sync()
    check_invariants(run.stream)
    return run


def check_invariants(stream: Sequence[calc_pb2.ToDataplane]) -> None:
    """The contract of proto/calc.proto, checked message by message."""
    assert [m.sequence_number for m in stream] == list(range(1, len(stream) + 1))
    in_syncs = [i for i, m in enumerate(stream) if m.HasField("in_sync")]
    assert len(in_syncs) == 1, f"InSync sent {len(in_syncs)} times"
    folded: Folded = {}
    for i, msg in enumerate(stream):
        c = messages.classify(msg)
        if c is None:
            continue
        category, key, value = c
        if value is None:
            assert i > in_syncs[0], f"remove before InSync: {msg}"
            assert (category, key) in folded, f"remove of a key never sent: {msg}"
        else:
            assert folded.get((category, key)) != value, f"duplicate update: {msg}"
        messages.fold([msg], folded)
        for (cat, _), val in folded.items():
            if cat == messages.ROUTE and val.pool_cidr:
                assert (messages.POOL, val.pool_cidr) in folded, f"route before pool: {val}"
            if cat == messages.BGP_PEER:
                assert (messages.BGP_CONFIG, messages.SINGLETON) in folded, "peer before config"
