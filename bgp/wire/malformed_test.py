"""Malformed input: each case asserts the outcome RFC 4271 section 6 and RFC 7606 demand:
a NOTIFICATION code/subcode (session reset), treat-as-withdraw, or attribute-discard.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass

import pytest

from bgp.wire import BgpError, MessageReader, Negotiated, Update, decode_message
from bgp.wire.attributes import (
    AGGREGATOR,
    AS4_AGGREGATOR,
    AS4_PATH,
    ATOMIC_AGGREGATE,
    COMMUNITIES,
    LOCAL_PREF,
    ORIGINATOR_ID,
)

M = "ff" * 16
CTX = Negotiated()  # iBGP, 4-octet AS, IPv4 + IPv6 unicast
EBGP = Negotiated(local_as=65001, peer_as=65002)
OLD = Negotiated(local_as=65001, peer_as=65002, four_octet_as=False)

ORIGIN = "40 01 01 00"
AS_PATH = "40 02 06 02 01 0000fde9"  # SEQUENCE(65001)
NEXT_HOP = "40 03 04 c0000201"
BASE = ORIGIN + AS_PATH + NEXT_HOP
NLRI = "18 0a0000"  # 10.0.0.0/24


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def msg(msg_type: int, body: str, length: int | None = None) -> bytes:
    b = h(body)
    n = 19 + len(b) if length is None else length
    return h(M) + n.to_bytes(2, "big") + bytes((msg_type,)) + b


def update(attrs: str = BASE, nlri: str = NLRI, withdrawn: str = "") -> bytes:
    w, a = h(withdrawn), h(attrs)
    body = len(w).to_bytes(2, "big") + w + len(a).to_bytes(2, "big") + a + h(nlri)
    return msg(2, body.hex())


def open_msg(
    version: int = 4, asn: int = 65001, hold: int = 90, bgp_id: str = "c0000201", params: str = ""
) -> bytes:
    p = h(params)
    return msg(1, f"{version:02x} {asn:04x} {hold:04x} {bgp_id} {len(p):02x}" + p.hex())


@dataclass
class Reset:
    code: int
    subcode: int
    data: bytes | None = None  # checked when given


@dataclass
class Withdraw:
    pass


@dataclass
class Discard:
    code: int


CASES: list[tuple[str, bytes, Negotiated, object]] = [
    # --- header (RFC 4271 6.1) ---
    ("bad marker", h("ff" * 15 + "fe" + "0013 04"), CTX, Reset(1, 1)),
    ("header length 18", msg(4, "", 18), CTX, Reset(1, 2, h("0012"))),
    ("length over 4096", msg(2, "00" * 4096), CTX, Reset(1, 2, h("1013"))),
    ("unknown type 6", msg(6, ""), CTX, Reset(1, 3, b"\x06")),
    ("keepalive with a body", msg(4, "00"), CTX, Reset(1, 2, h("0014"))),
    ("notification too short", msg(3, "06"), CTX, Reset(1, 2, h("0014"))),
    ("route-refresh too long", msg(5, "0001 00 01 00"), CTX, Reset(1, 2, h("0018"))),
    ("route-refresh too short", msg(5, "0001 00"), CTX, Reset(1, 2, h("0016"))),
    ("open shorter than 29", msg(1, "04 fde9 005a c0000201"), CTX, Reset(1, 2)),
    ("update shorter than 23", msg(2, "0000 00"), CTX, Reset(1, 2)),
    # --- OPEN (RFC 4271 6.2, RFC 5492) ---
    ("open version 3", open_msg(version=3), CTX, Reset(2, 1, h("0004"))),
    ("open hold time 1", open_msg(hold=1), CTX, Reset(2, 6)),
    ("open hold time 2", open_msg(hold=2), CTX, Reset(2, 6)),
    ("open BGP id 0.0.0.0", open_msg(bgp_id="00000000"), CTX, Reset(2, 3)),
    ("open AS 0 (RFC 7607)", open_msg(asn=0), CTX, Reset(2, 2)),
    ("open optional parameter type 1", open_msg(params="01 02 0000"), CTX, Reset(2, 4)),
    ("open truncated capability", open_msg(params="02 03 41 04 00"), CTX, Reset(2, 0)),
    ("open capability header cut", open_msg(params="02 01 41"), CTX, Reset(2, 0)),
    ("open parameter overruns", open_msg(params="02 08 41 04 0000fde9"), CTX, Reset(2, 0)),
    ("open 4-octet AS cap length 2", open_msg(params="02 04 41 02 fde9"), CTX, Reset(2, 0)),
    (
        "open opt len beyond message",
        msg(1, "04 fde9 005a c0000201 08 02 02 02 00"),
        CTX,
        Reset(2, 0),
    ),
    # --- UPDATE framing (RFC 4271 6.3, RFC 7606 5) ---
    ("withdrawn length overruns", msg(2, "0010 0000"), CTX, Reset(3, 1)),
    ("attribute length overruns message", msg(2, "0000 0010 40010100"), CTX, Reset(3, 1)),
    ("withdrawn prefix truncated", update(BASE, "", withdrawn="18 0a00"), CTX, Reset(3, 10)),
    ("withdrawn prefix length 33", update(BASE, "", withdrawn="21 0a000000 00"), CTX, Reset(3, 10)),
    ("nlri prefix length 33", update(BASE, "21 0a00000000"), CTX, Reset(3, 10)),
    ("nlri truncated", update(BASE, "18 0a00"), CTX, Reset(3, 10)),
    ("attribute overruns section", update(ORIGIN + "40 02 09 02 01 0000fde9"), CTX, Withdraw()),
    ("stray octets after attributes", update(BASE + "4001"), CTX, Withdraw()),
    # --- attributes: treat-as-withdraw (RFC 7606 7) ---
    ("origin value 3", update("40 01 01 03" + AS_PATH + NEXT_HOP), CTX, Withdraw()),
    ("origin length 2", update("40 01 02 0000" + AS_PATH + NEXT_HOP), CTX, Withdraw()),
    ("origin with optional flag", update("c0 01 01 00" + AS_PATH + NEXT_HOP), CTX, Withdraw()),
    (
        "as_path segment type 5",
        update(ORIGIN + "40 02 06 05 01 0000fde9" + NEXT_HOP),
        CTX,
        Withdraw(),
    ),
    ("as_path zero-length segment", update(ORIGIN + "40 02 02 02 00" + NEXT_HOP), CTX, Withdraw()),
    (
        "as_path segment overruns",
        update(ORIGIN + "40 02 06 02 02 0000fde9" + NEXT_HOP),
        CTX,
        Withdraw(),
    ),
    (
        "as_path one octet left",
        update(ORIGIN + "40 02 07 02 01 0000fde9 02" + NEXT_HOP),
        CTX,
        Withdraw(),
    ),
    ("next_hop length 5", update(ORIGIN + AS_PATH + "40 03 05 c000020100"), CTX, Withdraw()),
    ("next_hop 0.0.0.0", update(ORIGIN + AS_PATH + "40 03 04 00000000"), CTX, Withdraw()),
    ("next_hop multicast", update(ORIGIN + AS_PATH + "40 03 04 e0000001"), CTX, Withdraw()),
    ("med length 3", update(BASE + "80 04 03 000001"), CTX, Withdraw()),
    ("local_pref length 2", update(BASE + "40 05 02 0064"), CTX, Withdraw()),
    ("communities length 6", update(BASE + "c0 08 06 fde900640000"), CTX, Withdraw()),
    ("communities length 0", update(BASE + "c0 08 00"), CTX, Withdraw()),
    ("large community length 8", update(BASE + "c0 20 08 0000fde900000001"), CTX, Withdraw()),
    ("originator_id length 5", update(BASE + "80 09 05 c000020100"), CTX, Withdraw()),
    ("cluster_list length 6", update(BASE + "80 0a 06 c0000201 0000"), CTX, Withdraw()),
    ("missing ORIGIN with NLRI", update(AS_PATH + NEXT_HOP), CTX, Withdraw()),
    ("missing AS_PATH with NLRI", update(ORIGIN + NEXT_HOP), CTX, Withdraw()),
    ("missing NEXT_HOP with NLRI", update(ORIGIN + AS_PATH), CTX, Withdraw()),
    ("NLRI without any attribute", update("", NLRI), CTX, Withdraw()),
    # --- attribute-discard (RFC 7606 7.6, 7.7, RFC 6793) ---
    ("atomic_aggregate length 1", update(BASE + "40 06 01 00"), CTX, Discard(ATOMIC_AGGREGATE)),
    (
        "aggregator length 7 (4-octet)",
        update(BASE + "c0 07 07 0000fde9c00002"),
        CTX,
        Discard(AGGREGATOR),
    ),
    (
        "aggregator length 8 to old speaker",
        update(BASE.replace("06 02 01 0000fde9", "04 02 01 fde9") + "c0 07 08 0000fde9c0000201"),
        OLD,
        Discard(AGGREGATOR),
    ),
    (
        "as4_path malformed",
        update(BASE.replace("06 02 01 0000fde9", "04 02 01 fde9") + "c0 11 03 02 01 00"),
        OLD,
        Discard(AS4_PATH),
    ),
    (
        "as4_aggregator length 6",
        update(BASE.replace("06 02 01 0000fde9", "04 02 01 fde9") + "c0 12 06 fde9c0000201"),
        OLD,
        Discard(AS4_AGGREGATOR),
    ),
    (
        "duplicate COMMUNITIES",
        update(BASE + "c0 08 04 fde90064 c0 08 04 fde90065"),
        CTX,
        Discard(COMMUNITIES),
    ),
    ("LOCAL_PREF from eBGP peer", update(BASE + "40 05 04 00000064"), EBGP, Discard(LOCAL_PREF)),
    (
        "ORIGINATOR_ID from eBGP peer",
        update(BASE + "80 09 04 c0000202"),
        EBGP,
        Discard(ORIGINATOR_ID),
    ),
    # --- session reset (RFC 7606 3, 5.3; RFC 4760 7) ---
    ("unknown well-known attribute", update(BASE + "40 63 01 00"), CTX, Reset(3, 2, h("40630100"))),
    (
        "duplicate MP_REACH_NLRI",
        update(
            ORIGIN
            + AS_PATH
            + "80 0e 1a 0002 01 10 20010db8000000000000000000000001 00 20 20010db8" * 2,
            "",
        ),
        CTX,
        Reset(3, 1),
    ),
    (
        "MP_REACH next hop length 15",
        update(
            ORIGIN + AS_PATH + "80 0e 19 0002 01 0f 20010db80000000000000000000000 00 20 20010db8",
            "",
        ),
        CTX,
        Reset(3, 9),
    ),
    (
        "MP_REACH unknown AFI 3",
        update(ORIGIN + AS_PATH + "80 0e 0a 0003 01 04 c0000201 00 18 0a0000", ""),
        CTX,
        Reset(3, 9),
    ),
    (
        "MP_REACH prefix length 129",
        update(
            ORIGIN
            + AS_PATH
            + "80 0e 1a 0002 01 10 20010db8000000000000000000000001 00 81 20010db8",
            "",
        ),
        CTX,
        Reset(3, 9),
    ),
    ("MP_REACH shorter than 5", update(ORIGIN + AS_PATH + "80 0e 03 000201", ""), CTX, Reset(3, 9)),
    ("MP_UNREACH truncated prefix", update("80 0f 05 0002 01 30 2001", ""), CTX, Reset(3, 9)),
    (
        "MP_UNREACH family not negotiated",
        update("80 0f 03 0002 01", ""),
        Negotiated(families=frozenset({(1, 1)})),
        Reset(3, 9),
    ),
    (
        "MP_REACH with wrong flags",
        update(
            ORIGIN
            + AS_PATH
            + "c0 0e 1a 0002 01 10 20010db8000000000000000000000001 00 20 20010db8",
            "",
        ),
        CTX,
        Reset(3, 4),
    ),
    (
        "MP_REACH overruns section",
        update(ORIGIN + AS_PATH + "80 0e 30 0002 01 10", ""),
        CTX,
        Reset(3, 5),
    ),
]


@pytest.mark.parametrize(
    ("raw", "ctx", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_input_gets_the_rfc_outcome(
    raw: bytes, ctx: Negotiated, expected: object
) -> None:
    if isinstance(expected, Reset):
        with pytest.raises(BgpError) as exc:
            decode_message(raw, ctx)
        err = exc.value
        assert (err.code, err.subcode) == (expected.code, expected.subcode), str(err)
        if expected.data is not None:
            assert err.data == expected.data
        notification = err.notification()
        assert (notification.code, notification.subcode) == (expected.code, expected.subcode)
        return
    result = decode_message(raw, ctx)
    assert isinstance(result, Update)
    if isinstance(expected, Withdraw):
        assert result.treat_as_withdraw, result
        assert result.errors and "treat-as-withdraw" in result.errors[0]
        # Nothing is lost: the prefixes come back as withdrawals.
        assert result.announcements() == []
        assert [str(p) for p in result.withdrawals()] == ["10.0.0.0/24"]
    else:
        assert isinstance(expected, Discard)
        assert not result.treat_as_withdraw, result.errors
        assert result.discarded_attributes == [expected.code]
        assert result.errors
        assert [str(p) for p in result.announcements()] == ["10.0.0.0/24"]


def test_suite_covers_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


def test_discarded_aggregator_keeps_the_rest_of_the_route() -> None:
    u = decode_message(update(BASE + "c0 07 07 0000fde9c00002 c0 08 04 fde90064"), CTX)
    assert isinstance(u, Update) and u.attributes is not None
    assert u.attributes.aggregator is None
    assert u.attributes.communities == (0xFDE90064,)
    assert u.attributes.origin == 0


def test_treat_as_withdraw_also_withdraws_mp_reach_prefixes_rfc7606_5_3() -> None:
    mp = "80 0e 1a 0002 01 10 20010db8000000000000000000000001 00 20 20010db8"
    u = decode_message(update("40 01 01 07" + AS_PATH + mp, ""), CTX)
    assert isinstance(u, Update) and u.treat_as_withdraw
    assert [str(p) for p in u.withdrawals()] == ["2001:db8::/32"]


def test_as4_path_longer_than_as_path_is_ignored_rfc6793() -> None:
    as_path = "40 02 04 02 01 5ba0"  # SEQUENCE(AS_TRANS)
    as4 = "c0 11 0a 02 02 fa56ea01 fa56ea02"  # two ASes: more than AS_PATH has
    u = decode_message(update(ORIGIN + as_path + NEXT_HOP + as4), OLD)
    assert isinstance(u, Update) and u.attributes is not None
    assert u.attributes.as_path[0].asns == (23456,)
    assert not u.treat_as_withdraw


def test_as4_path_from_four_octet_speaker_is_discarded() -> None:
    u = decode_message(update(BASE + "c0 11 06 02 01 fa56ea01"), CTX)
    assert isinstance(u, Update) and u.discarded_attributes == [AS4_PATH]
    assert u.attributes is not None and u.attributes.as_path[0].asns == (65001,)


def test_errors_without_nlri_do_not_touch_routes() -> None:
    u = decode_message(update("40 01 01 09", ""), CTX)
    assert isinstance(u, Update)
    assert u.withdrawals() == [] and u.announcements() == []


def test_reader_rejects_a_bad_marker_in_a_later_message() -> None:
    good = msg(4, "")
    bad = h("00" * 16 + "0013 04")
    reader = MessageReader(CTX)
    with pytest.raises(BgpError) as exc:
        reader.feed(good + bad)
    assert (exc.value.code, exc.value.subcode) == (1, 1)


def test_random_garbage_never_crashes_only_bgp_errors() -> None:
    """Bounded fuzz: mutated valid UPDATEs decode or raise BgpError, nothing else."""
    rng = random.Random(1234)
    seeds = [
        update(BASE + "c0 08 04 fde90064"),
        update(
            ORIGIN
            + AS_PATH
            + "80 0e 1a 0002 01 10 20010db8000000000000000000000001 00 20 20010db8",
            "",
        ),
    ]
    for _ in range(3000):
        raw = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(19, len(raw))] = rng.randrange(256)
        if rng.random() < 0.3:
            raw = raw[: rng.randrange(19, len(raw))]
            raw[16:18] = len(raw).to_bytes(2, "big")
        with contextlib.suppress(BgpError):
            decode_message(bytes(raw), CTX)
