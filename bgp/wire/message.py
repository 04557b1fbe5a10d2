"""Decode and encode one complete message, dispatching on the registered type code."""

from __future__ import annotations

import struct

# Importing the message modules registers their types with the header module.
from bgp.wire import notification as _notification  # noqa: F401
from bgp.wire import open as _open  # noqa: F401
from bgp.wire import route_refresh as _route_refresh  # noqa: F401
from bgp.wire import update as _update  # noqa: F401
from bgp.wire.errors import (
    BAD_MESSAGE_LENGTH,
    MALFORMED_ATTRIBUTE_LIST,
    MESSAGE_HEADER_ERROR,
    OPEN_MESSAGE_ERROR,
    UNSPECIFIC,
    UPDATE_MESSAGE_ERROR,
    BgpError,
)
from bgp.wire.header import (
    HEADER_LEN,
    MESSAGE_TYPES,
    OPEN,
    TYPE_NAMES,
    UPDATE,
    check_header,
    frame,
)
from bgp.wire.negotiated import MAX_MESSAGE, Negotiated
from bgp.wire.notification import Keepalive, Notification
from bgp.wire.open import Open
from bgp.wire.route_refresh import RouteRefresh
from bgp.wire.update import Update

Message = Open | Update | Notification | Keepalive | RouteRefresh

_DEFAULT = Negotiated()

# A decoder that trips over its own input past the explicit checks must still reset
# the session with the type's error code, never crash the daemon.
_FALLBACK = {
    OPEN: (OPEN_MESSAGE_ERROR, UNSPECIFIC),
    UPDATE: (UPDATE_MESSAGE_ERROR, MALFORMED_ATTRIBUTE_LIST),
}


def decode_body(msg_type: int, body: bytes, ctx: Negotiated | None = None) -> Message:
    """Decode the body of a message whose header was already checked."""
    try:
        return MESSAGE_TYPES[msg_type].decode_body(body, ctx or _DEFAULT)  # type: ignore[no-any-return]
    except BgpError:
        raise
    except (IndexError, struct.error, ValueError) as exc:
        code, subcode = _FALLBACK.get(msg_type, (MESSAGE_HEADER_ERROR, BAD_MESSAGE_LENGTH))
        name = TYPE_NAMES.get(msg_type, str(msg_type))
        raise BgpError(code, subcode, b"", f"malformed {name}: {exc}") from exc


def decode_message(data: bytes, ctx: Negotiated | None = None) -> Message:
    """Decode exactly one complete message, header included."""
    data = bytes(data)
    if len(data) < HEADER_LEN:
        raise BgpError(
            MESSAGE_HEADER_ERROR, BAD_MESSAGE_LENGTH, b"", f"{len(data)} octets < header"
        )
    max_length = (ctx or _DEFAULT).max_message_size
    length, msg_type = check_header(data, max_length)
    if length != len(data):
        raise BgpError(
            MESSAGE_HEADER_ERROR,
            BAD_MESSAGE_LENGTH,
            data[16:18],
            f"length field {length} but {len(data)} octets",
        )
    return decode_body(msg_type, data[HEADER_LEN:], ctx)


def encode_message(msg: Message, ctx: Negotiated | None = None) -> bytes:
    """The complete wire form of ``msg``; ValueError if it cannot fit one message."""
    ctx = ctx or _DEFAULT
    body = msg.encode_body(ctx)
    limit = MAX_MESSAGE if isinstance(msg, Open | Keepalive) else ctx.max_message_size
    return frame(msg.type_code, body, limit)
