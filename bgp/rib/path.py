"""A route as the RIB holds it: a prefix, its attributes and who told us."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from bgp.wire.types import PathAttributes, Prefix

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class PeerRef:
    """The source of a path, as the decision process and export rules need it.

    ``address`` None means the route was originated by this speaker.
    """

    address: IPAddress | None
    asn: int
    router_id: ipaddress.IPv4Address
    ibgp: bool
    rr_client: bool = False

    @property
    def local(self) -> bool:
        return self.address is None

    @property
    def name(self) -> str:
        return "local" if self.address is None else str(self.address)


@dataclass(slots=True)
class Path:
    """One path for one destination. ``attrs`` are the attributes after import policy."""

    prefix: Prefix
    attrs: PathAttributes
    source: PeerRef
    stale: bool = False
    accepted: bool = True

    @property
    def next_hop(self) -> IPAddress | None:
        return self.attrs.next_hop
