"""pack_updates / pack_withdrawals / MessageReader: what the Adj-RIB-Out and session rely on."""

from __future__ import annotations

import ipaddress

import pytest

from bgp.wire import (
    AsPathSegment,
    BgpError,
    Keepalive,
    MessageReader,
    Negotiated,
    Open,
    PathAttributes,
    Prefix,
    Update,
    decode_message,
    encode_message,
    end_of_rib,
    pack_updates,
    pack_withdrawals,
)
from bgp.wire.types import AS_SEQUENCE

V4_ATTRS = PathAttributes(
    origin=0,
    as_path=(AsPathSegment(AS_SEQUENCE, (65001, 4200000001)),),
    next_hop=ipaddress.IPv4Address("192.0.2.1"),
    med=5,
    communities=(0xFDE80001,),
)
V6_ATTRS = PathAttributes(
    origin=0,
    as_path=(AsPathSegment(AS_SEQUENCE, (65001,)),),
    next_hop=ipaddress.IPv6Address("2001:db8::1"),
    next_hop_link_local=ipaddress.IPv6Address("fe80::1"),
)


def v4_prefixes(n: int) -> list[Prefix]:
    return [Prefix.from_int(4, (10 << 24) | (i << 8), 24) for i in range(n)]


def test_pack_updates_fills_messages_to_4096_and_loses_no_prefix() -> None:
    ctx = Negotiated()
    prefixes = v4_prefixes(3000)
    msgs = pack_updates(V4_ATTRS, prefixes, ctx)
    assert all(len(m) <= 4096 for m in msgs)
    # 3000 /24s at 4 octets each need at least ceil(12000 / ~4050) messages, no more.
    assert len(msgs) == 3
    seen: list[Prefix] = []
    for m in msgs:
        u = decode_message(m, ctx)
        assert isinstance(u, Update)
        assert u.attributes == V4_ATTRS
        assert not u.treat_as_withdraw and not u.errors
        seen.extend(u.nlri)
    assert seen == prefixes


def test_pack_updates_ipv6_goes_in_mp_reach_with_link_local_next_hop() -> None:
    ctx = Negotiated()
    prefixes = [Prefix(f"2001:db8:{i:x}::/48") for i in range(1000)]
    msgs = pack_updates(V6_ATTRS, prefixes, ctx)
    assert all(len(m) <= 4096 for m in msgs) and len(msgs) == 2  # 7 octets each
    seen: list[Prefix] = []
    for m in msgs:
        u = decode_message(m, ctx)
        assert isinstance(u, Update)
        assert u.mp_reach_family == (2, 1)
        assert u.attributes == V6_ATTRS
        seen.extend(u.nlri)
    assert seen == prefixes


def test_pack_updates_with_add_path_sends_path_ids() -> None:
    send = Negotiated(add_path_send=frozenset({(1, 1)}))
    recv = Negotiated(add_path_receive=frozenset({(1, 1)}))
    prefixes = [p.with_path_id(i + 1) for i, p in enumerate(v4_prefixes(10))]
    (msg,) = pack_updates(V4_ATTRS, prefixes, send)
    u = decode_message(msg, recv)
    assert isinstance(u, Update)
    assert [p.path_id for p in u.nlri] == list(range(1, 11))


def test_pack_updates_refuses_ipv4_prefixes_with_ipv6_next_hop() -> None:
    with pytest.raises(ValueError, match="IPv4 next hop"):
        pack_updates(V6_ATTRS, v4_prefixes(1), Negotiated())


def test_pack_withdrawals_both_families() -> None:
    ctx = Negotiated()
    v6 = [Prefix(f"2001:db8:{i:x}::/48") for i in range(10)]
    prefixes = v4_prefixes(2000) + v6
    msgs = pack_withdrawals(prefixes, ctx)
    got: list[Prefix] = []
    for m in msgs:
        assert len(m) <= 4096
        u = decode_message(m, ctx)
        assert isinstance(u, Update) and not u.nlri and u.attributes is None
        got.extend(u.withdrawn)
    assert got == prefixes


def test_end_of_rib_markers_are_recognised() -> None:
    ctx = Negotiated()
    assert end_of_rib().hex() == "ff" * 16 + "0017020000" + "0000"
    eor4 = decode_message(end_of_rib(), ctx)
    eor6 = decode_message(end_of_rib(2, 1), ctx)
    assert isinstance(eor4, Update) and eor4.is_end_of_rib() == (1, 1)
    assert isinstance(eor6, Update) and eor6.is_end_of_rib() == (2, 1)
    (full,) = pack_updates(V4_ATTRS, v4_prefixes(1), ctx)
    u = decode_message(full, ctx)
    assert isinstance(u, Update) and u.is_end_of_rib() is None


def test_reader_reassembles_byte_by_byte_and_derives_context_from_opens() -> None:
    local = Open.for_speaker(65001, "192.0.2.1")
    remote = Open.for_speaker(70000, "192.0.2.2")
    (update,) = pack_updates(V4_ATTRS, v4_prefixes(5), Negotiated())
    stream = encode_message(remote) + encode_message(Keepalive()) + update
    reader = MessageReader(local_open=local)
    got = []
    for i in range(len(stream)):
        got.extend(reader.feed(stream[i : i + 1]))
    assert [type(m).__name__ for m in got] == ["Open", "Keepalive", "Update"]
    assert reader.ctx is not None and reader.ctx.peer_as == 70000 and not reader.ctx.ibgp
    assert reader.buffered() == 0
    assert got[2].nlri == v4_prefixes(5)


def test_reader_without_local_open_pauses_after_open() -> None:
    remote = Open.for_speaker(65002, "192.0.2.2")
    stream = encode_message(remote) + encode_message(Keepalive())
    reader = MessageReader()
    assert [type(m).__name__ for m in reader.feed(stream)] == ["Open"]
    assert reader.buffered() == 19
    reader.ctx = Negotiated()
    assert [type(m).__name__ for m in reader.feed(b"")] == ["Keepalive"]


def test_reader_raises_header_error_before_the_body_arrives() -> None:
    reader = MessageReader()
    with pytest.raises(BgpError) as exc:
        reader.feed(b"\xff" * 16 + b"\x20\x00\x02")  # length 8192 without extended message
    assert (exc.value.code, exc.value.subcode) == (1, 2)
    assert exc.value.data == b"\x20\x00"
