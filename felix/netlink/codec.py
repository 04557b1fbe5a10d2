"""Pure rtnetlink route codec: route values to wire bytes and back. No sockets.

Hand-packed with precompiled ``struct`` formats because this is the hot path of
route programming (hundreds of thousands of routes per second); pyroute2's generic
message objects cost an order of magnitude more per route.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from felix.netlink.constants import (
    IFLA_IFNAME,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSGERR_ATTR_MSG,
    RT_SCOPE_LINK,
    RT_SCOPE_NOWHERE,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
    RTA_DST,
    RTA_GATEWAY,
    RTA_MULTIPATH,
    RTA_OIF,
    RTA_PRIORITY,
    RTA_TABLE,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTN_UNICAST,
    RTN_UNSPEC,
    RTNH_F_ONLINK,
)

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, proto, scope, type, flags
RTATTR = struct.Struct("=HH")
RTA_U32 = struct.Struct("=HHI")
RTNEXTHOP = struct.Struct("=HBBi")  # len, flags, hops, ifindex
IFINFOMSG = struct.Struct("=BxHiII")
HDR_AND_RTMSG = struct.Struct("=IHHIIBBBBBBBBI")
U32 = struct.Struct("=I")

_FAMILY_LEN = {socket.AF_INET: 4, socket.AF_INET6: 16}


def _align(n: int) -> int:
    return (n + 3) & ~3


@dataclass(frozen=True, slots=True)
class NextHop:
    """One leg of an ECMP (RTA_MULTIPATH) route."""

    gateway: str | None = None
    oif: int = 0
    flags: int = 0  # RTNH_F_ONLINK
    weight: int = 1  # rtnh_hops + 1


@dataclass(slots=True)
class Route:
    """A kernel route as this agent reasons about it. Treat it as immutable.

    ``dst`` is a normalised CIDR ("10.0.0.0/26", "fd00::/64"). ``oif == 0`` means
    "let the kernel resolve it"; a dumped route always carries the resolved one.
    ``scope`` None means the natural scope (link for a device route, universe else).
    Not ``frozen``: that makes construction ~3x slower, and routes are built by the
    hundred thousand on the hot path.
    """

    dst: str
    type: int = RTN_UNICAST
    gateway: str | None = None
    oif: int = 0
    flags: int = 0
    multipath: tuple[NextHop, ...] = ()
    table: int = RT_TABLE_MAIN
    protocol: int = 0
    priority: int = 0
    scope: int | None = None

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.dst else socket.AF_INET

    @property
    def effective_scope(self) -> int:
        if self.scope is not None:
            return self.scope
        if self.type == RTN_UNICAST and self.oif and not self.gateway and not self.multipath:
            return RT_SCOPE_LINK
        return RT_SCOPE_UNIVERSE

    def satisfied_by(self, actual: Route) -> bool:
        """True when the kernel's ``actual`` route is what this desired route asks for.

        Fields this route leaves to the kernel (an unset oif) are not compared, and
        only the ONLINK bit of the flags is ours to care about.
        """
        if (
            self.dst != actual.dst
            or self.type != actual.type
            or self.table != actual.table
            or self.protocol != actual.protocol
            or self.priority != actual.priority
            or self.gateway != actual.gateway
            or self.effective_scope != actual.effective_scope
        ):
            return False
        if self.oif and self.oif != actual.oif:
            return False
        if (self.flags ^ actual.flags) & RTNH_F_ONLINK:
            return False
        if self.multipath or actual.multipath:
            return _nexthops_key(
                self.multipath, bool(self.multipath and self.multipath[0].oif)
            ) == (_nexthops_key(actual.multipath, bool(self.multipath and self.multipath[0].oif)))
        return True

    def describe(self) -> str:
        """`ip route`-like text, for logs and error reports."""
        parts = (
            [self.dst]
            if self.type == RTN_UNICAST
            else [_TYPE_NAMES.get(self.type, str(self.type)), self.dst]
        )
        if self.gateway:
            parts.append(f"via {self.gateway}")
        if self.oif:
            parts.append(f"oif {self.oif}")
        if self.flags & RTNH_F_ONLINK:
            parts.append("onlink")
        for nh in self.multipath:
            parts.append(f"nexthop via {nh.gateway} oif {nh.oif} weight {nh.weight}")
        parts.append(f"table {self.table} proto {self.protocol}")
        if self.priority:
            parts.append(f"metric {self.priority}")
        return " ".join(parts)


_TYPE_NAMES = {6: "blackhole", 7: "unreachable", 8: "prohibit", 2: "local"}


def _nexthops_key(nhs: tuple[NextHop, ...], with_oif: bool) -> list[tuple]:
    return sorted(
        (nh.gateway or "", nh.oif if with_oif else 0, nh.flags & RTNH_F_ONLINK, nh.weight)
        for nh in nhs
    )


def _addr_attr(rta_type: int, family: int, addr: str) -> bytes:
    raw = socket.inet_pton(family, addr)
    return RTATTR.pack(4 + len(raw), rta_type) + raw


_V4_STRUCTS: dict[tuple[bool, bool, bool], struct.Struct] = {}


def _v4_struct(gw: bool, oif: bool, prio: bool) -> struct.Struct:
    """One precompiled struct per IPv4 route shape: a route is a single pack() call."""
    key = (gw, oif, prio)
    st = _V4_STRUCTS.get(key)
    if st is None:
        fmt = "=IHHIIBBBBBBBBIHH4s"
        fmt += "HH4s" if gw else ""
        fmt += "HHI" if oif else ""
        fmt += "HHI"  # RTA_TABLE
        fmt += "HHI" if prio else ""
        st = _V4_STRUCTS[key] = struct.Struct(fmt)
    return st


def pack_route(msg_type: int, flags: int, seq: int, route: Route, delete: bool = False) -> bytes:
    """One RTM_NEWROUTE/RTM_DELROUTE message for ``route``.

    For a delete, type and scope are left as wildcards (RTN_UNSPEC, RT_SCOPE_NOWHERE)
    while the protocol is set, so the kernel only ever removes a route of ours.
    """
    dst = route.dst
    addr, _, plen = dst.partition("/")
    if delete:
        rtype, scope, rflags = RTN_UNSPEC, RT_SCOPE_NOWHERE, 0
    else:
        rtype, scope, rflags = route.type, route.effective_scope, route.flags & RTNH_F_ONLINK
    table = route.table
    if ":" not in addr and not route.multipath:
        gw, oif, prio = route.gateway, route.oif, route.priority
        st = _v4_struct(bool(gw), bool(oif), bool(prio))
        args = [
            st.size, msg_type, flags, seq, 0,
            socket.AF_INET, int(plen) if plen else 32, 0, 0, table if table < 256 else 0,
            route.protocol, scope, rtype, rflags,
            8, RTA_DST, socket.inet_pton(socket.AF_INET, addr),
        ]  # fmt: skip
        if gw:
            args += (8, RTA_GATEWAY, socket.inet_pton(socket.AF_INET, gw))
        if oif:
            args += (8, RTA_OIF, oif)
        args += (8, RTA_TABLE, table)
        if prio:
            args += (8, RTA_PRIORITY, prio)
        return st.pack(*args)
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    raw_dst = socket.inet_pton(family, addr)
    dst_len = int(plen) if plen else len(raw_dst) * 8
    parts = [b"", RTATTR.pack(4 + len(raw_dst), RTA_DST), raw_dst]
    if route.gateway:
        parts.append(_addr_attr(RTA_GATEWAY, family, route.gateway))
    if route.oif:
        parts.append(RTA_U32.pack(8, RTA_OIF, route.oif))
    parts.append(RTA_U32.pack(8, RTA_TABLE, table))
    if route.priority:
        parts.append(RTA_U32.pack(8, RTA_PRIORITY, route.priority))
    if route.multipath:
        legs = []
        for nh in route.multipath:
            attrs = _addr_attr(RTA_GATEWAY, family, nh.gateway) if nh.gateway else b""
            legs.append(RTNEXTHOP.pack(8 + len(attrs), nh.flags, nh.weight - 1, nh.oif) + attrs)
        body = b"".join(legs)
        parts.append(RTATTR.pack(4 + len(body), RTA_MULTIPATH) + body)
    attrs_len = sum(len(p) for p in parts)
    parts[0] = HDR_AND_RTMSG.pack(
        28 + attrs_len, msg_type, flags, seq, 0,
        family, dst_len, 0, 0, table if table < 256 else 0, route.protocol, scope, rtype, rflags,
    )  # fmt: skip
    return b"".join(parts)


def pack_route_dump(seq: int, family: int, table: int = 0, protocol: int = 0) -> bytes:
    """An RTM_GETROUTE dump request; with NETLINK_GET_STRICT_CHK the kernel filters it."""
    attrs = RTA_U32.pack(8, RTA_TABLE, table) if table else b""
    body = RTMSG.pack(family, 0, 0, 0, table if table < 256 else 0, protocol, 0, 0, 0) + attrs
    return NLMSGHDR.pack(16 + len(body), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def pack_link_dump(seq: int) -> bytes:
    body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return NLMSGHDR.pack(16 + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def iter_messages(buf: memoryview | bytes, n: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Yield (type, flags, seq, payload_offset, msg_len) for each message in buf[:n]."""
    off = 0
    unpack = NLMSGHDR.unpack_from
    while off + 16 <= n:
        length, mtype, flags, seq, _pid = unpack(buf, off)
        if length < 16:
            break
        yield mtype, flags, seq, off + 16, length
        off += _align(length)


