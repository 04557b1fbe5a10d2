"""Datastore keys and bytes in, typed graph calls out; the graph never sees a key.

A value that does not parse is treated as a deletion of that key (logged with the
key and the reason): state the graph cannot read must not keep routes alive.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from datastore import keys
from felix.calc.graph import CalcGraph
from model.codec import parse_resource
from model.resources import ALL_KINDS, Resource

log = logging.getLogger(__name__)

KIND_BY_PLURAL: dict[str, str] = {k.PLURAL: k.KIND for k in ALL_KINDS}
NAMESPACED: dict[str, bool] = {k.PLURAL: k.NAMESPACED for k in ALL_KINDS}

# Document -> resource; tests may pass a stand-in, production uses model.codec.
ParseFn = Callable[[Any], Resource]


class UpdateLike(Protocol):
    key: str
    value: bytes | None
    revision: int


class BadValue(ValueError):
    pass


def resource_identity(key: str) -> tuple[str, str, str | None] | None:
    """(kind, name, namespace) for a resource key, None for keys the graph ignores."""
    rest = key[len(keys.RESOURCES) :].split("/")
    if len(rest) < 2 or rest[0] not in KIND_BY_PLURAL:
        return None
    plural = rest[0]
    if NAMESPACED[plural]:
        return (KIND_BY_PLURAL[plural], rest[2], rest[1]) if len(rest) == 3 else None
    return (KIND_BY_PLURAL[plural], rest[1], None) if len(rest) == 2 else None


def parse_block(value: bytes) -> tuple[str, str | None]:
    """(cidr, affine node or None) from a block's JSON; BadValue names the field."""
    try:
        obj = json.loads(value)
    except ValueError as exc:
        raise BadValue(f"not JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("cidr"), str):
        raise BadValue("field cidr: missing or not a string")
    affinity = obj.get("affinity")
    if affinity is None:
        return obj["cidr"], None
    if not isinstance(affinity, str):
        raise BadValue("field affinity: not a string or null")
    if not affinity.startswith("host:"):
        return obj["cidr"], None  # e.g. a virtual affinity: routes for nodes only
    return obj["cidr"], affinity[len("host:") :] or None


class Dispatcher:
    def __init__(self, graph: CalcGraph, parse: ParseFn | None = None) -> None:
        self._graph = graph
        self._parse = parse or parse_resource
        self.bad_values = 0

    def dispatch(self, updates: Iterable[UpdateLike]) -> None:
        for upd in updates:
            try:
                if upd.key.startswith(keys.IPAM_BLOCKS):
                    self._block(upd.key, upd.value)
                elif upd.key.startswith(keys.RESOURCES):
                    self._resource(upd.key, upd.value)
            except Exception as exc:  # one bad key must not stop the others
                self.bad_values += 1
                log.warning(
                    "datastore value ignored (treated as deleted) key=%s revision=%s error=%s",
                    upd.key,
                    upd.revision,
                    exc,
                )

    def _block(self, key: str, value: bytes | None) -> None:
        cidr_from_key = keys.cidr_from_key(key)
        if value is None:
            self._graph.remove_block(cidr_from_key)
            return
        try:
            cidr, node = parse_block(value)
        except BadValue:
            self._graph.remove_block(cidr_from_key)
            raise
        self._graph.update_block(cidr, node)

    def _resource(self, key: str, value: bytes | None) -> None:
        ident = resource_identity(key)
        if ident is None:
            return
        kind, name, namespace = ident
        if value is None:
            self._graph.remove_resource(kind, name, namespace)
            return
        try:
            res = self._parse(json.loads(value))
            if kind != type(res).KIND or res.name != name or (res.namespace or None) != namespace:
                raise BadValue(
                    f"value names {type(res).KIND} {res.namespace or ''}/{res.name}, "
                    f"key names {kind} {namespace or ''}/{name}"
                )
        except Exception:
            self._graph.remove_resource(kind, name, namespace)
            raise
        self._graph.update_resource(res)
