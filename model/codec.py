"""Documents <-> typed resources: the strict, mechanical half of reading operator YAML.

``parse_resource`` checks shape only (known kind, known fields, right types, required
fields present); it fills no defaults and judges no meaning, which is
``model.validation``'s job. Unknown fields are errors rather than silently dropped,
because a typo such as ``blokSize`` would otherwise leave a pool with a block size the
operator never asked for.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import functools
import json
import types
import typing
from collections.abc import Mapping
from typing import Any

import yaml

from model.errors import ValidationError, describe
from model.resources import API_VERSION, KINDS_BY_NAME, ObjectMeta, Resource

# snake_case field -> camelCase key where the mechanical rule (capitalise each word
# after the first) would not give Calico's spelling, because of acronyms.
FIELD_NAME_EXCEPTIONS: dict[str, str] = {
    "peer_ip": "peerIP",
    "ipv4_vxlan_tunnel_addr": "ipv4VXLANTunnelAddr",
    "vxlan_tunnel_mac_addr": "vxlanTunnelMACAddr",
    "ipv4_ipip_tunnel_addr": "ipv4IPIPTunnelAddr",
    "route_reflector_cluster_id": "routeReflectorClusterID",
    "ip_networks": "ipNetworks",
    "container_id": "containerID",
    "vxlan_mtu": "vxlanMTU",
    "vxlan_vni": "vxlanVNI",
    "ipip_mtu": "ipipMTU",
    "service_cluster_ips": "serviceClusterIPs",
    "ipv4_address": "ipv4Address",
    "ipv6_address": "ipv6Address",
    "disable_bgp_export": "disableBGPExport",
}
_CAMEL_EXCEPTIONS = {v: k for k, v in FIELD_NAME_EXCEPTIONS.items()}

_TOP_LEVEL_KEYS = ("apiVersion", "kind", "metadata", "spec")


def to_camel(name: str) -> str:
    """``block_size`` -> ``blockSize``; acronyms per FIELD_NAME_EXCEPTIONS."""
    if name in FIELD_NAME_EXCEPTIONS:
        return FIELD_NAME_EXCEPTIONS[name]
    first, *rest = name.split("_")
    return first + "".join(w[:1].upper() + w[1:] for w in rest)


def to_snake(key: str) -> str:
    """``blockSize`` -> ``block_size``; the inverse of ``to_camel`` on known names."""
    if key in _CAMEL_EXCEPTIONS:
        return _CAMEL_EXCEPTIONS[key]
    out = []
    for ch in key:
        if ch.isupper():
            out.append("_" + ch.lower())
        else:
            out.append(ch)
    return "".join(out)


# --- type-directed conversion ------------------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _keys(cls: type) -> dict[str, dataclasses.Field]:
    """camelCase document key -> dataclass field, for one dataclass."""
    return {to_camel(f.name): f for f in dataclasses.fields(cls)}


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _shown(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _unknown_field(path: str, key: Any, known: list[str]) -> ValidationError:
    field = _join(path, str(key))
    hint = ""
    if isinstance(key, str):
        lowered = {k.lower(): k for k in known}
        guess = lowered.get(key.lower()) or next(
            iter(difflib.get_close_matches(key, known, n=1, cutoff=0.75)), None
        )
        if guess:
            hint = f" (did you mean {guess!r}?)"
    return ValidationError(field, f"unknown field{hint}")


def _timestamp_text(value: datetime.date) -> str:
    text = value.isoformat()
    return text[: -len("+00:00")] + "Z" if text.endswith("+00:00") else text


def _convert(tp: Any, value: Any, path: str) -> Any:
    """``value`` from a document as the Python type ``tp``; errors name ``path``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(inner, value, path)
    if tp is str:
        if isinstance(value, datetime.date):
            # yaml.safe_load turns unquoted timestamps/dates into objects; take them back.
            return _timestamp_text(value)
        if not isinstance(value, str):
            hint = " (quote the value)" if isinstance(value, bool | int | float) else ""
            raise ValidationError(path, f"expected a string, got {_shown(value)}{hint}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValidationError(path, f"expected true or false, got {_shown(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(path, f"expected an integer, got {_shown(value)}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ValidationError(path, f"expected a list, got {_shown(value)}")
        return [_convert(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise ValidationError(path, f"expected a mapping, got {_shown(value)}")
        out = {}
        for k, v in value.items():
            if not isinstance(k, key_tp):
                raise ValidationError(_join(path, str(k)), "keys must be strings (quote the key)")
            out[k] = _convert(val_tp, v, _join(path, k))
        return out
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, path)
    raise TypeError(f"model.codec cannot convert type {tp!r} at {path}")  # a model bug


def _convert_dataclass(cls: type, value: Any, path: str) -> Any:
    if not isinstance(value, Mapping):
        raise ValidationError(path, f"expected a mapping, got {_shown(value)}")
    keys = _keys(cls)
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for key, raw in value.items():
        f = keys.get(key) if isinstance(key, str) else None
        if f is None:
            raise _unknown_field(path, key, list(keys))
        if raw is None:
            continue  # explicit null means "not set", as in Kubernetes
        kwargs[f.name] = _convert(hints[f.name], raw, _join(path, key))
    for key, f in keys.items():
        if f.name not in kwargs and not _has_default(f):
            raise ValidationError(_join(path, key), "required field is missing")
    return cls(**kwargs)


def _unconvert(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return _dataclass_to_dict(value)
    if isinstance(value, list):
        return [_unconvert(v) for v in value]
    if isinstance(value, dict):
        return {k: _unconvert(v) for k, v in value.items()}
    return value


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and not value)


def _dataclass_to_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        # Drop unset values, but keep an empty value whose default is not empty (e.g.
        # nodeSelector "" vs "all()"), so parsing the output gives back the same object.
        if value is None or (_is_empty(value) and _has_default(f) and value == _default(f)):
            continue
        out[to_camel(f.name)] = _unconvert(value)
    return out


# --- resources ---------------------------------------------------------------------


def _describe_raw(doc: Mapping[str, Any]) -> str:
    kind = doc.get("kind")
    meta = doc.get("metadata")
    name = namespace = None
    if isinstance(meta, Mapping):
        name = meta.get("name") if isinstance(meta.get("name"), str) else None
        namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else None
    return describe(kind if isinstance(kind, str) else "", name, namespace)


def parse_resource(doc: dict) -> Resource:
    """A document (``apiVersion``, ``kind``, ``metadata``, ``spec``) as its dataclass.

    Raises ValidationError naming the resource and the field path in the document.
    """
    if not isinstance(doc, Mapping):
        raise ValidationError("", f"expected a resource mapping, got {_shown(doc)}")
    where = _describe_raw(doc)
    try:
        return _parse(doc)
    except ValidationError as err:
        raise err.with_resource(where) from None


def _parse(doc: Mapping[str, Any]) -> Resource:
    for key in doc:
        if key not in _TOP_LEVEL_KEYS:
            raise _unknown_field("", key, list(_TOP_LEVEL_KEYS))
    api_version = doc.get("apiVersion")
    if api_version is None:
        raise ValidationError("apiVersion", f"required field is missing (use {API_VERSION!r})")
    if api_version != API_VERSION:
        hint = ""
        if api_version == "projectcalico.org/v3":
            hint = " (a Calico resource: change apiVersion; field names are the same)"
        raise ValidationError("apiVersion", f"expected {API_VERSION!r}, got {api_version!r}{hint}")
    kind = doc.get("kind")
    if kind is None:
        raise ValidationError("kind", "required field is missing")
    cls = KINDS_BY_NAME.get(kind) if isinstance(kind, str) else None
    if cls is None:
        known = sorted(KINDS_BY_NAME)
        guess = {k.lower(): k for k in known}.get(str(kind).lower())
        hint = f"did you mean {guess!r}?" if guess else f"expected one of {', '.join(known)}"
        raise ValidationError("kind", f"unknown kind {kind!r} ({hint})")
    if doc.get("metadata") is None:
        raise ValidationError("metadata", "required field is missing (it needs at least a name)")
    metadata = _convert(ObjectMeta, doc["metadata"], "metadata")
    spec_cls = _hints(cls)["spec"]
    raw_spec = doc.get("spec")
    spec = _convert(spec_cls, {} if raw_spec is None else raw_spec, "spec")
    return cls(metadata=metadata, spec=spec)  # type: ignore[call-arg]


def resource_to_dict(res: Resource) -> dict:
    """The camelCase document for ``res``; ``parse_resource`` of it gives ``res`` back."""
    return {
        "apiVersion": API_VERSION,
        "kind": res.KIND,
        "metadata": _dataclass_to_dict(res.metadata),
        "spec": _dataclass_to_dict(res.spec),  # type: ignore[attr-defined]
    }


# --- documents ---------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings (creationTimestamp, date labels)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _expand(doc: Any, where: str) -> list[dict]:
    """One loaded document as the resource mappings it holds (a List holds several)."""
    if isinstance(doc, list):
        out: list[dict] = []
        for i, item in enumerate(doc):
            if isinstance(item, list):
                raise ValidationError(f"{where}[{i}]", "expected a resource mapping, got a list")
            out.extend(_expand(item, f"{where}[{i}]"))
        return out
    if not isinstance(doc, Mapping):
        raise ValidationError(
            where, f"expected a resource mapping (apiVersion, kind, ...), got {_shown(doc)}"
        )
    if doc.get("kind") == "List":
        items = doc.get("items")
        if not isinstance(items, list):
            raise ValidationError(f"{where}.items", "a List needs an 'items' list")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise ValidationError(
                    f"{where}.items[{i}]", f"expected a resource mapping, got {_shown(item)}"
                )
            out.append(dict(item))
        return out
    return [dict(doc)]


def _load_yaml(text: str) -> list[Any]:
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ValidationError("", f"invalid YAML{where}: {problem}") from None


def load_documents(text: str) -> list[dict]:
    """Resource mappings from multi-document YAML, a JSON object or list, or a ``List``.

    Empty YAML documents are skipped. Errors name the document as ``documents[i]``
    (0-based) and, for syntax errors, the line and column.
    """
    stripped = text.strip()
    if not stripped:
        return []
    if stripped[0] in "{[":
        try:
            top = json.loads(stripped)
        except json.JSONDecodeError as e:
            # Flow-style YAML also starts with "{" or "["; report the JSON error only
            # when YAML cannot read the text either.
            try:
                loaded = _load_yaml(text)
            except ValidationError:
                raise ValidationError(
                    "", f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
                ) from None
            if len(loaded) != 1:
                raise ValidationError("", "invalid JSON: expected one object or list") from None
            top = loaded[0]
        if isinstance(top, list):
            return _expand(top, "documents")
        return _expand(top, "documents[0]")
    docs: list[dict] = []
    for i, doc in enumerate(_load_yaml(text)):
        if doc is not None:
            docs.extend(_expand(doc, f"documents[{i}]"))
    return docs


def parse_documents(text: str) -> list[Resource]:
    """``load_documents`` then ``parse_resource`` on each: the usual `apply -f` path."""
    return [parse_resource(d) for d in load_documents(text)]


def dump_documents(resources: list[Resource], fmt: str) -> str:
    """``yaml``: ``---``-separated documents; ``json``: one object, or a List for several."""
    docs = [resource_to_dict(r) for r in resources]
    if fmt == "yaml":
        return "---\n".join(
            yaml.safe_dump(d, sort_keys=False, default_flow_style=False, allow_unicode=True)
            for d in docs
        )
    if fmt == "json":
        body: dict[str, Any] = docs[0] if len(docs) == 1 else {"kind": "List", "items": docs}
        return json.dumps(body, indent=2) + "\n"
    raise ValueError(f"unknown output format {fmt!r} (expected 'yaml' or 'json')")