def parse_error(buf: memoryview | bytes, off: int, msg_len: int, flags: int) -> tuple[int, str]:
    """(errno, kernel's extended-ack text) from an NLMSG_ERROR payload at ``off``.

    errno is positive (0 for a plain ack). Works with and without NETLINK_CAP_ACK.
    """
    error = struct.unpack_from("=i", buf, off)[0]
    text = ""
    if flags & NLM_F_ACK_TLVS:
        end = off - 16 + msg_len
        if flags & NLM_F_CAPPED:  # only the original header was echoed
            pos = off + 4 + 16
        else:
            inner_len = U32.unpack_from(buf, off + 4)[0]
            pos = off + 4 + _align(inner_len)
        while pos + 4 <= end:
            alen, atype = RTATTR.unpack_from(buf, pos)
            if alen < 4:
                break
            if atype == NLMSGERR_ATTR_MSG:
                text = bytes(buf[pos + 4 : pos + alen]).rstrip(b"\0").decode(errors="replace")
            pos += _align(alen)
    return -error, text


def parse_route(buf: memoryview | bytes, off: int, end: int) -> Route:
    """A Route from an RTM_NEWROUTE payload at buf[off:end]."""
    family, dst_len, _src_len, _tos, table, proto, scope, rtype, rflags = RTMSG.unpack_from(
        buf, off
    )
    alen_addr = _FAMILY_LEN.get(family, 4)
    dst = gateway = None
    oif = priority = 0
    multipath: tuple[NextHop, ...] = ()
    pos = off + 12
    unpack_attr = RTATTR.unpack_from
    while pos + 4 <= end:
        alen, atype = unpack_attr(buf, pos)
        if alen < 4:
            break
        if atype == RTA_DST:
            dst = socket.inet_ntop(family, bytes(buf[pos + 4 : pos + 4 + alen_addr]))
        elif atype == RTA_GATEWAY:
            gateway = socket.inet_ntop(family, bytes(buf[pos + 4 : pos + 4 + alen_addr]))
        elif atype == RTA_OIF:
            oif = U32.unpack_from(buf, pos + 4)[0]
        elif atype == RTA_TABLE:
            table = U32.unpack_from(buf, pos + 4)[0]
        elif atype == RTA_PRIORITY:
            priority = U32.unpack_from(buf, pos + 4)[0]
        elif atype == RTA_MULTIPATH:
            multipath = _parse_multipath(buf, pos + 4, pos + alen, family, alen_addr)
        pos += _align(alen)
    if dst is None:
        dst = "::" if family == socket.AF_INET6 else "0.0.0.0"
    return Route(
        dst=f"{dst}/{dst_len}",
        type=rtype,
        gateway=gateway,
        oif=oif,
        flags=rflags,
        multipath=multipath,
        table=table,
        protocol=proto,
        priority=priority,
        scope=scope,
    )


