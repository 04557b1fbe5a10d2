"""One IPAM allocation block: pure arithmetic and its JSON codec, no I/O.

A block is a small CIDR (a /26 by default) owned ("affine") to one node. Each address
has an ordinal (its offset in the block). ``allocations[ordinal]`` is ``None`` when
free, else an index into ``attributes`` (which handle holds it, plus free-form
secondary attributes such as the pod name). ``unallocated`` lists free ordinals in the
order they will be handed out: released ordinals go to the back, so an address just
freed is reused last (a late packet for a dead pod does not reach a new one).

The JSON field names are shared with Felix, which reads ``cidr`` and ``affinity``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from ipam.errors import AddressInUse

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

HOST_PREFIX = "host:"


def host_affinity(node: str) -> str:
    """The affinity string of a node ("host:node-a"), as Calico writes it."""
    return f"{HOST_PREFIX}{node}"


def affinity_node(affinity: str | None) -> str | None:
    """The node named by an affinity string, or None for no/other affinity."""
    if affinity and affinity.startswith(HOST_PREFIX):
        return affinity[len(HOST_PREFIX) :]
    return None


@dataclass(frozen=True)
class Attribute:
    """Who holds an address. Equal attributes share one entry in ``attributes``."""

    handle_id: str | None
    secondary: dict[str, str] = field(default_factory=dict)


@dataclass
class AllocationBlock:
    cidr: IPNetwork
    affinity: str | None
    strict_affinity: bool = False
    allocations: list[int | None] = field(default_factory=list)
    unallocated: list[int] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    sequence_number: int = 0

    # --- construction -------------------------------------------------------------

    @classmethod
    def new(
        cls, cidr: str | IPNetwork, affinity: str | None, strict_affinity: bool = False
    ) -> AllocationBlock:
        """An empty block: every ordinal free, handed out lowest first."""
        net = ipaddress.ip_network(cidr) if isinstance(cidr, str) else cidr
        size = net.num_addresses
        return cls(
            cidr=net,
            affinity=affinity,
            strict_affinity=strict_affinity,
            allocations=[None] * size,
            unallocated=list(range(size)),
        )

    # --- addresses ----------------------------------------------------------------

    @property
    def size(self) -> int:
        return self.cidr.num_addresses

    @property
    def prefixlen(self) -> int:
        return self.cidr.prefixlen

    def contains(self, ip: IPAddress) -> bool:
        return ip.version == self.cidr.version and ip in self.cidr

    def ordinal(self, ip: IPAddress) -> int:
        """Offset of ``ip`` in the block; ``ValueError`` if it lies outside."""
        if not self.contains(ip):
            raise ValueError(f"{ip} is not in block {self.cidr}")
        return int(ip) - int(self.cidr.network_address)

    def address(self, ordinal: int) -> IPAddress:
        if not 0 <= ordinal < self.size:
            raise ValueError(f"ordinal {ordinal} outside block {self.cidr}")
        return self.cidr.network_address + ordinal

    # --- counts -------------------------------------------------------------------

    @property
    def in_use(self) -> int:
        return sum(1 for a in self.allocations if a is not None)

    @property
    def free(self) -> int:
        return len(self.unallocated)

    def is_empty(self) -> bool:
        return self.in_use == 0

    def handle_counts(self) -> dict[str, int]:
        """Addresses held per handle (handle-less allocations are not counted)."""
        counts: dict[str, int] = {}
        for idx in self.allocations:
            if idx is None:
                continue
            h = self.attributes[idx].handle_id
            if h is not None:
                counts[h] = counts.get(h, 0) + 1
        return counts

    def holder(self, ip: IPAddress) -> Attribute | None:
        """The attribute of an allocated address, None if free."""
        idx = self.allocations[self.ordinal(ip)]
        return None if idx is None else self.attributes[idx]

    def ips_for_handle(self, handle: str) -> list[IPAddress]:
        return [
            self.address(o)
            for o, idx in enumerate(self.allocations)
            if idx is not None and self.attributes[idx].handle_id == handle
        ]

    # --- mutation -----------------------------------------------------------------

    def _attr_index(self, attr: Attribute) -> int:
        for i, existing in enumerate(self.attributes):
            if existing == attr:
                return i
        self.attributes.append(attr)
        return len(self.attributes) - 1

    def allocate(
        self, n: int, handle: str | None, secondary: dict[str, str] | None = None
    ) -> list[IPAddress]:
        """Take up to ``n`` free addresses (fewer if the block runs out)."""
        if n <= 0 or not self.unallocated:
            return []
        idx = self._attr_index(Attribute(handle, dict(secondary or {})))
        taken = self.unallocated[:n]
        del self.unallocated[: len(taken)]
        for o in taken:
            self.allocations[o] = idx
        self.sequence_number += 1
        return [self.address(o) for o in taken]

    def assign(self, ip: IPAddress, handle: str | None, secondary: dict[str, str] | None) -> None:
        """Take one specific address; ``AddressInUse`` if anybody holds it."""
        o = self.ordinal(ip)
        current = self.allocations[o]
        if current is not None:
            raise AddressInUse(str(ip), self.attributes[current].handle_id)
        self.allocations[o] = self._attr_index(Attribute(handle, dict(secondary or {})))
        self.unallocated.remove(o)
        self.sequence_number += 1

    def release(self, ips: Iterable[IPAddress]) -> tuple[list[IPAddress], dict[str, int]]:
        """Free the given addresses of this block.

        Returns the addresses that were NOT allocated (nothing to do for them) and how
        many addresses each handle lost, so the caller can fix the handle records.
        """
        not_allocated: list[IPAddress] = []
        released: dict[str, int] = {}
        changed = False
        for ip in ips:
            o = self.ordinal(ip)
            idx = self.allocations[o]
            if idx is None:
                not_allocated.append(ip)
                continue
            h = self.attributes[idx].handle_id
            if h is not None:
                released[h] = released.get(h, 0) + 1
            self.allocations[o] = None
            self.unallocated.append(o)
            changed = True
        if changed:
            self._compact_attributes()
            self.sequence_number += 1
        return not_allocated, released

    def release_handle(self, handle: str) -> list[IPAddress]:
        """Free every address held by ``handle``; returns them."""
        ips = self.ips_for_handle(handle)
        self.release(ips)
        return ips

    def _compact_attributes(self) -> None:
        """Drop attributes no allocation refers to and renumber the rest."""
        used = sorted({i for i in self.allocations if i is not None})
        remap = {old: new for new, old in enumerate(used)}
        self.attributes = [self.attributes[i] for i in used]
        self.allocations = [None if i is None else remap[i] for i in self.allocations]

    # --- codec --------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "cidr": str(self.cidr),
            "affinity": self.affinity,
            "strictAffinity": self.strict_affinity,
            "allocations": list(self.allocations),
            "unallocated": list(self.unallocated),
            "attributes": [
                {"handleID": a.handle_id, "secondary": dict(a.secondary)} for a in self.attributes
            ],
            "sequenceNumber": self.sequence_number,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> AllocationBlock:
        """Decode and check a stored block; ``ValueError`` names the bad field."""
        try:
            d = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"not JSON: {e}") from None
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        try:
            cidr = ipaddress.ip_network(d["cidr"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"field cidr: {e}") from None
        size = cidr.num_addresses
        affinity = d.get("affinity")
        if affinity is not None and not isinstance(affinity, str):
            raise ValueError("field affinity: not a string or null")
        attributes: list[Attribute] = []
        for i, a in enumerate(d.get("attributes") or []):
            if not isinstance(a, dict):
                raise ValueError(f"field attributes[{i}]: not an object")
            attributes.append(Attribute(a.get("handleID"), dict(a.get("secondary") or {})))
        allocations = d.get("allocations")
        if not isinstance(allocations, list) or len(allocations) != size:
            raise ValueError(f"field allocations: want a list of {size} entries")
        for o, idx in enumerate(allocations):
            if idx is not None and not (isinstance(idx, int) and 0 <= idx < len(attributes)):
                raise ValueError(f"field allocations[{o}]: bad attribute index {idx!r}")
        unallocated = d.get("unallocated")
        if not isinstance(unallocated, list):
            raise ValueError("field unallocated: not a list")
        free = {o for o, idx in enumerate(allocations) if idx is None}
        if sorted(unallocated) != sorted(free):
            raise ValueError("field unallocated: does not match the free entries of allocations")
        return cls(
            cidr=cidr,
            affinity=affinity,
            strict_affinity=bool(d.get("strictAffinity", False)),
            allocations=allocations,
            unallocated=unallocated,
            attributes=attributes,
            sequence_number=int(d.get("sequenceNumber", 0)),
        )
