"""BGP-4 wire codec: bytes to values and back. Pure: no sockets, no asyncio, no logging.

Public surface (what the session, RIB and daemon use)::

    decode_message(data, ctx) / encode_message(msg, ctx) / MessageReader
    Open, Update, Notification, Keepalive, RouteRefresh, Negotiated, BgpError
    pack_updates, pack_withdrawals, end_of_rib
"""

from bgp.wire.capabilities import (
    AddPath,
    Capability,
    ExtendedMessage,
    FourOctetAs,
    GracefulRestart,
    Multiprotocol,
    RouteRefreshCapability,
    UnknownCapability,
)
from bgp.wire.errors import BgpError
from bgp.wire.message import Message, decode_message, encode_message
from bgp.wire.negotiated import IPV4_UNICAST, IPV6_UNICAST, Negotiated
from bgp.wire.notification import KEEPALIVE_MESSAGE, Keepalive, Notification
from bgp.wire.open import Open
from bgp.wire.reader import MessageReader
from bgp.wire.route_refresh import RouteRefresh
from bgp.wire.types import AsPathSegment, PathAttributes, Prefix, UnknownAttribute
from bgp.wire.update import Update, end_of_rib, pack_updates, pack_withdrawals

__all__ = [
    "IPV4_UNICAST",
    "IPV6_UNICAST",
    "KEEPALIVE_MESSAGE",
    "AddPath",
    "AsPathSegment",
    "BgpError",
    "Capability",
    "ExtendedMessage",
    "FourOctetAs",
    "GracefulRestart",
    "Keepalive",
    "Message",
    "MessageReader",
    "Multiprotocol",
    "Negotiated",
    "Notification",
    "Open",
    "PathAttributes",
    "Prefix",
    "RouteRefresh",
    "RouteRefreshCapability",
    "UnknownAttribute",
    "UnknownCapability",
    "Update",
    "decode_message",
    "encode_message",
    "end_of_rib",
    "pack_updates",
    "pack_withdrawals",
]
