"""NOTIFICATION error codes and subcodes (RFC 4271 4.5, 6; RFC 4486; RFC 6608), with names.

Kept beside the FSM so that the state machine does not depend on the codec, and so that
logs can name every NOTIFICATION sent or received.
"""

from __future__ import annotations

MESSAGE_HEADER_ERROR = 1
OPEN_MESSAGE_ERROR = 2
UPDATE_MESSAGE_ERROR = 3
HOLD_TIMER_EXPIRED = 4
FSM_ERROR = 5
CEASE = 6
ROUTE_REFRESH_MESSAGE_ERROR = 7

# OPEN message error subcodes (RFC 4271 6.2, RFC 5492).
OPEN_UNSUPPORTED_VERSION = 1
OPEN_BAD_PEER_AS = 2
OPEN_BAD_BGP_ID = 3
OPEN_UNSUPPORTED_OPTIONAL_PARAMETER = 4
OPEN_UNACCEPTABLE_HOLD_TIME = 6
OPEN_UNSUPPORTED_CAPABILITY = 7

# FSM error subcodes (RFC 6608).
FSM_UNEXPECTED_IN_OPENSENT = 1
FSM_UNEXPECTED_IN_OPENCONFIRM = 2
FSM_UNEXPECTED_IN_ESTABLISHED = 3

# Cease subcodes (RFC 4486).
CEASE_MAX_PREFIXES = 1
CEASE_ADMIN_SHUTDOWN = 2
CEASE_PEER_DECONFIGURED = 3
CEASE_ADMIN_RESET = 4
CEASE_CONNECTION_REJECTED = 5
CEASE_OTHER_CONFIG_CHANGE = 6
CEASE_CONNECTION_COLLISION = 7
CEASE_OUT_OF_RESOURCES = 8

_CODES = {
    MESSAGE_HEADER_ERROR: "Message Header Error",
    OPEN_MESSAGE_ERROR: "OPEN Message Error",
    UPDATE_MESSAGE_ERROR: "UPDATE Message Error",
    HOLD_TIMER_EXPIRED: "Hold Timer Expired",
    FSM_ERROR: "Finite State Machine Error",
    CEASE: "Cease",
    ROUTE_REFRESH_MESSAGE_ERROR: "ROUTE-REFRESH Message Error",
}

_SUBCODES = {
    MESSAGE_HEADER_ERROR: {
        1: "Connection Not Synchronized",
        2: "Bad Message Length",
        3: "Bad Message Type",
    },
    OPEN_MESSAGE_ERROR: {
        1: "Unsupported Version Number",
        2: "Bad Peer AS",
        3: "Bad BGP Identifier",
        4: "Unsupported Optional Parameter",
        6: "Unacceptable Hold Time",
        7: "Unsupported Capability",
    },
    UPDATE_MESSAGE_ERROR: {
        1: "Malformed Attribute List",
        2: "Unrecognized Well-known Attribute",
        3: "Missing Well-known Attribute",
        4: "Attribute Flags Error",
        5: "Attribute Length Error",
        6: "Invalid ORIGIN Attribute",
        8: "Invalid NEXT_HOP Attribute",
        9: "Optional Attribute Error",
        10: "Invalid Network Field",
        11: "Malformed AS_PATH",
    },
    FSM_ERROR: {
        0: "Unspecified Error",
        1: "Unexpected Message in OpenSent",
        2: "Unexpected Message in OpenConfirm",
        3: "Unexpected Message in Established",
    },
    CEASE: {
        1: "Maximum Number of Prefixes Reached",
        2: "Administrative Shutdown",
        3: "Peer De-configured",
        4: "Administrative Reset",
        5: "Connection Rejected",
        6: "Other Configuration Change",
        7: "Connection Collision Resolution",
        8: "Out of Resources",
    },
}


def notification_name(code: int, subcode: int) -> str:
    """Human name such as ``Cease/Administrative Shutdown`` for logs and ListPeers."""
    name = _CODES.get(code, f"code {code}")
    sub = _SUBCODES.get(code, {}).get(subcode)
    if sub is None:
        return name if subcode == 0 else f"{name}/subcode {subcode}"
    return f"{name}/{sub}"
