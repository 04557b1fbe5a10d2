"""BGP error codes and the exception that carries a NOTIFICATION to send.

Every condition that RFC 4271 section 6 (as revised by RFC 7606) says must reset the
session raises :class:`BgpError`; the session turns it into a NOTIFICATION with
:meth:`BgpError.notification`. Conditions 7606 handles without a reset never raise:
they are reported on the decoded ``Update`` instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bgp.wire.notification import Notification

# Error codes (RFC 4271 4.5).
MESSAGE_HEADER_ERROR = 1
OPEN_MESSAGE_ERROR = 2
UPDATE_MESSAGE_ERROR = 3
HOLD_TIMER_EXPIRED = 4
FSM_ERROR = 5
CEASE = 6
ROUTE_REFRESH_MESSAGE_ERROR = 7  # RFC 7313

# Message header error subcodes.
CONNECTION_NOT_SYNCHRONIZED = 1
BAD_MESSAGE_LENGTH = 2
BAD_MESSAGE_TYPE = 3

# OPEN message error subcodes.
UNSPECIFIC = 0
UNSUPPORTED_VERSION_NUMBER = 1
BAD_PEER_AS = 2
BAD_BGP_IDENTIFIER = 3
UNSUPPORTED_OPTIONAL_PARAMETER = 4
UNACCEPTABLE_HOLD_TIME = 6
UNSUPPORTED_CAPABILITY = 7  # RFC 5492

# UPDATE message error subcodes.
MALFORMED_ATTRIBUTE_LIST = 1
UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE = 2
MISSING_WELL_KNOWN_ATTRIBUTE = 3
ATTRIBUTE_FLAGS_ERROR = 4
ATTRIBUTE_LENGTH_ERROR = 5
INVALID_ORIGIN_ATTRIBUTE = 6
INVALID_NEXT_HOP_ATTRIBUTE = 8
OPTIONAL_ATTRIBUTE_ERROR = 9
INVALID_NETWORK_FIELD = 10
MALFORMED_AS_PATH = 11

# Cease subcodes (RFC 4486).
CEASE_MAX_PREFIXES = 1
CEASE_ADMIN_SHUTDOWN = 2
CEASE_PEER_DECONFIGURED = 3
CEASE_ADMIN_RESET = 4
CEASE_CONNECTION_REJECTED = 5
CEASE_OTHER_CONFIGURATION_CHANGE = 6
CEASE_CONNECTION_COLLISION = 7
CEASE_OUT_OF_RESOURCES = 8

CODE_NAMES = {
    MESSAGE_HEADER_ERROR: "message header error",
    OPEN_MESSAGE_ERROR: "OPEN message error",
    UPDATE_MESSAGE_ERROR: "UPDATE message error",
    HOLD_TIMER_EXPIRED: "hold timer expired",
    FSM_ERROR: "finite state machine error",
    CEASE: "cease",
    ROUTE_REFRESH_MESSAGE_ERROR: "ROUTE-REFRESH message error",
}

SUBCODE_NAMES = {
    MESSAGE_HEADER_ERROR: {
        1: "connection not synchronized",
        2: "bad message length",
        3: "bad message type",
    },
    OPEN_MESSAGE_ERROR: {
        0: "unspecific",
        1: "unsupported version number",
        2: "bad peer AS",
        3: "bad BGP identifier",
        4: "unsupported optional parameter",
        6: "unacceptable hold time",
        7: "unsupported capability",
    },
    UPDATE_MESSAGE_ERROR: {
        1: "malformed attribute list",
        2: "unrecognized well-known attribute",
        3: "missing well-known attribute",
        4: "attribute flags error",
        5: "attribute length error",
        6: "invalid ORIGIN attribute",
        8: "invalid NEXT_HOP attribute",
        9: "optional attribute error",
        10: "invalid network field",
        11: "malformed AS_PATH",
    },
    CEASE: {
        1: "maximum number of prefixes reached",
        2: "administrative shutdown",
        3: "peer de-configured",
        4: "administrative reset",
        5: "connection rejected",
        6: "other configuration change",
        7: "connection collision resolution",
        8: "out of resources",
    },
}


def describe(code: int, subcode: int) -> str:
    """Human-readable 'code/subcode' text for logs and status output."""
    name = CODE_NAMES.get(code, f"code {code}")
    sub = SUBCODE_NAMES.get(code, {}).get(subcode)
    return f"{name} / {sub}" if sub else f"{name} / subcode {subcode}"


class BgpError(Exception):
    """A protocol error that resets the session; carries the NOTIFICATION to send."""

    def __init__(self, code: int, subcode: int, data: bytes = b"", reason: str = "") -> None:
        self.code = code
        self.subcode = subcode
        self.data = bytes(data)
        self.reason = reason
        text = describe(code, subcode)
        super().__init__(f"{text}: {reason}" if reason else text)

    def notification(self) -> Notification:
        from bgp.wire.notification import Notification

        return Notification(self.code, self.subcode, self.data)
