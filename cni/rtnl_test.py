"""The hand-packed rtnetlink client: message layout, then the real kernel in a namespace."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import subprocess

import pytest

from cni import rtnl, testutil
from cni.rtnl import Rtnl, RtnlError
from cni.testutil import ip
from felix.netlink.codec import RTATTR, Route


def _attrs(buf: bytes, off: int) -> dict[int, bytes]:
    out = {}
    while off + 4 <= len(buf):
        alen, atype = RTATTR.unpack_from(buf, off)
        out[atype & 0x3FFF] = buf[off + 4 : off + alen]
        off += (alen + 3) & ~3
    return out


def test_veth_request_nests_peer_name_mtu_mac_and_netns_fd_under_linkinfo():
    msg = rtnl.pack_veth(7, "caliabc", "eth0", 1400, 42, "02:00:00:00:00:01")
    length, mtype, flags, seq, _ = struct_hdr(msg)
    assert (length, mtype, seq) == (len(msg), rtnl.RTM_NEWLINK, 7)
    assert flags & 0x400 and flags & 0x200  # NLM_F_CREATE | NLM_F_EXCL: never replaces
    top = _attrs(msg, 16 + rtnl.IFINFOMSG.size)
    assert top[rtnl.IFLA_IFNAME] == b"caliabc\0"
    assert int.from_bytes(top[rtnl.IFLA_MTU], "little") == 1400
    info = _attrs(top[rtnl.IFLA_LINKINFO], 0)
    assert info[rtnl.IFLA_INFO_KIND] == b"veth"
    peer = _attrs(_attrs(info[rtnl.IFLA_INFO_DATA], 0)[rtnl.VETH_INFO_PEER], rtnl.IFINFOMSG.size)
    assert peer[rtnl.IFLA_IFNAME] == b"eth0\0"
    assert int.from_bytes(peer[rtnl.IFLA_NET_NS_FD], "little") == 42
    assert peer[rtnl.IFLA_ADDRESS] == bytes.fromhex("020000000001")


def test_ipv4_address_request_carries_local_and_address():
    msg = rtnl.pack_addr(3, 9, ipaddress.IPv4Interface("10.1.2.3/32"))
    family, plen, _flags, _scope, index = rtnl.IFADDRMSG.unpack_from(msg, 16)
    assert (family, plen, index) == (socket.AF_INET, 32, 9)
    attrs = _attrs(msg, 16 + rtnl.IFADDRMSG.size)
    assert attrs[rtnl.IFA_LOCAL] == attrs[rtnl.IFA_ADDRESS] == bytes([10, 1, 2, 3])


def struct_hdr(msg: bytes) -> tuple[int, int, int, int, int]:
    from felix.netlink.codec import NLMSGHDR

    return NLMSGHDR.unpack_from(msg, 0)


@pytest.fixture
def ns():
    with testutil.namespace() as name:
        yield name


@testutil.needs_root
def test_veth_addresses_and_routes_reach_the_kernel(ns, tmp_path):
    pod_ns = testutil.unique()
    subprocess.run(["ip", "netns", "add", pod_ns], check=True)
    try:

        def work() -> tuple[rtnl.Link | None, list[tuple[str, int]], list[Route]]:
            fd = os.open(testutil.ns_path(pod_ns), os.O_RDONLY)
            try:
                with Rtnl() as nl:
                    nl.add_veth("tcnhost0", "eth0", 1400, fd, "02:11:22:33:44:55")
                    host = nl.link(name="tcnhost0")
                    assert host is not None and host.mtu == 1400 and not host.up
                    nl.set_link(host.index, up=True)
                    nl.add_addr(host.index, ipaddress.IPv4Interface("10.9.0.1/32"))
                    nl.add_route(Route(dst="10.9.0.7/32", oif=host.index, protocol=80))
                    # Adding it again is refused, with the kernel's errno.
                    with pytest.raises(RtnlError) as err:
                        nl.add_route(Route(dst="10.9.0.7/32", oif=host.index, protocol=80))
                    assert err.value.errno == errno.EEXIST
                    assert "10.9.0.7/32" in str(err.value)
                    nl.add_route(
                        Route(dst="10.9.0.7/32", oif=host.index, protocol=80), replace=True
                    )
                    return (
                        nl.link(index=host.index),
                        nl.addrs(host.index, socket.AF_INET),
                        nl.routes(socket.AF_INET, oif=host.index),
                    )
            finally:
                os.close(fd)

        link, addrs, routes = testutil.in_ns(ns, work)
        assert link is not None and link.name == "tcnhost0" and link.up
        assert addrs == [("10.9.0.1", 32)]
        assert [(r.dst, r.protocol) for r in routes] == [("10.9.0.7/32", 80)]
        assert "proto 80 scope link" in ip("route", "show", "10.9.0.7", ns=ns)
        pod = ip("link", "show", "eth0", ns=pod_ns)
        assert "mtu 1400" in pod and "02:11:22:33:44:55" in pod
    finally:
        subprocess.run(["ip", "netns", "del", pod_ns], check=False)


@testutil.needs_root
def test_missing_link_is_none_and_deleting_it_names_the_error(ns):
    def work() -> None:
        with Rtnl() as nl:
            assert nl.link(name="nosuchlink") is None
            with pytest.raises(RtnlError) as err:
                nl.del_link(99999)
            assert err.value.errno == errno.ENODEV
            assert "delete link 99999" in str(err.value)

    testutil.in_ns(ns, work)