def _parse_multipath(buf, pos: int, end: int, family: int, alen_addr: int) -> tuple[NextHop, ...]:
    legs = []
    while pos + 8 <= end:
        nlen, nflags, hops, ifindex = RTNEXTHOP.unpack_from(buf, pos)
        if nlen < 8:
            break
        gw = None
        apos = pos + 8
        while apos + 4 <= pos + nlen:
            alen, atype = RTATTR.unpack_from(buf, apos)
            if alen < 4:
                break
            if atype == RTA_GATEWAY:
                gw = socket.inet_ntop(family, bytes(buf[apos + 4 : apos + 4 + alen_addr]))
            apos += _align(alen)
        legs.append(NextHop(gateway=gw, oif=ifindex, flags=nflags, weight=hops + 1))
        pos += _align(nlen)
    return tuple(legs)


def parse_link(buf: memoryview | bytes, off: int, end: int) -> tuple[int, str]:
    """(ifindex, ifname) from an RTM_NEWLINK payload."""
    _family, _type, index, _flags, _change = IFINFOMSG.unpack_from(buf, off)
    pos = off + IFINFOMSG.size
    while pos + 4 <= end:
        alen, atype = RTATTR.unpack_from(buf, pos)
        if alen < 4:
            break
        if atype == IFLA_IFNAME:
            return index, bytes(buf[pos + 4 : pos + alen]).rstrip(b"\0").decode()
        pos += _align(alen)
    return index, ""
