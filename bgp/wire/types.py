"""Plain values shared by the BGP codec, the RIB and the daemon. No I/O, no encoding.

The codec (``bgp.wire``) turns bytes into these and back; the RIB and decision
process (``bgp.rib``) reason about them. Keep them small and hashable where a RIB
needs them as keys.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

# Address families (RFC 4760).
AFI_IPV4 = 1
AFI_IPV6 = 2
SAFI_UNICAST = 1

# ORIGIN values (RFC 4271 4.3).
ORIGIN_IGP = 0
ORIGIN_EGP = 1
ORIGIN_INCOMPLETE = 2

# AS_PATH segment types (RFC 4271 4.3; confederations, RFC 5065, are decoded but unused).
AS_SET = 1
AS_SEQUENCE = 2
AS_CONFED_SEQUENCE = 3
AS_CONFED_SET = 4

AS_TRANS = 23456  # RFC 6793

# Well-known communities (RFC 1997).
NO_EXPORT = 0xFFFFFF01
NO_ADVERTISE = 0xFFFFFF02
NO_EXPORT_SUBCONFED = 0xFFFFFF03


_MASK4 = tuple((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF for n in range(33))
_MASK6 = tuple(((1 << 128) - 1) ^ ((1 << (128 - n)) - 1) for n in range(129))

# Prefix key layout, one int so that a table of prefixes holds no extra tuples (ints
# are not tracked by the garbage collector) and so that int order is prefix order:
#   bit 168: IPv6 | bits 40..167: address | bits 32..39: prefix length | 0..31: path id
KEY_V6 = 1 << 168
KEY_ADDR_SHIFT = 40
KEY_PLEN_SHIFT = 32
_ADDR_MASK = (1 << 128) - 1


def prefix_key(version: int, address: int, prefixlen: int, path_id: int = 0) -> int:
    return (
        (KEY_V6 if version == 6 else 0)
        | (address << KEY_ADDR_SHIFT)
        | (prefixlen << KEY_PLEN_SHIFT)
        | path_id
    )


class Prefix:
    """One NLRI: an IPv4 or IPv6 network, and its ADD-PATH path identifier (0: none).

    Stored as one integer key (see ``prefix_key``) so the codec can build one without
    ``ipaddress`` (the hot path of a full-table load); ``.network`` is built on first
    use and cached. Equality, hashing and ordering use the key: within a version the
    order is the ``ipaddress`` network order, then path id; IPv4 sorts before IPv6.
    """

    __slots__ = ("_key", "_net")

    def __init__(
        self,
        network: ipaddress.IPv4Network | ipaddress.IPv6Network | str,
        path_id: int = 0,
    ) -> None:
        if isinstance(network, str):
            network = ipaddress.ip_network(network)
        elif not isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network):
            raise TypeError(f"Prefix needs an IPv4Network or IPv6Network, not {network!r}")
        if not 0 <= path_id <= 0xFFFFFFFF:
            raise ValueError(f"path id {path_id} out of range")
        self._key = prefix_key(
            network.version, int(network.network_address), network.prefixlen, path_id
        )
        self._net = network

    @classmethod
    def from_int(cls, version: int, address: int, prefixlen: int, path_id: int = 0) -> Prefix:
        """Build from raw parts; host bits are cleared (RFC 4271: trailing bits irrelevant)."""
        mask = _MASK4 if version == 4 else _MASK6
        obj = object.__new__(cls)
        obj._key = prefix_key(version, address & mask[prefixlen], prefixlen, path_id)
        obj._net = None
        return obj

    @classmethod
    def from_key(cls, key: int) -> Prefix:
        obj = object.__new__(cls)
        obj._key = key
        obj._net = None
        return obj

    @property
    def key(self) -> int:
        return self._key

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        net = self._net
        if net is None:
            key = self._key
            address = (key >> KEY_ADDR_SHIFT) & _ADDR_MASK
            plen = (key >> KEY_PLEN_SHIFT) & 0xFF
            if key & KEY_V6:
                net = ipaddress.IPv6Network((address, plen))
            else:
                net = ipaddress.IPv4Network((address, plen))
            self._net = net
        return net

    @property
    def path_id(self) -> int:
        return self._key & 0xFFFFFFFF

    @property
    def afi(self) -> int:
        return AFI_IPV6 if self._key & KEY_V6 else AFI_IPV4

    @property
    def version(self) -> int:
        return 6 if self._key & KEY_V6 else 4

    @property
    def address(self) -> int:
        """The network address as an integer."""
        return (self._key >> KEY_ADDR_SHIFT) & _ADDR_MASK

    @property
    def prefixlen(self) -> int:
        return (self._key >> KEY_PLEN_SHIFT) & 0xFF

    def with_path_id(self, path_id: int) -> Prefix:
        obj = object.__new__(Prefix)
        obj._key = (self._key & ~0xFFFFFFFF) | path_id
        obj._net = self._net
        return obj

    def __eq__(self, other: object) -> bool:
        if other.__class__ is Prefix:
            return self._key == other._key  # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key)

    def __lt__(self, other: Prefix) -> bool:
        return self._key < other._key

    def __le__(self, other: Prefix) -> bool:
        return self._key <= other._key

    def __gt__(self, other: Prefix) -> bool:
        return self._key > other._key

    def __ge__(self, other: Prefix) -> bool:
        return self._key >= other._key

    def __reduce__(self) -> tuple:
        return (Prefix.from_key, (self._key,))

    def __str__(self) -> str:
        path_id = self._key & 0xFFFFFFFF
        return str(self.network) if not path_id else f"{self.network}#{path_id}"

    def __repr__(self) -> str:
        path_id = self._key & 0xFFFFFFFF
        tail = f", path_id={path_id}" if path_id else ""
        return f"Prefix('{self.network}'{tail})"


@dataclass(frozen=True)
class AsPathSegment:
    type: int  # AS_SEQUENCE, AS_SET, ...
    asns: tuple[int, ...]


def as_path_length(path: tuple[AsPathSegment, ...]) -> int:
    """How many ASes a path counts as (RFC 4271 9.1.2.2 a, RFC 6793 4.2.3): a set is
    one AS, confederation segments count zero."""
    length = 0
    for seg in path:
        if seg.type == AS_SEQUENCE:
            length += len(seg.asns)
        elif seg.type == AS_SET:
            length += 1
    return length


@dataclass(frozen=True)
class UnknownAttribute:
    """An attribute this speaker does not interpret, kept to pass on if transitive."""

    flags: int
    type_code: int
    value: bytes


@dataclass(frozen=True)
class PathAttributes:
    """The attributes of one path, decoded. ``None`` means the attribute was absent.

    ``next_hop`` holds the IPv4 NEXT_HOP attribute or, for MP_REACH routes, the
    next hop from MP_REACH_NLRI (the first, global address for IPv6).
    ``as_path`` is always the effective 4-octet path (AS4_PATH merged, RFC 6793 4.2.3).
    """

    origin: int | None = None
    as_path: tuple[AsPathSegment, ...] = ()
    next_hop: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    next_hop_link_local: ipaddress.IPv6Address | None = None
    med: int | None = None
    local_pref: int | None = None
    atomic_aggregate: bool = False
    aggregator: tuple[int, ipaddress.IPv4Address] | None = None
    communities: tuple[int, ...] = ()
    large_communities: tuple[tuple[int, int, int], ...] = ()
    originator_id: ipaddress.IPv4Address | None = None
    cluster_list: tuple[ipaddress.IPv4Address, ...] = ()
    unknown: tuple[UnknownAttribute, ...] = field(default=())

    def as_path_length(self) -> int:
        """RFC 4271 9.1.2.2 a: an AS_SET counts as 1; confederation segments count 0."""
        return as_path_length(self.as_path)

    def first_as(self) -> int | None:
        for seg in self.as_path:
            if seg.type == AS_SEQUENCE and seg.asns:
                return seg.asns[0]
            return None
        return None

    def contains_as(self, asn: int) -> bool:
        return any(asn in seg.asns for seg in self.as_path)
