"""Pure codec tests: exact bytes for the messages the kernel will see, and round trips."""

import socket
import struct

from felix.netlink import codec
from felix.netlink.codec import NextHop, Route
from felix.netlink.constants import (
    NLM_F_ACK,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    RT_SCOPE_LINK,
    RT_SCOPE_NOWHERE,
    RTM_DELROUTE,
    RTM_NEWROUTE,
    RTN_BLACKHOLE,
    RTN_UNSPEC,
    RTNH_F_ONLINK,
)

FLAGS = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL


def test_gateway_route_packs_header_rtmsg_and_attrs_in_kernel_layout():
    r = Route(dst="10.65.0.0/26", gateway="192.168.1.2", protocol=80, priority=5)
    raw = codec.pack_route(RTM_NEWROUTE, FLAGS, 7, r)
    expected = (
        struct.pack("=IHHII", 60, RTM_NEWROUTE, FLAGS, 7, 0)
        + struct.pack("=BBBBBBBBI", socket.AF_INET, 26, 0, 0, 254, 80, 0, 1, 0)
        + struct.pack("=HH", 8, 1)
        + bytes([10, 65, 0, 0])
        + struct.pack("=HH", 8, 5)
        + bytes([192, 168, 1, 2])
        + struct.pack("=HHI", 8, 15, 254)
        + struct.pack("=HHI", 8, 6, 5)
    )
    assert raw == expected


def test_device_route_gets_link_scope_and_onlink_flag_is_kept():
    dev = Route(dst="10.0.0.1/32", oif=9, protocol=80)
    assert dev.effective_scope == RT_SCOPE_LINK
    onlink = Route(dst="10.1.0.0/26", gateway="10.2.0.1", oif=3, flags=RTNH_F_ONLINK)
    raw = codec.pack_route(RTM_NEWROUTE, FLAGS, 1, onlink)
    assert struct.unpack_from("=I", raw, 24)[0] == RTNH_F_ONLINK


def test_delete_uses_wildcard_type_and_scope_but_keeps_protocol():
    r = Route(dst="10.0.0.0/26", type=RTN_BLACKHOLE, protocol=80)
    raw = codec.pack_route(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, 3, r, delete=True)
    fields = struct.unpack_from("=BBBBBBBBI", raw, 16)
    assert fields[5] == 80  # protocol: the kernel deletes only a route of ours
    assert fields[6] == RT_SCOPE_NOWHERE
    assert fields[7] == RTN_UNSPEC


def test_route_round_trips_through_parse_including_multipath_and_ipv6():
    routes = [
        Route(dst="10.65.0.0/26", gateway="192.168.1.2", oif=4, protocol=80, scope=0),
        Route(
            dst="10.66.0.0/24",
            multipath=(NextHop("10.0.0.1", oif=2), NextHop("10.0.0.2", oif=3, weight=3)),
            protocol=80,
            scope=0,
        ),
        Route(dst="fd00:1::/64", gateway="fd00::1", oif=2, protocol=80, priority=1024, scope=0),
        Route(dst="0.0.0.0/0", gateway="10.0.0.1", protocol=80, scope=0),
    ]
    for r in routes:
        raw = codec.pack_route(RTM_NEWROUTE, FLAGS, 1, r)
        parsed = codec.parse_route(raw, 16, len(raw))
        assert parsed == r, r.describe()
        assert r.satisfied_by(parsed)


def test_satisfied_by_ignores_kernel_resolved_oif_but_not_gateway_or_type():
    want = Route(dst="10.0.0.0/26", gateway="10.1.0.1", protocol=80)
    assert want.satisfied_by(Route(dst="10.0.0.0/26", gateway="10.1.0.1", oif=7, protocol=80))
    assert not want.satisfied_by(Route(dst="10.0.0.0/26", gateway="10.1.0.2", protocol=80))
    assert not want.satisfied_by(Route(dst="10.0.0.0/26", type=RTN_BLACKHOLE, protocol=80))
    assert not want.satisfied_by(Route(dst="10.0.0.0/26", gateway="10.1.0.1", protocol=4))


def test_error_ack_with_extended_ack_text_is_decoded():
    inner = struct.pack("=IHHII", 60, RTM_NEWROUTE, FLAGS, 42, 0)
    text = b"Nexthop has invalid gateway\0"
    tlv = struct.pack("=HH", 4 + len(text), 1) + text
    tlv += b"\0" * (-len(tlv) % 4)
    payload = struct.pack("=i", -101) + inner + tlv
    msg = struct.pack(
        "=IHHII", 16 + len(payload), NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, 42, 0
    )
    msg += payload
    [(mtype, flags, seq, off, mlen)] = list(codec.iter_messages(msg, len(msg)))
    assert (mtype, seq) == (NLMSG_ERROR, 42)
    assert codec.parse_error(msg, off, mlen, flags) == (101, "Nexthop has invalid gateway")
