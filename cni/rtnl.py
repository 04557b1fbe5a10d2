"""A small synchronous rtnetlink client for the CNI plugin's per-pod kernel work.

Why not pyroute2: its generic message objects and the asyncio loop behind every
``IPRoute()`` cost ~0.25 ms of CPU per request and ~1 ms per socket, about a third of
the service's CPU per ADD (docs/performance.md, "## CNI"). A pod needs ~12 fixed-shape
requests, so they are packed by hand here; routes reuse Felix's codec
(``felix.netlink.codec``). One request in flight per socket, each acked (NLM_F_ACK),
errors raised as ``RtnlError`` with the kernel's extended-ack text. A socket belongs to
the namespace of the thread that opened it, wherever it is used afterwards.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

from felix.netlink.codec import (
    IFINFOMSG,
    NLMSGHDR,
    RTATTR,
    U32,
    Route,
    iter_messages,
    pack_route,
    pack_route_dump,
    parse_error,
    parse_route,
)
from felix.netlink.constants import (
    IFLA_IFNAME,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    RTM_GETLINK,
    RTM_NEWLINK,
    RTM_NEWROUTE,
)
from felix.netlink.sock import open_route_socket

# What felix.netlink (routes only) does not define: links, addresses, veth
# (include/uapi/linux/rtnetlink.h, if_link.h, if_addr.h, veth.h; kernel spelling).
RTM_DELLINK = 17
RTM_NEWADDR = 20
RTM_GETADDR = 22
IFLA_ADDRESS = 1
IFLA_MTU = 4
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_F_NODAD = 0x02
IFF_UP = 0x1
NLA_F_NESTED = 0x8000

IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RECV_SIZE = 65536


class RtnlError(OSError):
    """The kernel refused a request; ``errno`` is its error, ``str()`` names the request."""


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mac: str
    mtu: int
    flags: int

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


def _attr(atype: int, payload: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    n = 4 + len(payload)
    return RTATTR.pack(n, atype) + payload + b"\0" * ((4 - n % 4) % 4)


def _u32(atype: int, value: int) -> bytes:
    return _attr(atype, U32.pack(value))


def _name(atype: int, name: str) -> bytes:
    return _attr(atype, name.encode() + b"\0")


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def pack_veth(
    seq: int, host: str, peer: str, mtu: int, peer_netns_fd: int, peer_mac: str = ""
) -> bytes:
    """RTM_NEWLINK creating a veth pair; the peer is born in the namespace of the fd."""
    peer_attrs = (
        _name(IFLA_IFNAME, peer) + _u32(IFLA_MTU, mtu) + _u32(IFLA_NET_NS_FD, peer_netns_fd)
    )
    if peer_mac:
        peer_attrs += _attr(IFLA_ADDRESS, _mac_bytes(peer_mac))
    peer_info = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + peer_attrs
    info_data = _attr(VETH_INFO_PEER | NLA_F_NESTED, peer_info)
    linkinfo = _attr(IFLA_INFO_KIND, b"veth") + _attr(IFLA_INFO_DATA | NLA_F_NESTED, info_data)
    body = (
        IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        + _name(IFLA_IFNAME, host)
        + _u32(IFLA_MTU, mtu)
        + _attr(IFLA_LINKINFO | NLA_F_NESTED, linkinfo)
    )
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return NLMSGHDR.pack(16 + len(body), RTM_NEWLINK, flags, seq, 0) + body


def pack_addr(
    seq: int,
    index: int,
    addr: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
    ifa_flags: int = 0,
) -> bytes:
    """RTM_NEWADDR (create, exclusive) of ``addr`` on link ``index``."""
    raw = addr.ip.packed
    if addr.version == 4:
        family, attrs = socket.AF_INET, _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw)
    else:
        family, attrs = socket.AF_INET6, _attr(IFA_ADDRESS, raw)
    body = IFADDRMSG.pack(family, addr.network.prefixlen, ifa_flags, 0, index) + attrs
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return NLMSGHDR.pack(16 + len(body), RTM_NEWADDR, flags, seq, 0) + body


def parse_link(buf: memoryview | bytes, off: int, end: int) -> Link:
    """A ``Link`` from an RTM_NEWLINK payload at buf[off:end]."""
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(buf, off)
    name, mac, mtu = "", "", 0
    pos = off + IFINFOMSG.size
    while pos + 4 <= end:
        alen, atype = RTATTR.unpack_from(buf, pos)
        if alen < 4:
            break
        atype &= 0x3FFF
        if atype == IFLA_IFNAME:
            name = bytes(buf[pos + 4 : pos + alen]).rstrip(b"\0").decode()
        elif atype == IFLA_ADDRESS:
            mac = _mac_text(bytes(buf[pos + 4 : pos + alen]))
        elif atype == IFLA_MTU:
            mtu = U32.unpack_from(buf, pos + 4)[0]
        pos += (alen + 3) & ~3
    return Link(index=index, name=name, mac=mac, mtu=mtu, flags=flags)


def parse_addr(buf: memoryview | bytes, off: int, end: int) -> tuple[int, str, int]:
    """(link index, address text, prefix length) from an RTM_NEWADDR payload."""
    family, prefixlen, _flags, _scope, index = IFADDRMSG.unpack_from(buf, off)
    found = ""
    pos = off + IFADDRMSG.size
    while pos + 4 <= end:
        alen, atype = RTATTR.unpack_from(buf, pos)
        if alen < 4:
            break
        if atype == IFA_ADDRESS or (atype == IFA_LOCAL and not found):
            found = socket.inet_ntop(family, bytes(buf[pos + 4 : pos + alen]))
        pos += (alen + 3) & ~3
    return index, found, prefixlen


class Rtnl:
    """One NETLINK_ROUTE socket in the namespace of the thread that made it."""

    def __init__(self) -> None:
        sock = open_route_socket()
        self.sock = sock
        self._seq = 0
        self._buf = bytearray(_RECV_SIZE)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    # --- transport ---------------------------------------------------------------

    def _transact(self, msg: bytes, seq: int, what: str) -> list[tuple[int, bytes]]:
        """Send one request; (type, payload) of each reply up to its ack or NLMSG_DONE."""
        self.sock.send(msg)
        out: list[tuple[int, bytes]] = []
        view = memoryview(self._buf)
        while True:
            n = self.sock.recv_into(self._buf)
            for mtype, flags, mseq, off, length in iter_messages(view, n):
                if mseq != seq:
                    continue  # a late answer to an earlier, abandoned request
                if mtype == NLMSG_ERROR:
                    code, text = parse_error(view, off, length, flags)
                    if code:
                        detail = f"{what}: {os.strerror(code)}" + (f" ({text})" if text else "")
                        raise RtnlError(code, detail)
                    return out
                if mtype == NLMSG_DONE:
                    if flags & NLM_F_DUMP_INTR:
                        raise RtnlError(0, f"{what}: dump interrupted by a concurrent change")
                    return out
                out.append((mtype, bytes(view[off : off - 16 + length])))

    def _ack(self, msg_type: int, flags: int, body: bytes, what: str) -> None:
        seq = self._next_seq()
        hdr = NLMSGHDR.pack(16 + len(body), msg_type, flags | NLM_F_REQUEST | NLM_F_ACK, seq, 0)
        self._transact(hdr + body, seq, what)

    def _dump(self, msg_type: int, body: bytes, what: str) -> list[bytes]:
        seq = self._next_seq()
        hdr = NLMSGHDR.pack(16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
        return [p for _, p in self._transact(hdr + body, seq, what)]

    # --- links -------------------------------------------------------------------

    def link(self, name: str = "", index: int = 0) -> Link | None:
        """The link by name or index; None when there is none."""
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        if not index:
            body += _name(IFLA_IFNAME, name)
        seq = self._next_seq()
        # NLM_F_ACK: the kernel then ends even a successful get with an ack.
        msg = NLMSGHDR.pack(16 + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body
        try:
            replies = self._transact(msg, seq, f"get link {name or index}")
        except RtnlError as exc:
            if exc.errno == 19:  # ENODEV
                return None
            raise
        for mtype, payload in replies:
            if mtype == RTM_NEWLINK:
                return parse_link(payload, 0, len(payload))
        return None

    def index(self, name: str) -> int | None:
        found = self.link(name=name)
        return found.index if found else None

    def add_veth(
        self, host: str, peer: str, mtu: int, peer_netns_fd: int, peer_mac: str = ""
    ) -> None:
        seq = self._next_seq()
        msg = pack_veth(seq, host, peer, mtu, peer_netns_fd, peer_mac)
        self._transact(msg, seq, f"create veth {host}/{peer}")

    def set_link(self, index: int, *, up: bool | None = None, mtu: int = 0) -> None:
        flags = IFF_UP if up else 0
        change = IFF_UP if up is not None else 0
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)
        if mtu:
            body += _u32(IFLA_MTU, mtu)
        self._ack(RTM_NEWLINK, 0, body, f"set link {index}")

    def del_link(self, index: int) -> None:
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        self._ack(RTM_DELLINK, 0, body, f"delete link {index}")

    # --- addresses -----------------------------------------------------------------

    def add_addr(
        self, index: int, addr: ipaddress.IPv4Interface | ipaddress.IPv6Interface, flags: int = 0
    ) -> None:
        seq = self._next_seq()
        self._transact(pack_addr(seq, index, addr, flags), seq, f"add address {addr} on {index}")

    def addrs(self, index: int, family: int = socket.AF_UNSPEC) -> list[tuple[str, int]]:
        """(address, prefix length) of every address on link ``index``."""
        body = IFADDRMSG.pack(family, 0, 0, 0, index)
        out = []
        for payload in self._dump(RTM_GETADDR, body, f"list addresses of {index}"):
            link_index, addr, plen = parse_addr(payload, 0, len(payload))
            if link_index == index and addr:
                out.append((addr, plen))
        return out

    # --- routes --------------------------------------------------------------------

    def add_route(self, route: Route, *, replace: bool = False) -> None:
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
        flags |= NLM_F_REPLACE if replace else NLM_F_EXCL
        seq = self._next_seq()
        self._transact(
            pack_route(RTM_NEWROUTE, flags, seq, route), seq, f"add route {route.describe()}"
        )

    def routes(self, family: int, oif: int = 0, table: int = 254) -> list[Route]:
        """Routes of ``family`` in ``table``, those leaving through ``oif`` when given."""
        seq = self._next_seq()
        out = []
        for mtype, payload in self._transact(
            pack_route_dump(seq, family, table), seq, "list routes"
        ):
            if mtype != RTM_NEWROUTE:
                continue
            route = parse_route(payload, 0, len(payload))
            if route.table == table and (not oif or route.oif == oif):
                out.append(route)
        return out
