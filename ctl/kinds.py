"""Names an operator may type for a kind on the command line (``tabbyctl get pools``)."""

from __future__ import annotations

from model.resources import ALL_KINDS, Resource

# Short names in calicoctl's spirit; singular and plural of every kind work too.
_ALIASES = {
    "ipp": "IPPool",
    "pool": "IPPool",
    "pools": "IPPool",
    "no": "Node",
    "bgpconfig": "BGPConfiguration",
    "bgpconfigs": "BGPConfiguration",
    "bgpp": "BGPPeer",
    "felixconfig": "FelixConfiguration",
    "felixconfigs": "FelixConfiguration",
    "ipamconfig": "IPAMConfiguration",
    "ipamconfigs": "IPAMConfiguration",
    "wep": "WorkloadEndpoint",
    "weps": "WorkloadEndpoint",
}


def _build_table() -> dict[str, type[Resource]]:
    table: dict[str, type[Resource]] = {}
    by_kind = {k.KIND: k for k in ALL_KINDS}
    for kind in ALL_KINDS:
        table[kind.KIND.lower()] = kind
        table[kind.PLURAL] = kind
    for alias, kind_name in _ALIASES.items():
        table[alias] = by_kind[kind_name]
    return table


_TABLE = _build_table()


class UnknownKind(ValueError):
    pass


def resolve_kind(text: str) -> type[Resource]:
    try:
        return _TABLE[text.lower()]
    except KeyError:
        known = ", ".join(sorted(k.KIND.lower() for k in ALL_KINDS))
        raise UnknownKind(f"unknown resource kind {text!r} (known: {known})") from None
