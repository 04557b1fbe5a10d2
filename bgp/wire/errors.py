"""BGP error codes with their names, and the exception that carries a NOTIFICATION to send.

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

# FSM error subcodes (RFC 6608).
FSM_UNSPECIFIED = 0
FSM_UNEXPECTED_IN_OPENSENT = 1
FSM_UNEXPECTED_IN_OPENCONFIRM = 2
FSM_UNEXPECTED_IN_ESTABLISHED = 3

# Cease subcodes (RFC 4486).
CEASE_MAX_PREFIXES = 1
CEASE_ADMIN_SHUTDOWN = 2
CEASE_PEER_DECONFIGURED = 3
CEASE_ADMIN_RESET = 4
CEASE_CONNECTION_REJECTED = 5
CEASE_OTHER_CONFIGURATION_CHANGE = 6
CEASE_CONNECTION_COLLISION = 7
CEASE_OUT_OF_RESOURCES = 8

# The RFCs' own names, as logs, metrics labels and ListPeers show them.
_CODE_NAMES = {
    MESSAGE_HEADER_ERROR: "Message Header Error",
    OPEN_MESSAGE_ERROR: "OPEN Message Error",
    UPDATE_MESSAGE_ERROR: "UPDATE Message Error",
    HOLD_TIMER_EXPIRED: "Hold Timer Expired",
    FSM_ERROR: "Finite State Machine Error",
    CEASE: "Cease",
    ROUTE_REFRESH_MESSAGE_ERROR: "ROUTE-REFRESH Message Error",
}

_SUBCODE_NAMES = {
    MESSAGE_HEADER_ERROR: {
        CONNECTION_NOT_SYNCHRONIZED: "Connection Not Synchronized",
        BAD_MESSAGE_LENGTH: "Bad Message Length",
        BAD_MESSAGE_TYPE: "Bad Message Type",
    },
    OPEN_MESSAGE_ERROR: {
        UNSUPPORTED_VERSION_NUMBER: "Unsupported Version Number",
        BAD_PEER_AS: "Bad Peer AS",
        BAD_BGP_IDENTIFIER: "Bad BGP Identifier",
        UNSUPPORTED_OPTIONAL_PARAMETER: "Unsupported Optional Parameter",
        UNACCEPTABLE_HOLD_TIME: "Unacceptable Hold Time",
        UNSUPPORTED_CAPABILITY: "Unsupported Capability",
    },
    UPDATE_MESSAGE_ERROR: {
        MALFORMED_ATTRIBUTE_LIST: "Malformed Attribute List",
        UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: "Unrecognized Well-known Attribute",
        MISSING_WELL_KNOWN_ATTRIBUTE: "Missing Well-known Attribute",
        ATTRIBUTE_FLAGS_ERROR: "Attribute Flags Error",
        ATTRIBUTE_LENGTH_ERROR: "Attribute Length Error",
        INVALID_ORIGIN_ATTRIBUTE: "Invalid ORIGIN Attribute",
        INVALID_NEXT_HOP_ATTRIBUTE: "Invalid NEXT_HOP Attribute",
        OPTIONAL_ATTRIBUTE_ERROR: "Optional Attribute Error",
        INVALID_NETWORK_FIELD: "Invalid Network Field",
        MALFORMED_AS_PATH: "Malformed AS_PATH",
    },
    FSM_ERROR: {
        FSM_UNSPECIFIED: "Unspecified Error",
        FSM_UNEXPECTED_IN_OPENSENT: "Unexpected Message in OpenSent",
        FSM_UNEXPECTED_IN_OPENCONFIRM: "Unexpected Message in OpenConfirm",
        FSM_UNEXPECTED_IN_ESTABLISHED: "Unexpected Message in Established",
    },
    CEASE: {
        CEASE_MAX_PREFIXES: "Maximum Number of Prefixes Reached",
        CEASE_ADMIN_SHUTDOWN: "Administrative Shutdown",
        CEASE_PEER_DECONFIGURED: "Peer De-configured",
        CEASE_ADMIN_RESET: "Administrative Reset",
        CEASE_CONNECTION_REJECTED: "Connection Rejected",
        CEASE_OTHER_CONFIGURATION_CHANGE: "Other Configuration Change",
        CEASE_CONNECTION_COLLISION: "Connection Collision Resolution",
        CEASE_OUT_OF_RESOURCES: "Out of Resources",
    },
}


def notification_name(code: int, subcode: int) -> str:
    """``Cease/Administrative Shutdown``: the name logs, metrics and ListPeers show."""
    name = _CODE_NAMES.get(code, f"code {code}")
    sub = _SUBCODE_NAMES.get(code, {}).get(subcode)
    if sub is None:
        return name if subcode == 0 else f"{name}/subcode {subcode}"
    return f"{name}/{sub}"


class BgpError(Exception):
    """A protocol error that resets the session; carries the NOTIFICATION to send."""

    def __init__(self, code: int, subcode: int, data: bytes = b"", reason: str = "") -> None:
        self.code = code
        self.subcode = subcode
        self.data = bytes(data)
        self.reason = reason
        text = notification_name(code, subcode)
        super().__init__(f"{text}: {reason}" if reason else text)

    def notification(self) -> Notification:
        from bgp.wire.notification import Notification

        return Notification(self.code, self.subcode, self.data)
