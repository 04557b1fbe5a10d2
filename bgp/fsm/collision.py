"""Connection collision resolution (RFC 4271 6.8), as a pure decision.

When both speakers connect at once, two connections exist for one peer. Once an OPEN
reveals the peer's BGP Identifier, the connection initiated by the speaker with the
higher identifier survives; the other is closed with Cease/Connection Collision
Resolution. A connection already Established always wins over a new one.
"""

from __future__ import annotations

import enum
import ipaddress


class Connection(enum.Enum):
    OUTGOING = "outgoing"  # we initiated it
    INCOMING = "incoming"  # the peer initiated it


def resolve_collision(
    local_id: ipaddress.IPv4Address,
    remote_id: ipaddress.IPv4Address,
) -> Connection:
    """Which connection to close. Identifiers compare as 32-bit unsigned integers.

    (A collision with an Established connection always closes the new one; the caller
    handles that case before asking.)
    """
    if int(local_id) < int(remote_id):
        return Connection.OUTGOING
    return Connection.INCOMING
