"""OPEN (RFC 4271 4.2) with the Capabilities optional parameter (RFC 5492).

Also reads RFC 9072 extended optional parameters, which peers with many capabilities
may send.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, TypeVar

from bgp.wire.capabilities import (
    AddPath,
    Capability,
    ExtendedMessage,
    FourOctetAs,
    GracefulRestart,
    Multiprotocol,
    RouteRefreshCapability,
    decode_capabilities,
)
from bgp.wire.errors import (
    BAD_BGP_IDENTIFIER,
    BAD_PEER_AS,
    OPEN_MESSAGE_ERROR,
    UNACCEPTABLE_HOLD_TIME,
    UNSPECIFIC,
    UNSUPPORTED_OPTIONAL_PARAMETER,
    UNSUPPORTED_VERSION_NUMBER,
    BgpError,
)
from bgp.wire.header import OPEN, register
from bgp.wire.types import AS_TRANS

if TYPE_CHECKING:
    from bgp.wire.negotiated import Family, Negotiated

BGP_VERSION = 4
PARAM_CAPABILITIES = 2
PARAM_EXTENDED = 255  # RFC 9072 marker in the non-extended type position

C = TypeVar("C", bound=Capability)


@register(OPEN)
@dataclass(frozen=True)
class Open:
    """First message of a session: who we are and what we can do."""

    my_as: int
    hold_time: int
    bgp_id: ipaddress.IPv4Address
    capabilities: list[Capability] = field(default_factory=list)
    version: int = BGP_VERSION
    type_code: ClassVar[int] = OPEN

    @classmethod
    def for_speaker(
        cls,
        asn: int,
        bgp_id: ipaddress.IPv4Address | str,
        hold_time: int = 90,
        families: tuple[Family, ...] = ((1, 1), (2, 1)),
        route_refresh: bool = True,
        add_path: tuple[tuple[int, int, int], ...] = (),
        graceful_restart: GracefulRestart | None = None,
        extended_message: bool = False,
    ) -> Open:
        """The OPEN a Tabby speaker sends: 4-octet AS always, AS_TRANS when > 65535."""
        caps: list[Capability] = [Multiprotocol(afi, safi) for afi, safi in families]
        if route_refresh:
            caps.append(RouteRefreshCapability())
        if extended_message:
            caps.append(ExtendedMessage())
        if graceful_restart is not None:
            caps.append(graceful_restart)
        caps.append(FourOctetAs(asn))
        if add_path:
            caps.append(AddPath(add_path))
        return cls(
            my_as=asn if asn <= 0xFFFF else AS_TRANS,
            hold_time=hold_time,
            bgp_id=ipaddress.IPv4Address(bgp_id),
            capabilities=caps,
        )

    @property
    def asn(self) -> int:
        """The speaker's real AS: the 4-octet AS capability if present (RFC 6793)."""
        cap = self.find(FourOctetAs)
        return cap.asn if cap is not None else self.my_as

    def find(self, kind: type[C]) -> C | None:
        for cap in self.capabilities:
            if isinstance(cap, kind):
                return cap
        return None

    @classmethod
    def decode_body(cls, body: bytes, ctx: Negotiated | None = None) -> Open:
        version, my_as, hold_time, bgp_id, opt_len = struct.unpack_from("!BHHIB", body)
        if version != BGP_VERSION:
            raise BgpError(
                OPEN_MESSAGE_ERROR,
                UNSUPPORTED_VERSION_NUMBER,
                struct.pack("!H", BGP_VERSION),
                f"version {version}",
            )
        if hold_time in (1, 2):
            raise BgpError(
                OPEN_MESSAGE_ERROR,
                UNACCEPTABLE_HOLD_TIME,
                b"",
                f"hold time {hold_time} (must be 0 or >= 3)",
            )
        if bgp_id == 0:
            raise BgpError(OPEN_MESSAGE_ERROR, BAD_BGP_IDENTIFIER, b"", "BGP identifier 0.0.0.0")
        caps = _decode_params(body, opt_len)
        msg = cls(my_as, hold_time, ipaddress.IPv4Address(bgp_id), caps, version)
        if my_as == 0 or msg.asn == 0:  # RFC 7607
            raise BgpError(OPEN_MESSAGE_ERROR, BAD_PEER_AS, b"", "AS 0 in OPEN")
        return msg

    def encode_body(self, ctx: Negotiated | None = None) -> bytes:
        caps = b"".join(cap.encode() for cap in self.capabilities)
        params = b""
        if caps:
            if len(caps) <= 253:
                params = bytes((PARAM_CAPABILITIES, len(caps))) + caps
            else:  # one parameter per capability, as many peers send anyway
                params = b"".join(
                    bytes((PARAM_CAPABILITIES, len(c))) + c
                    for c in (cap.encode() for cap in self.capabilities)
                )
        if len(params) > 255:
            raise ValueError(f"OPEN optional parameters of {len(params)} octets > 255")
        head = struct.pack(
            "!BHHIB",
            self.version,
            self.my_as,
            self.hold_time,
            int(self.bgp_id),
            len(params),
        )
        return head + params


def _decode_params(body: bytes, opt_len: int) -> list[Capability]:
    start = 10
    extended = opt_len == 255 and len(body) > start and body[start] == PARAM_EXTENDED
    if extended:  # RFC 9072: 2-octet total and per-parameter lengths
        if len(body) < start + 3:
            raise _bad_params("truncated extended optional parameters length")
        opt_len = (body[start + 1] << 8) | body[start + 2]
        start += 3
    params = body[start:]
    if len(params) != opt_len:
        raise _bad_params(f"optional parameters length {opt_len} but {len(params)} octets")
    caps: list[Capability] = []
    i = 0
    head = 3 if extended else 2
    while i < opt_len:
        if i + head > opt_len:
            raise _bad_params("truncated optional parameter header")
        ptype = params[i]
        plen = (params[i + 1] << 8) | params[i + 2] if extended else params[i + 1]
        value = params[i + head : i + head + plen]
        if len(value) != plen:
            raise _bad_params(f"optional parameter {ptype} length {plen} overruns")
        if ptype != PARAM_CAPABILITIES:
            raise BgpError(
                OPEN_MESSAGE_ERROR,
                UNSUPPORTED_OPTIONAL_PARAMETER,
                b"",
                f"optional parameter type {ptype}",
            )
        caps.extend(decode_capabilities(value))
        i += head + plen
    return caps


def _bad_params(reason: str) -> BgpError:
    return BgpError(OPEN_MESSAGE_ERROR, UNSPECIFIC, b"", reason)
