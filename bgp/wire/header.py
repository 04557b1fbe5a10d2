"""The 19-octet message header (RFC 4271 4.1) and per-type framing checks.

Message classes register their type code here, so framing and dispatch know every
type without importing the message modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from bgp.wire.errors import (
    BAD_MESSAGE_LENGTH,
    BAD_MESSAGE_TYPE,
    CONNECTION_NOT_SYNCHRONIZED,
    MESSAGE_HEADER_ERROR,
    BgpError,
)

if TYPE_CHECKING:
    from bgp.wire.negotiated import Negotiated

MARKER = b"\xff" * 16
HEADER_LEN = 19

OPEN = 1
UPDATE = 2
NOTIFICATION = 3
KEEPALIVE = 4
ROUTE_REFRESH = 5

TYPE_NAMES = {
    OPEN: "OPEN",
    UPDATE: "UPDATE",
    NOTIFICATION: "NOTIFICATION",
    KEEPALIVE: "KEEPALIVE",
    ROUTE_REFRESH: "ROUTE-REFRESH",
}

# (minimum, maximum or None) total length per type, header included (RFC 4271 6.1,
# RFC 2918 3). OPEN and KEEPALIVE never exceed 4096 even with extended messages (8654).
LENGTH_LIMITS: dict[int, tuple[int, int | None]] = {
    OPEN: (29, 4096),
    UPDATE: (23, None),
    NOTIFICATION: (21, None),
    KEEPALIVE: (19, 19),
    ROUTE_REFRESH: (23, 23),
}


class MessageCodec(Protocol):
    """What a registered message class provides."""

    type_code: int

    @classmethod
    def decode_body(cls, body: bytes, ctx: Negotiated) -> Any: ...

    def encode_body(self, ctx: Negotiated) -> bytes: ...


MESSAGE_TYPES: dict[int, Any] = {}


def register(type_code: int) -> Any:
    """Class decorator: make a message class known to framing and dispatch by code."""

    def wrap(cls: Any) -> Any:
        cls.type_code = type_code
        MESSAGE_TYPES[type_code] = cls
        return cls

    return wrap


def check_header(data: bytes | bytearray | memoryview, max_length: int) -> tuple[int, int]:
    """Validate the header at the start of ``data``; return (length, type).

    Raises the RFC 4271 6.1 error: marker not all ones -> 1/1; length out of range for
    the type -> 1/2 with the length field as data; unknown type -> 1/3 with the type.
    """
    if data[:16] != MARKER:
        raise BgpError(
            MESSAGE_HEADER_ERROR, CONNECTION_NOT_SYNCHRONIZED, b"", "marker not all ones"
        )
    length = (data[16] << 8) | data[17]
    msg_type = data[18]
    if msg_type not in MESSAGE_TYPES:
        raise BgpError(
            MESSAGE_HEADER_ERROR, BAD_MESSAGE_TYPE, bytes((msg_type,)), f"type {msg_type}"
        )
    lo, hi = LENGTH_LIMITS.get(msg_type, (HEADER_LEN, None))
    limit = max_length if hi is None else min(hi, max_length)
    if length < lo or length > limit:
        name = TYPE_NAMES.get(msg_type, str(msg_type))
        raise BgpError(
            MESSAGE_HEADER_ERROR,
            BAD_MESSAGE_LENGTH,
            bytes(data[16:18]),
            f"{name} length {length} outside {lo}..{limit}",
        )
    return length, msg_type


def frame(msg_type: int, body: bytes, max_length: int = 4096) -> bytes:
    """Prefix a body with the header; refuses to build a message the peer must reject."""
    length = HEADER_LEN + len(body)
    if length > max_length:
        raise ValueError(f"{TYPE_NAMES.get(msg_type, msg_type)} of {length} octets > {max_length}")
    return MARKER + bytes((length >> 8, length & 0xFF, msg_type)) + body
