"""ROUTE-REFRESH (RFC 2918; the subtype octet is RFC 7313's enhanced refresh marker)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from bgp.wire.header import ROUTE_REFRESH, register

if TYPE_CHECKING:
    from bgp.wire.negotiated import Negotiated

SUBTYPE_NORMAL = 0
SUBTYPE_BEGIN = 1  # RFC 7313 beginning of route refresh
SUBTYPE_END = 2  # RFC 7313 end of route refresh


@register(ROUTE_REFRESH)
@dataclass(frozen=True)
class RouteRefresh:
    """Ask the peer to re-send its Adj-RIB-Out for one family."""

    afi: int
    safi: int
    subtype: int = SUBTYPE_NORMAL
    type_code: ClassVar[int] = ROUTE_REFRESH

    @classmethod
    def decode_body(cls, body: bytes, ctx: Negotiated) -> RouteRefresh:
        afi, subtype, safi = struct.unpack("!HBB", body)
        return cls(afi, safi, subtype)

    def encode_body(self, ctx: Negotiated) -> bytes:
        return struct.pack("!HBB", self.afi, self.subtype, self.safi)
