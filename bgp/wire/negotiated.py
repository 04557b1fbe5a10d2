"""What two speakers agreed in their OPEN exchange; passed to every encode/decode.

4-octet AS, ADD-PATH and extended messages change the wire encoding, so the codec
never guesses: it reads them from a ``Negotiated``. ``Negotiated.default()`` stands in
where no OPEN was exchanged (unit tests, tools): 4-octet AS, IPv4 and IPv6 unicast.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bgp.wire.capabilities import (
    ADD_PATH_RECEIVE,
    ADD_PATH_SEND,
    AddPath,
    ExtendedMessage,
    FourOctetAs,
    GracefulRestart,
    Multiprotocol,
    RouteRefreshCapability,
)
from bgp.wire.types import AFI_IPV4, AFI_IPV6, SAFI_UNICAST

if TYPE_CHECKING:
    from bgp.wire.open import Open

Family = tuple[int, int]

IPV4_UNICAST: Family = (AFI_IPV4, SAFI_UNICAST)
IPV6_UNICAST: Family = (AFI_IPV6, SAFI_UNICAST)

MAX_MESSAGE = 4096
MAX_EXTENDED_MESSAGE = 65535


@dataclass(frozen=True)
class Negotiated:
    """The session parameters both sides agreed on (RFC 5492: only shared capabilities)."""

    local_as: int = 0
    peer_as: int = 0
    four_octet_as: bool = True
    families: frozenset[Family] = frozenset({IPV4_UNICAST, IPV6_UNICAST})
    add_path_receive: frozenset[Family] = frozenset()
    add_path_send: frozenset[Family] = frozenset()
    route_refresh: bool = False
    graceful_restart: GracefulRestart | None = None  # the peer's capability, if any
    extended_message: bool = False
    hold_time: int = 90  # min of both OPENs (RFC 4271 4.2)
    local_id: ipaddress.IPv4Address = field(default=ipaddress.IPv4Address(0))
    peer_id: ipaddress.IPv4Address = field(default=ipaddress.IPv4Address(0))

    @property
    def ibgp(self) -> bool:
        return self.local_as == self.peer_as

    @property
    def max_message_size(self) -> int:
        return MAX_EXTENDED_MESSAGE if self.extended_message else MAX_MESSAGE

    @classmethod
    def default(cls, **overrides: object) -> Negotiated:
        return cls(**overrides)  # type: ignore[arg-type]

    @classmethod
    def from_opens(cls, local: Open, remote: Open) -> Negotiated:
        """Combine our OPEN and the peer's (RFC 5492, RFC 4760, RFC 6793, RFC 7911)."""
        families = _families(local) & _families(remote)
        local_ap = _add_path(local)
        remote_ap = _add_path(remote)
        receive = frozenset(
            f
            for f in families
            if local_ap.get(f, 0) & ADD_PATH_RECEIVE and remote_ap.get(f, 0) & ADD_PATH_SEND
        )
        send = frozenset(
            f
            for f in families
            if local_ap.get(f, 0) & ADD_PATH_SEND and remote_ap.get(f, 0) & ADD_PATH_RECEIVE
        )
        four = local.find(FourOctetAs) is not None and remote.find(FourOctetAs) is not None
        return cls(
            local_as=local.asn,
            peer_as=remote.asn,
            four_octet_as=four,
            families=frozenset(families),
            add_path_receive=receive,
            add_path_send=send,
            route_refresh=local.find(RouteRefreshCapability) is not None
            and remote.find(RouteRefreshCapability) is not None,
            graceful_restart=remote.find(GracefulRestart),
            extended_message=local.find(ExtendedMessage) is not None
            and remote.find(ExtendedMessage) is not None,
            hold_time=min(local.hold_time, remote.hold_time),
            local_id=local.bgp_id,
            peer_id=remote.bgp_id,
        )


def _families(open_msg: Open) -> set[Family]:
    """RFC 4760 8: a speaker that advertises no multiprotocol capability does IPv4 unicast."""
    fams = {(c.afi, c.safi) for c in open_msg.capabilities if isinstance(c, Multiprotocol)}
    return fams or {IPV4_UNICAST}


def _add_path(open_msg: Open) -> dict[Family, int]:
    modes: dict[Family, int] = {}
    for cap in open_msg.capabilities:
        if isinstance(cap, AddPath):
            for afi, safi, mode in cap.families:
                modes[(afi, safi)] = mode
    return modes
