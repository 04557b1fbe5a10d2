"""The categories of the calculation-graph stream and how to (un)wrap their messages.

The graph and the sequencer speak in ``(category, key, value)`` triples, where
``value`` is the payload message (e.g. ``RouteUpdate``) or ``None`` for a removal.
This module is the single place that knows which ``ToDataplane`` field carries
which category, so ordering, coalescing and folding stay generic.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from proto import calc_pb2

CONFIG = "config"
HOST = "host"
POOL = "pool"
VTEP = "vtep"
ROUTE = "route"
WEP = "wep"
BGP_CONFIG = "bgp_config"
BGP_PEER = "bgp_peer"

# Dependency order of updates (a message never names something not yet sent);
# removals are flushed in the reverse of this order.
ORDER: tuple[str, ...] = (CONFIG, HOST, POOL, VTEP, ROUTE, WEP, BGP_CONFIG, BGP_PEER)

# Singleton categories use this key.
SINGLETON = "_"

WepKey = tuple[str, str, str]  # (orchestrator_id, workload_id, endpoint_id)


@dataclass(frozen=True)
class _Fields:
    update: str
    remove: str | None  # None: the category has no Remove message


_FIELDS: dict[str, _Fields] = {
    CONFIG: _Fields("config_update", None),
    HOST: _Fields("host_metadata_update", "host_metadata_remove"),
    POOL: _Fields("ip_pool_update", "ip_pool_remove"),
    VTEP: _Fields("vtep_update", "vtep_remove"),
    ROUTE: _Fields("route_update", "route_remove"),
    WEP: _Fields("workload_endpoint_update", "workload_endpoint_remove"),
    BGP_CONFIG: _Fields("bgp_config_update", None),
    BGP_PEER: _Fields("bgp_peer_update", "bgp_peer_remove"),
}
_BY_FIELD: dict[str, tuple[str, bool]] = {}
for _cat, _f in _FIELDS.items():
    _BY_FIELD[_f.update] = (_cat, True)
    if _f.remove:
        _BY_FIELD[_f.remove] = (_cat, False)


def removable(category: str) -> bool:
    return _FIELDS[category].remove is not None


def wep_key(wep_id: calc_pb2.WorkloadEndpointID) -> WepKey:
    return (wep_id.orchestrator_id, wep_id.workload_id, wep_id.endpoint_id)


def wep_id(key: WepKey) -> calc_pb2.WorkloadEndpointID:
    return calc_pb2.WorkloadEndpointID(
        orchestrator_id=key[0], workload_id=key[1], endpoint_id=key[2]
    )


def key_of(category: str, value: Any) -> Hashable:
    """The key of an update payload (what its Remove names)."""
    if category in (CONFIG, BGP_CONFIG):
        return SINGLETON
    if category == HOST:
        return value.hostname
    if category == POOL:
        return value.id
    if category == VTEP:
        return value.node
    if category == ROUTE:
        return value.dst
    if category == WEP:
        return wep_key(value.id)
    if category == BGP_PEER:
        return value.id
    raise ValueError(f"unknown category {category!r}")


def update_message(category: str, value: Any, seq: int = 0) -> calc_pb2.ToDataplane:
    msg = calc_pb2.ToDataplane(sequence_number=seq)
    getattr(msg, _FIELDS[category].update).CopyFrom(value)
    return msg


def remove_message(category: str, key: Hashable, seq: int = 0) -> calc_pb2.ToDataplane:
    fields = _FIELDS[category]
    if fields.remove is None:
        raise ValueError(f"category {category!r} has no remove message")
    msg = calc_pb2.ToDataplane(sequence_number=seq)
    target = getattr(msg, fields.remove)
    if category == HOST:
        target.hostname = key
    elif category == WEP:
        target.id.CopyFrom(wep_id(key))  # type: ignore[arg-type]
    elif category == VTEP:
        target.node = key
    elif category == ROUTE:
        target.dst = key
    else:  # POOL, BGP_PEER
        target.id = key
    return msg


def in_sync_message(seq: int = 0) -> calc_pb2.ToDataplane:
    return calc_pb2.ToDataplane(sequence_number=seq, in_sync=calc_pb2.InSync())


def classify(msg: calc_pb2.ToDataplane) -> tuple[str, Hashable, Any] | None:
    """``(category, key, value or None)`` for a message; ``None`` for InSync."""
    field = msg.WhichOneof("payload")
    if field is None or field == "in_sync":
        return None
    category, is_update = _BY_FIELD[field]
    payload = getattr(msg, field)
    if is_update:
        return category, key_of(category, payload), payload
    if category == HOST:
        return category, payload.hostname, None
    if category == WEP:
        return category, wep_key(payload.id), None
    if category == VTEP:
        return category, payload.node, None
    if category == ROUTE:
        return category, payload.dst, None
    return category, payload.id, None


def fold(
    messages: Iterable[calc_pb2.ToDataplane],
    state: dict[tuple[str, Hashable], Any] | None = None,
) -> dict[tuple[str, Hashable], Any]:
    """Apply a stream to a ``(category, key) -> payload`` dict: what a consumer holds."""
    state = {} if state is None else state
    for msg in messages:
        c = classify(msg)
        if c is None:
            continue
        category, key, value = c
        if value is None:
            state.pop((category, key), None)
        else:
            state[(category, key)] = value
    return state
