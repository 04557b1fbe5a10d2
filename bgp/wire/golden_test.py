"""Golden triplets (ExaBGP style): a description, the hex the RFC layouts give (derived
by hand, field by field, in the comments), and the decoded value.

Each case checks decode(hex) == value, encode(value) == hex and so encode(decode(x)) == x.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest

from bgp.wire import (
    AddPath,
    AsPathSegment,
    FourOctetAs,
    GracefulRestart,
    Keepalive,
    Message,
    Multiprotocol,
    Negotiated,
    Notification,
    Open,
    PathAttributes,
    Prefix,
    RouteRefresh,
    RouteRefreshCapability,
    UnknownAttribute,
    UnknownCapability,
    Update,
    decode_message,
    encode_message,
)
from bgp.wire.types import AS_SEQUENCE, AS_SET, NO_EXPORT

M = "ff" * 16  # marker
IP = ipaddress.ip_address


@dataclass
class Golden:
    name: str
    hex: str
    value: Message
    ctx: Negotiated

    @property
    def raw(self) -> bytes:
        return bytes.fromhex(self.hex.replace(" ", ""))


IBGP = Negotiated()  # local_as == peer_as: LOCAL_PREF, ORIGINATOR_ID, CLUSTER_LIST kept
OLD_SPEAKER = Negotiated(four_octet_as=False, local_as=65001, peer_as=65002)
ADD_PATH = Negotiated(add_path_send=frozenset({(1, 1)}), add_path_receive=frozenset({(1, 1)}))

GOLDEN = [
    Golden("keepalive", M + "0013 04", Keepalive(), IBGP),
    Golden(
        "notification cease/admin shutdown with RFC 8203 text 'bye'",
        M + "0019 03 06 02 03 627965",
        Notification(6, 2, b"\x03bye"),
        IBGP,
    ),
    Golden("route-refresh ipv6 unicast", M + "0017 05 0002 00 01", RouteRefresh(2, 1), IBGP),
    Golden(
        "open AS 65001 hold 90 id 192.0.2.1: MP v4+v6, route refresh, 4-octet AS",
        M + "0033 01"
        "04 fde9 005a c0000201 16"  # version, my AS, hold, BGP id, opt len 22
        "02 14"  # capabilities parameter, 20 octets
        "01 04 0001 00 01"  # MP IPv4 unicast
        "01 04 0002 00 01"  # MP IPv6 unicast
        "02 00"  # route refresh
        "41 04 0000fde9",  # 4-octet AS 65001
        Open(
            65001,
            90,
            IP("192.0.2.1"),
            [
                Multiprotocol(1, 1),
                Multiprotocol(2, 1),
                RouteRefreshCapability(),
                FourOctetAs(65001),
            ],
        ),
        IBGP,
    ),
    Golden(
        "open AS 4200000001 (AS_TRANS in My AS), GR R-bit 120 s, ADD-PATH, unknown cap 70",
        M + "003b 01"
        "04 5ba0 00b4 c0000202 1e"  # my AS = AS_TRANS 23456, hold 180, opt len 30
        "02 1c"  # capabilities parameter, 28 octets
        "01 04 0001 00 01"  # MP IPv4 unicast
        "40 06 8078 0001 01 80"  # GR: R bit, 120 s; IPv4 unicast, F bit
        "41 04 fa56ea01"  # 4-octet AS 4200000001
        "45 04 0001 01 03"  # ADD-PATH IPv4 unicast send+receive
        "46 00",  # enhanced route refresh: not implemented, kept raw
        Open(
            23456,
            180,
            IP("192.0.2.2"),
            [
                Multiprotocol(1, 1),
                GracefulRestart(120, restarting=True, families=((1, 1, True),)),
                FourOctetAs(4200000001),
                AddPath(((1, 1, 3),)),
                UnknownCapability(70, b""),
            ],
        ),
        IBGP,
    ),
    Golden(
        "update ipv4: IGP, AS_PATH 65001 65002, NEXT_HOP, MED 100, 2 communities, 3 NLRI",
        M + "004c 02"
        "0000 002a"  # no withdrawn; 42 octets of attributes
        "40 01 01 00"  # ORIGIN IGP
        "40 02 0a 02 02 0000fde9 0000fdea"  # AS_PATH SEQUENCE(65001 65002), 4-octet
        "40 03 04 c0000201"  # NEXT_HOP 192.0.2.1
        "80 04 04 00000064"  # MED 100
        "c0 08 08 fde90064 ffffff01"  # COMMUNITIES 65001:100 NO_EXPORT
        "18 0a0000 10 0a01 11 c0a880",  # 10.0.0.0/24 10.1.0.0/16 192.168.128.0/17
        Update(
            attributes=PathAttributes(
                origin=0,
                as_path=(AsPathSegment(AS_SEQUENCE, (65001, 65002)),),
                next_hop=IP("192.0.2.1"),
                med=100,
                communities=(0xFDE90064, NO_EXPORT),
            ),
            nlri=[Prefix("10.0.0.0/24"), Prefix("10.1.0.0/16"), Prefix("192.168.128.0/17")],
        ),
        IBGP,
    ),
    Golden(
        "update withdrawing 10.0.0.0/8 and 192.0.2.0/24",
        M + "001d 02 0006 08 0a 18 c00002 0000",
        Update(withdrawn=[Prefix("10.0.0.0/8"), Prefix("192.0.2.0/24")]),
        IBGP,
    ),
    Golden(
        "update ipv6 in MP_REACH with global + link-local next hop, LOCAL_PREF (iBGP)",
        M + "0054 02"
        "0000 003d"  # 61 octets of attributes
        "40 01 01 00"  # ORIGIN IGP
        "40 02 00"  # empty AS_PATH (iBGP, locally originated)
        "40 05 04 00000064"  # LOCAL_PREF 100
        "80 0e 2c 0002 01 20"  # MP_REACH_NLRI, 44 octets, IPv6 unicast, next hop 32
        "20010db8000000000000000000000001 fe800000000000000000000000000001"
        "00"  # reserved
        "30 20010db80001",  # 2001:db8:1::/48
        Update(
            attributes=PathAttributes(
                origin=0,
                as_path=(),
                next_hop=IP("2001:db8::1"),
                next_hop_link_local=IP("fe80::1"),
                local_pref=100,
            ),
            nlri=[Prefix("2001:db8:1::/48")],
            mp_reach_family=(2, 1),
            mp_next_hop=IP("2001:db8::1"),
            mp_next_hop_link_local=IP("fe80::1"),
        ),
        IBGP,
    ),
    Golden(
        "update withdrawing 2001:db8:1::/48 in MP_UNREACH",
        M + "0024 02 0000 000d 80 0f 0a 0002 01 30 20010db80001",
        Update(withdrawn=[Prefix("2001:db8:1::/48")], mp_unreach_family=(2, 1)),
        IBGP,
    ),
    Golden(
        "end-of-rib ipv6 unicast: empty MP_UNREACH",
        M + "001d 02 0000 0006 80 0f 03 0002 01",
        Update(mp_unreach_family=(2, 1)),
        IBGP,
    ),
    Golden(
        "update to a 2-octet AS peer: AS_TRANS in AS_PATH, real path in AS4_PATH",
        M + "003c 02"
        "0000 0021"  # 33 octets of attributes
        "40 01 01 00"
        "40 02 06 02 02 fde9 5ba0"  # AS_PATH SEQUENCE(65001 AS_TRANS), 2-octet
        "40 03 04 c0000201"
        "c0 11 0a 02 02 0000fde9 fa56ea01"  # AS4_PATH SEQUENCE(65001 4200000001)
        "18 0a0000",
        Update(
            attributes=PathAttributes(
                origin=0,
                as_path=(AsPathSegment(AS_SEQUENCE, (65001, 4200000001)),),
                next_hop=IP("192.0.2.1"),
            ),
            nlri=[Prefix("10.0.0.0/24")],
        ),
        OLD_SPEAKER,
    ),
    Golden(
        "update with ADD-PATH path ids 1 and 2 for the same prefix",
        M + "0035 02"
        "0000 000e"
        "40 01 01 00"
        "40 02 00"
        "40 03 04 c0000201"
        "00000001 18 0a0000 00000002 18 0a0000",
        Update(
            attributes=PathAttributes(origin=0, next_hop=IP("192.0.2.1")),
            nlri=[Prefix("10.0.0.0/24", 1), Prefix("10.0.0.0/24", 2)],
        ),
        ADD_PATH,
    ),
    Golden(
        "update with every other attribute: AS_SET, aggregator, RR attributes, large "
        "community, unknown transitive already partial",
        M + "0074 02"
        "0000 0059"  # 89 octets of attributes
        "40 01 01 02"  # ORIGIN INCOMPLETE
        "40 02 10 02 01 0000fde9 01 02 0000fdea 0000fdeb"  # SEQ(65001) SET(65002 65003)
        "40 03 04 c0000201"
        "40 05 04 000000c8"  # LOCAL_PREF 200
        "40 06 00"  # ATOMIC_AGGREGATE
        "c0 07 08 0000fde9 c0000201"  # AGGREGATOR 65001 192.0.2.1
        "80 09 04 c0000202"  # ORIGINATOR_ID 192.0.2.2
        "80 0a 08 c0000203 c0000204"  # CLUSTER_LIST
        "c0 20 0c 0000fde9 00000001 00000002"  # LARGE_COMMUNITY 65001:1:2
        "e0 63 02 abcd"  # unknown optional transitive type 99, partial
        "18 0a0000",
        Update(
            attributes=PathAttributes(
                origin=2,
                as_path=(
                    AsPathSegment(AS_SEQUENCE, (65001,)),
                    AsPathSegment(AS_SET, (65002, 65003)),
                ),
                next_hop=IP("192.0.2.1"),
                local_pref=200,
                atomic_aggregate=True,
                aggregator=(65001, IP("192.0.2.1")),
                originator_id=IP("192.0.2.2"),
                cluster_list=(IP("192.0.2.3"), IP("192.0.2.4")),
                large_communities=((65001, 1, 2),),
                unknown=(UnknownAttribute(0xE0, 99, b"\xab\xcd"),),
            ),
            nlri=[Prefix("10.0.0.0/24")],
        ),
        IBGP,
    ),
]


@pytest.mark.parametrize("case", GOLDEN, ids=[g.name for g in GOLDEN])
def test_golden_decode(case: Golden) -> None:
    assert decode_message(case.raw, case.ctx) == case.value


@pytest.mark.parametrize("case", GOLDEN, ids=[g.name for g in GOLDEN])
def test_golden_encode(case: Golden) -> None:
    assert encode_message(case.value, case.ctx).hex() == case.raw.hex()


@pytest.mark.parametrize("case", GOLDEN, ids=[g.name for g in GOLDEN])
def test_golden_round_trip(case: Golden) -> None:
    assert encode_message(decode_message(case.raw, case.ctx), case.ctx) == case.raw


def test_open_effective_as_and_negotiation_from_goldens() -> None:
    ours = decode_message(GOLDEN[3].raw)
    theirs = decode_message(GOLDEN[4].raw)
    assert isinstance(ours, Open) and isinstance(theirs, Open)
    assert theirs.asn == 4200000001 and theirs.my_as == 23456
    ctx = Negotiated.from_opens(ours, theirs)
    # RFC 5492: only what both sent. Theirs lacks IPv6 and route refresh (code 2).
    assert ctx.families == {(1, 1)}
    assert not ctx.route_refresh
    assert ctx.four_octet_as and not ctx.ibgp
    assert ctx.hold_time == 90
    # We advertised no ADD-PATH, so nothing is sent or received with path ids.
    assert not ctx.add_path_send and not ctx.add_path_receive
    assert ctx.graceful_restart is not None and ctx.graceful_restart.restarting
    assert ctx.graceful_restart.forwarding_preserved(1, 1)


def test_add_path_directions_are_crossed_rfc7911() -> None:
    local = Open.for_speaker(65001, "192.0.2.1", add_path=((1, 1, 1), (2, 1, 2)))
    remote = Open.for_speaker(65001, "192.0.2.2", add_path=((1, 1, 2), (2, 1, 3)))
    ctx = Negotiated.from_opens(local, remote)
    assert ctx.add_path_receive == {(1, 1)}  # we receive, they send
    assert ctx.add_path_send == {(2, 1)}  # we send, they receive
    assert ctx.ibgp


def test_peer_without_multiprotocol_capability_gets_ipv4_unicast_rfc4760() -> None:
    local = Open.for_speaker(65001, "192.0.2.1")
    remote = Open(65002, 90, IP("192.0.2.2"), [])
    ctx = Negotiated.from_opens(local, remote)
    assert ctx.families == {(1, 1)} and not ctx.four_octet_as


def test_old_route_refresh_code_128_counts_as_route_refresh() -> None:
    raw = bytes.fromhex(M + "0021 01 04 fde9 005a c0000201 04 02 02 80 00")
    msg = decode_message(raw)
    assert isinstance(msg, Open)
    assert msg.capabilities == [RouteRefreshCapability(128)]
    assert encode_message(msg) == raw
    ctx = Negotiated.from_opens(Open.for_speaker(65001, "192.0.2.9"), msg)
    assert ctx.route_refresh


def test_unknown_optional_transitive_gets_partial_bit_and_non_transitive_is_dropped() -> None:
    raw = bytes.fromhex(
        M + "0034 02 0000 0019"
        "40 01 01 00 40 02 00 40 03 04 c0000201"
        "c0 63 02 abcd"  # unknown optional transitive, not partial
        "80 64 03 010203"  # unknown optional non-transitive
        "18 0a0000"
    )
    msg = decode_message(raw, IBGP)
    assert isinstance(msg, Update) and msg.attributes is not None
    assert msg.attributes.unknown == (UnknownAttribute(0xE0, 99, b"\xab\xcd"),)
    assert not msg.errors and not msg.treat_as_withdraw
    assert "e06302abcd" in encode_message(msg, IBGP).hex()
    assert "806403" not in encode_message(msg, IBGP).hex()


def test_shutdown_communication_rfc8203() -> None:
    n = Notification.shutdown("maintenance")
    assert n.shutdown_message() == "maintenance"
    assert "maintenance" in str(n)
    assert decode_message(encode_message(n)) == n
