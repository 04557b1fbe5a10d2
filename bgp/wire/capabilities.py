"""Capabilities advertised in OPEN (RFC 5492), one small class per capability code.

Each class knows its code and how to turn its value into bytes and back; unknown codes
are kept raw (``UnknownCapability``) so they can be logged and re-encoded exactly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from bgp.wire.errors import OPEN_MESSAGE_ERROR, UNSPECIFIC, BgpError

CAP_MULTIPROTOCOL = 1  # RFC 4760
CAP_ROUTE_REFRESH = 2  # RFC 2918
CAP_EXTENDED_MESSAGE = 6  # RFC 8654
CAP_GRACEFUL_RESTART = 64  # RFC 4724
CAP_FOUR_OCTET_AS = 65  # RFC 6793
CAP_ADD_PATH = 69  # RFC 7911
CAP_ROUTE_REFRESH_OLD = 128  # pre-standard Cisco code point, same meaning as 2

ADD_PATH_RECEIVE = 1
ADD_PATH_SEND = 2
ADD_PATH_BOTH = 3


class Capability:
    """Base: a code and a value codec. Subclasses register themselves by code."""

    code: ClassVar[int]
    registry: ClassVar[dict[int, type[Capability]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        code = cls.__dict__.get("code")
        if isinstance(code, int):
            Capability.registry[code] = cls

    def cap_code(self) -> int:
        return self.code

    def encode_value(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def decode_value(cls, code: int, value: bytes) -> Capability:
        raise NotImplementedError

    def encode(self) -> bytes:
        value = self.encode_value()
        return bytes((self.cap_code(), len(value))) + value


def _malformed(what: str, value: bytes) -> BgpError:
    # RFC 4271 6.2: a recognised but malformed optional parameter -> subcode 0.
    return BgpError(OPEN_MESSAGE_ERROR, UNSPECIFIC, b"", f"malformed {what}: {value.hex()}")


@dataclass(frozen=True)
class Multiprotocol(Capability):
    """RFC 4760: this speaker handles (afi, safi)."""

    afi: int
    safi: int
    code: ClassVar[int] = CAP_MULTIPROTOCOL

    def encode_value(self) -> bytes:
        return struct.pack("!HBB", self.afi, 0, self.safi)

    @classmethod
    def decode_value(cls, code: int, value: bytes) -> Multiprotocol:
        if len(value) != 4:
            raise _malformed("multiprotocol capability", value)
        afi, _, safi = struct.unpack("!HBB", value)
        return cls(afi, safi)


@dataclass(frozen=True)
class RouteRefreshCapability(Capability):
    """RFC 2918; ``cap`` is 2, or 128 for the old code point some peers still send."""

    cap: int = CAP_ROUTE_REFRESH
    code: ClassVar[int] = CAP_ROUTE_REFRESH

    def cap_code(self) -> int:
        return self.cap

    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, code: int, value: bytes) -> RouteRefreshCapability:
        if value:
            raise _malformed("route refresh capability", value)
        return cls(code)


@dataclass(frozen=True)
class ExtendedMessage(Capability):
    """RFC 8654: messages other than OPEN and KEEPALIVE may be up to 65535 octets."""

    code: ClassVar[int] = CAP_EXTENDED_MESSAGE

    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, code: int, value: bytes) -> ExtendedMessage:
        if value:
            raise _malformed("extended message capability", value)
        return cls()


@dataclass(frozen=True)
class GracefulRestart(Capability):
    """RFC 4724 (N bit: RFC 8538). ``families`` holds (afi, safi, forwarding_preserved)."""

    restart_time: int = 120
    restarting: bool = False  # R bit
    notification: bool = False  # N bit
    families: tuple[tuple[int, int, bool], ...] = ()
    code: ClassVar[int] = CAP_GRACEFUL_RESTART

    def encode_value(self) -> bytes:
        flags = (0x8 if self.restarting else 0) | (0x4 if self.notification else 0)
        out = [struct.pack("!H", (flags << 12) | (self.restart_time & 0xFFF))]
        for afi, safi, forwarding in self.families:
            out.append(struct.pack("!HBB", afi, safi, 0x80 if forwarding else 0))
        return b"".join(out)

    @classmethod
    def decode_value(cls, code: int, value: bytes) -> GracefulRestart:
        if len(value) < 2 or (len(value) - 2) % 4:
            raise _malformed("graceful restart capability", value)
        (word,) = struct.unpack_from("!H", value)
        families = tuple(
            (afi, safi, bool(flags & 0x80))
            for afi, safi, flags in struct.iter_unpack("!HBB", value[2:])
        )
        return cls(word & 0xFFF, bool(word & 0x8000), bool(word & 0x4000), families)

    def forwarding_preserved(self, afi: int, safi: int) -> bool:
        return any(f[:2] == (afi, safi) and f[2] for f in self.families)


@dataclass(frozen=True)
class FourOctetAs(Capability):
    """RFC 6793: support for 4-octet AS numbers, carrying this speaker's real AS."""

    asn: int
    code: ClassVar[int] = CAP_FOUR_OCTET_AS

    def encode_value(self) -> bytes:
        return struct.pack("!I", self.asn)

    @classmethod
    def decode_value(cls, code: int, value: bytes) -> FourOctetAs:
        if len(value) != 4:
            raise _malformed("4-octet AS capability", value)
        return cls(struct.unpack("!I", value)[0])


@dataclass(frozen=True)
class AddPath(Capability):
    """RFC 7911: per family, whether this speaker can receive (1), send (2) or both (3)."""

    families: tuple[tuple[int, int, int], ...]
    code: ClassVar[int] = CAP_ADD_PATH

    def encode_value(self) -> bytes:
        return b"".join(struct.pack("!HBB", a, s, m) for a, s, m in self.families)

    @classmethod
    def decode_value(cls, code: int, value: bytes) -> AddPath:
        if not value or len(value) % 4:
            raise _malformed("ADD-PATH capability", value)
        families = tuple(struct.iter_unpack("!HBB", value))
        if any(m not in (1, 2, 3) for _, _, m in families):
            raise _malformed("ADD-PATH capability send/receive value", value)
        return cls(families)


@dataclass(frozen=True)
class UnknownCapability(Capability):
    """A capability this speaker does not implement, kept raw (RFC 5492: ignore it)."""

    cap: int
    value: bytes = b""

    def cap_code(self) -> int:
        return self.cap

    def encode_value(self) -> bytes:
        return self.value

    @classmethod
    def decode_value(cls, code: int, value: bytes) -> UnknownCapability:
        return cls(code, bytes(value))


Capability.registry[CAP_ROUTE_REFRESH_OLD] = RouteRefreshCapability


def decode_capabilities(data: bytes) -> list[Capability]:
    """Decode the value of one Capabilities optional parameter (one or more TLVs)."""
    caps: list[Capability] = []
    i = 0
    end = len(data)
    while i < end:
        if i + 2 > end:
            raise _malformed("capability (truncated header)", data[i:])
        code, length = data[i], data[i + 1]
        value = bytes(data[i + 2 : i + 2 + length])
        if len(value) != length:
            raise _malformed(f"capability {code} (length {length} overruns)", data[i:])
        cls = Capability.registry.get(code, UnknownCapability)
        caps.append(cls.decode_value(code, value))
        i += 2 + length
    return caps
