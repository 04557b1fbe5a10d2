"""Opening a NETLINK_ROUTE socket the way every Tabby netlink client wants it.

Shared by Felix's route programmer and the CNI service's rtnetlink client: extended
acks (the kernel's error text), capped acks (no echo of our request in each error) and
strict dump filtering, each skipped quietly on kernels that lack it.
"""

from __future__ import annotations

import logging
import socket

from felix.netlink.constants import (
    NETLINK_CAP_ACK,
    NETLINK_EXT_ACK,
    NETLINK_GET_STRICT_CHK,
    NETLINK_ROUTE,
    SOL_NETLINK,
)

log = logging.getLogger(__name__)

SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33


def open_route_socket(rcvbuf: int = 0, sndbuf: int = 0) -> socket.socket:
    """A bound NETLINK_ROUTE socket in the calling thread's network namespace.

    ``rcvbuf``/``sndbuf`` (bytes, 0 = kernel default) are forced past the sysctl limits
    when we may (root), else asked for within them: big batches need big buffers.
    """
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    try:
        for force, plain, size in (
            (SO_RCVBUFFORCE, socket.SO_RCVBUF, rcvbuf),
            (SO_SNDBUFFORCE, socket.SO_SNDBUF, sndbuf),
        ):
            if not size:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, size)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, plain, size)
        for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK):
            try:
                sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError as exc:  # old kernels: still correct, just less detail
                log.debug("netlink option unavailable opt=%d err=%s", opt, exc)
        sock.bind((0, 0))
    except BaseException:
        sock.close()
        raise
    return sock
