"""Path attributes (RFC 4271 4.3/5, RFC 4760, RFC 6793, RFC 1997, RFC 4456, RFC 8092).

Decoding applies RFC 7606 revised error handling: each attribute declares what a
malformed instance costs (treat-as-withdraw, attribute-discard or session reset) and
the decoder records the outcome on an ``AttributeResult`` instead of giving up, so
the session is only reset where 7606 leaves no other choice.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from bgp.wire.errors import (
    ATTRIBUTE_FLAGS_ERROR,
    ATTRIBUTE_LENGTH_ERROR,
    INVALID_NEXT_HOP_ATTRIBUTE,
    INVALID_ORIGIN_ATTRIBUTE,
    MALFORMED_AS_PATH,
    MALFORMED_ATTRIBUTE_LIST,
    MISSING_WELL_KNOWN_ATTRIBUTE,
    OPTIONAL_ATTRIBUTE_ERROR,
    UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
    UPDATE_MESSAGE_ERROR,
    BgpError,
)
from bgp.wire.negotiated import Negotiated
from bgp.wire.nlri import decode_prefixes
from bgp.wire.types import (
    AFI_IPV4,
    AFI_IPV6,
    AS_CONFED_SEQUENCE,
    AS_CONFED_SET,
    AS_SEQUENCE,
    AS_SET,
    AS_TRANS,
    AsPathSegment,
    PathAttributes,
    Prefix,
    UnknownAttribute,
    as_path_length,
)

# Attribute type codes.
ORIGIN = 1
AS_PATH = 2
NEXT_HOP = 3
MULTI_EXIT_DISC = 4
LOCAL_PREF = 5
ATOMIC_AGGREGATE = 6
AGGREGATOR = 7
COMMUNITIES = 8
ORIGINATOR_ID = 9
CLUSTER_LIST = 10
MP_REACH_NLRI = 14
MP_UNREACH_NLRI = 15
AS4_PATH = 17
AS4_AGGREGATOR = 18
LARGE_COMMUNITY = 32

# Flag bits.
OPTIONAL = 0x80
TRANSITIVE = 0x40
PARTIAL = 0x20
EXTENDED_LENGTH = 0x10

WELL_KNOWN = TRANSITIVE
OPTIONAL_TRANSITIVE = OPTIONAL | TRANSITIVE
OPTIONAL_NON_TRANSITIVE = OPTIONAL


class Action(Enum):
    """RFC 7606 2: what a malformed attribute costs, mildest first."""

    DISCARD = 1  # attribute-discard
    WITHDRAW = 2  # treat-as-withdraw
    RESET = 3  # session reset


class Malformed(Exception):
    """Raised by an attribute decoder; the registry entry decides the consequence."""

    def __init__(self, reason: str, subcode: int = 0) -> None:
        super().__init__(reason)
        self.subcode = subcode


@dataclass
class MpReach:
    afi: int
    safi: int
    next_hop: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    link_local: ipaddress.IPv6Address | None
    prefixes: list[Prefix]


@dataclass
class MpUnreach:
    afi: int
    safi: int
    prefixes: list[Prefix]


@dataclass
class AttributeResult:
    """Everything the attribute section said, plus the RFC 7606 outcome."""

    attributes: PathAttributes | None = None
    mp_reach: MpReach | None = None
    mp_unreach: MpUnreach | None = None
    treat_as_withdraw: bool = False
    discarded: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AttributeCodec:
    """Registry entry: how to decode one attribute type and what errors cost."""

    code: int
    name: str
    flags: int  # expected OPTIONAL|TRANSITIVE bits
    on_error: Action
    decode: Callable[[bytes, Negotiated, dict[str, Any]], None]
    subcode: int = OPTIONAL_ATTRIBUTE_ERROR  # for RESET


REGISTRY: dict[int, AttributeCodec] = {}


def attribute(code: int, name: str, flags: int, on_error: Action, subcode: int = 0) -> Any:
    def wrap(fn: Callable[[bytes, Negotiated, dict[str, Any]], None]) -> Any:
        REGISTRY[code] = AttributeCodec(
            code, name, flags, on_error, fn, subcode or OPTIONAL_ATTRIBUTE_ERROR
        )
        return fn

    return wrap


_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


def _fixed(value: bytes, size: int, name: str, subcode: int = ATTRIBUTE_LENGTH_ERROR) -> None:
    if len(value) != size:
        raise Malformed(f"{name} length {len(value)} != {size}", subcode)


@attribute(ORIGIN, "ORIGIN", WELL_KNOWN, Action.WITHDRAW)
def _origin(value: bytes, ctx: Negotiated, out: dict[str, Any]) -> None:
    _fixed(value, 1, "ORIGIN")
    if value[0] > 2:
        raise Malformed(f"ORIGIN value {value[0]}", INVALID_ORIGIN_ATTRIBUTE)
    out["origin"] = value[0]


_AS_FORMATS = {
    (n, size): struct.Struct(f"!{n}{'I' if size == 4 else 'H'}")
    for n in range(256)
    for size in (2, 4)
}


def decode_as_path(value: bytes, as_size: int, name: str) -> tuple[AsPathSegment, ...]:
    """RFC 7606 7.2: unknown segment type, zero-length segment, overrun or underrun."""
    segs = []
    i = 0
    end = len(value)
    while i < end:
        if end - i < 2:
            raise Malformed(f"{name} underrun: {end - i} octet left", MALFORMED_AS_PATH)
        stype, count = value[i], value[i + 1]
        if stype not in (AS_SET, AS_SEQUENCE, AS_CONFED_SEQUENCE, AS_CONFED_SET):
            raise Malformed(f"{name} segment type {stype}", MALFORMED_AS_PATH)
        if count == 0:
            raise Malformed(f"{name} zero-length segment", MALFORMED_AS_PATH)
        j = i + 2 + count * as_size
        if j > end:
            raise Malformed(f"{name} segment of {count} ASes overruns", MALFORMED_AS_PATH)
        segs.append(AsPathSegment(stype, _AS_FORMATS[(count, as_size)].unpack_from(value, i + 2)))
        i = j
    return tuple(segs)


@attribute(AS_PATH, "AS_PATH", WELL_KNOWN, Action.WITHDRAW)
def _as_path(value: bytes, ctx: Negotiated, out: dict[str, Any]) -> None:
    out["as_path"] = decode_as_path(value, 4 if ctx.four_octet_as else 2, "AS_PATH")


def check_ipv4_next_hop(addr: int) -> str | None:
    """RFC 4271 6.3: a semantically wrong NEXT_HOP makes the route unusable."""
    if addr == 0:
        return "NEXT_HOP 0.0.0.0"
    if addr >> 28 == 0xE:
        return f"NEXT_HOP {ipaddress.IPv4Address(addr)} is multicast"
    if addr == 0xFFFFFFFF:
        return "NEXT_HOP 255.255.255.255"
    return None


@attribute(NEXT_HOP, "NEXT_HOP", WELL_KNOWN, Action.WITHDRAW)
def _next_hop(value: bytes, ctx: Negotiated, out: dict[str, Any]) -> None:
    _fixed(value, 4, "NEXT_HOP")
    addr = _U32.unpack(value)[0]
    problem = check_ipv4_next_hop(addr)
    if problem:
        raise Malformed(problem, INVALID_NEXT_HOP_ATTRIBUTE)
    out["ipv4_next_hop"] = ipaddress.IPv4Address(addr)


@attribute(MULTI_EXIT_DISC, "MULTI_EXIT_DISC", OPTIONAL_NON_TRANSITIVE, Action.WITHDRAW)
def _med(value: bytes, ctx: Negotiated, out: dict[str, Any]) -> None:
    _fixed(value, 4, "MULTI_EXIT_DISC")
    out["med"] = _U32.unpack(value)[0]


@attribute(LOCAL_PREF, "LOCAL_PREF", WELL_KNOWN, Action.WITHDRAW)
def _local_pref(value: bytes, ctx: Negotiated, out: dict[str, Any]) -> None:
    _fixed(value, 4, "LOCAL_PREF")
    if not ctx.ibgp:  # RFC 7606 7.5: from an external peer, discard
        raise _Discard("LOCAL_PREF from an external peer")
    out["local_pref"] = _U32.unpack(value)[0]


@attribute(ATOMIC_AGGREGATE, "ATOMIC_AGGREGATE", WELL_KNOWN, Action.DISCARD)
def _atomic(value: bytes, ctx: Negotiated, out: dict[str, Any]) -> None:
    _fixed(value, 0, "ATOMIC_AGGREGATE")
    out["atomic_aggregate"] = True


@attribute(AGGREGATOR, "AGGREGATOR", OPTIONAL_TRANSITIVE, Action.DISCARD)
def _aggregator(value: bytes, ctx: Negotiated, out: dict[str, Any]) -> None:
    if ctx.four_octet_as:
        _fixed(value, 8, "AGGREGATOR")
        asn, addr = struct.unpack("!II", value)
    else:
        _fixed(value, 6, "AGGREGATOR")
        asn, addr = struct.unpack("!HI", value)
    out["aggregator"] = (asn, ipaddress.IPv4Address(addr))


@attribute(COMMUNITIES, "COMMUNITIES", OPTIONAL_TRANSITIVE, Action.WITHDRAW)
def _communities(value: bytes, ctx: Negotiated, out: dict[str, Any]) -> None:
    if not value or len(value) % 4:
        raise Malformed(f"COMMUNITIES length {len(value)} not a positive multiple of 4")
    out["communities"] = struct.unpack(f"!{len(value) // 4}I", value)


@attribute(ORIGINATOR_ID, "ORIGINATOR_ID", OPTIONAL_NON_TRANSITIVE, Action.WITHDRAW)
def _originator_id(value: bytes, ctx: Negotiated, out: dict[str, Any]) -> None:
    _fixed(value, 4, "ORIGINATOR_ID")
    if not ctx.ibgp:  # RFC 7606 7.9
        raise _Discard("ORIGINATOR_ID from an external peer")
    out["originator_id"] = ipaddress.IPv4Address(value)


@attribute(CLUSTER_LIST, "CLUSTER_LIST", OPTIONAL_NON_TRANSITIVE, Action.WITHDRAW)
def _cluster_list(value: bytes, ctx: Negotiated, out: dict[str, Any]) -> None:
    if not value or len(value) % 4:
        raise Malformed(f"CLUSTER_LIST length {len(value)} not a positive multiple of 4")
    if not ctx.ibgp:  # RFC 7606 7.10
        raise _Discard("CLUSTER_LIST from an external peer")
    out["cluster_list"] = tuple(
        ipaddress.IPv4Address(value[i : i + 4]) for i in range(0, len(value), 4)
    )


def _check_family(afi: int, safi: int, ctx: Negotiated, name: str) -> None:
    if (afi, safi) not in ctx.families:
        raise Malformed(f"{name} for family {afi}/{safi} that was not negotiated")


@attribute(MP_REACH_NLRI, "MP_REACH_NLRI", OPTIONAL_NON_TRANSITIVE, Action.RESET)
def _mp_reach(value: bytes, ctx: Negotiated, out: dict[str, Any]) -> None:
    if len(value) < 5:
        raise Malformed(f"MP_REACH_NLRI length {len(value)} < 5")
    afi, safi, nh_len = struct.unpack_from("!HBB", value)
    _check_family(afi, safi, ctx, "MP_REACH_NLRI")
    if len(value) < 5 + nh_len:
        raise Malformed(f"MP_REACH_NLRI next hop length {nh_len} overruns")
    nh = value[4 : 4 + nh_len]
    link_local = None
    next_hop: ipaddress.IPv4Address | ipaddress.IPv6Address
    if afi == AFI_IPV6 and nh_len in (16, 32):
        next_hop = ipaddress.IPv6Address(nh[:16])
        if nh_len == 32:
            link_local = ipaddress.IPv6Address(nh[16:])
    elif afi == AFI_IPV4 and nh_len == 4:
        next_hop = ipaddress.IPv4Address(nh)
    else:
        raise Malformed(f"MP_REACH_NLRI next hop length {nh_len} invalid for AFI {afi}")
    version = 4 if afi == AFI_IPV4 else 6
    prefixes = decode_prefixes(
        value,
        5 + nh_len,
        len(value),
        version,
        (afi, safi) in ctx.add_path_receive,
        UPDATE_MESSAGE_ERROR,
        OPTIONAL_ATTRIBUTE_ERROR,
        "MP_REACH_NLRI",
    )
    out["mp_reach"] = MpReach(afi, safi, next_hop, link_local, prefixes)


@attribute(MP_UNREACH_NLRI, "MP_UNREACH_NLRI", OPTIONAL_NON_TRANSITIVE, Action.RESET)
def _mp_unreach(value: bytes, ctx: Negotiated, out: dict[str, Any]) -> None:
    if len(value) < 3:
        raise Malformed(f"MP_UNREACH_NLRI length {len(value)} < 3")
    afi, safi = struct.unpack_from("!HB", value)
    _check_family(afi, safi, ctx, "MP_UNREACH_NLRI")
    prefixes = decode_prefixes(
        value,
        3,
        len(value),
        4 if afi == AFI_IPV4 else 6,
        (afi, safi) in ctx.add_path_receive,
        UPDATE_MESSAGE_ERROR,
        OPTIONAL_ATTRIBUTE_ERROR,
        "MP_UNREACH_NLRI",
    )
    out["mp_unreach"] = MpUnreach(afi, safi, prefixes)


@attribute(AS4_PATH, "AS4_PATH", OPTIONAL_TRANSITIVE, Action.DISCARD)
def _as4_path(value: bytes, ctx: Negotiated, out: dict[str, Any]) -> None:
    if ctx.four_octet_as:  # RFC 6793 4.1: only meaningful from an OLD speaker
        raise _Discard("AS4_PATH from a 4-octet AS speaker")
    path = decode_as_path(value, 4, "AS4_PATH")
    if any(s.type in (AS_CONFED_SEQUENCE, AS_CONFED_SET) for s in path):
        raise Malformed("AS4_PATH carries confederation segments")
    out["as4_path"] = path


@attribute(AS4_AGGREGATOR, "AS4_AGGREGATOR", OPTIONAL_TRANSITIVE, Action.DISCARD)
def _as4_aggregator(value: bytes, ctx: Negotiated, out: dict[str, Any]) -> None:
    if ctx.four_octet_as:
        raise _Discard("AS4_AGGREGATOR from a 4-octet AS speaker")
    _fixed(value, 8, "AS4_AGGREGATOR")
    asn, addr = struct.unpack("!II", value)
    out["as4_aggregator"] = (asn, ipaddress.IPv4Address(addr))


@attribute(LARGE_COMMUNITY, "LARGE_COMMUNITY", OPTIONAL_TRANSITIVE, Action.WITHDRAW)
def _large_community(value: bytes, ctx: Negotiated, out: dict[str, Any]) -> None:
    if not value or len(value) % 12:
        raise Malformed(f"LARGE_COMMUNITY length {len(value)} not a positive multiple of 12")
    out["large_communities"] = tuple(struct.iter_unpack("!III", value))


class _Discard(Exception):
    """A well-formed attribute that 7606 still says to drop (e.g. LOCAL_PREF over eBGP)."""


def attribute_name(code: int) -> str:
    entry = REGISTRY.get(code)
    return entry.name if entry else f"attribute {code}"


def decode_attributes(data: bytes, ctx: Negotiated, has_nlri: bool) -> AttributeResult:
    """Decode an UPDATE's path attribute section under RFC 7606 rules.

    ``has_nlri``: the UPDATE carries classic IPv4 NLRI (so NEXT_HOP is mandatory).
    Raises ``BgpError`` only for session-reset cases.
    """
    result = AttributeResult()
    fields: dict[str, Any] = {}
    unknown: list[UnknownAttribute] = []
    seen: set[int] = set()
    i = 0
    end = len(data)
    while i < end:
        if end - i < 3:
            _withdraw(result, f"{end - i} stray octets after the last attribute")
            break
        flags, code = data[i], data[i + 1]
        if flags & EXTENDED_LENGTH:
            if end - i < 4:
                _withdraw(result, "truncated extended-length attribute header")
                break
            length = (data[i + 2] << 8) | data[i + 3]
            start = i + 4
        else:
            length = data[i + 2]
            start = i + 3
        stop = start + length
        if stop > end:
            # RFC 7606 4: the attribute overruns the section; NLRI can still be found.
            if code in (MP_REACH_NLRI, MP_UNREACH_NLRI):
                raise BgpError(
                    UPDATE_MESSAGE_ERROR,
                    ATTRIBUTE_LENGTH_ERROR,
                    bytes(data[i:end]),
                    f"{attribute_name(code)} length {length} overruns the attribute section",
                )
            _withdraw(result, f"{attribute_name(code)} length {length} overruns")
            break
        value = data[start:stop]
        raw = data[i:stop]
        i = stop
        if code in seen:
            if code in (MP_REACH_NLRI, MP_UNREACH_NLRI):
                raise BgpError(
                    UPDATE_MESSAGE_ERROR,
                    MALFORMED_ATTRIBUTE_LIST,
                    b"",
                    f"{attribute_name(code)} appears twice",
                )
            result.discarded.append(code)
            result.errors.append(f"duplicate {attribute_name(code)} discarded (RFC 7606 3.g)")
            continue
        seen.add(code)
        entry = REGISTRY.get(code)
        if entry is None:
            if not flags & OPTIONAL:
                raise BgpError(
                    UPDATE_MESSAGE_ERROR,
                    UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                    bytes(raw),
                    f"unrecognized well-known attribute {code}",
                )
            if flags & TRANSITIVE:
                unknown.append(UnknownAttribute(flags | PARTIAL, code, bytes(value)))
            continue
        problem: str | None = None
        subcode = entry.subcode
        if flags & (OPTIONAL | TRANSITIVE) != entry.flags or (
            flags & PARTIAL and entry.flags != OPTIONAL_TRANSITIVE
        ):
            problem = f"{entry.name} flags 0x{flags:02x}"
            subcode = ATTRIBUTE_FLAGS_ERROR
        else:
            try:
                entry.decode(value, ctx, fields)
            except _Discard as exc:
                result.discarded.append(code)
                result.errors.append(f"{exc} (discarded, RFC 7606)")
                continue
            except Malformed as exc:
                problem = str(exc)
                if entry.on_error is Action.RESET:
                    subcode = entry.subcode
        if problem is None:
            continue
        if entry.on_error is Action.RESET:
            raise BgpError(UPDATE_MESSAGE_ERROR, subcode, bytes(raw), problem)
        if entry.on_error is Action.DISCARD:
            result.discarded.append(code)
            result.errors.append(f"{problem} (attribute discarded, RFC 7606)")
        else:
            _withdraw(result, problem)

    result.mp_reach = fields.pop("mp_reach", None)
    result.mp_unreach = fields.pop("mp_unreach", None)
    _merge_as4(fields, result)
    ipv4_nh = fields.pop("ipv4_next_hop", None)
    announces = has_nlri or (result.mp_reach is not None and bool(result.mp_reach.prefixes))
    if announces:
        # RFC 7606 3.d; one that was present but malformed was already withdrawn.
        required = [(ORIGIN, "ORIGIN"), (AS_PATH, "AS_PATH")]
        if has_nlri:
            required.append((NEXT_HOP, "NEXT_HOP"))
        for code, name in required:
            if code not in seen:
                _withdraw(
                    result,
                    f"missing well-known attribute {name} "
                    f"(would be {UPDATE_MESSAGE_ERROR}/{MISSING_WELL_KNOWN_ATTRIBUTE})",
                )
    if seen - {MP_UNREACH_NLRI}:
        mp = result.mp_reach
        if mp is not None and not has_nlri:
            fields["next_hop"] = mp.next_hop
            fields["next_hop_link_local"] = mp.link_local
        else:
            fields["next_hop"] = ipv4_nh
        if unknown:
            fields["unknown"] = tuple(unknown)
        result.attributes = PathAttributes(**fields)
    return result


def _withdraw(result: AttributeResult, reason: str) -> None:
    result.treat_as_withdraw = True
    result.errors.append(f"{reason} (treat-as-withdraw, RFC 7606)")


def _merge_as4(fields: dict[str, Any], result: AttributeResult) -> None:
    """RFC 6793 4.2.3: rebuild the real path and aggregator from an OLD speaker's UPDATE."""
    as4_path = fields.pop("as4_path", None)
    as4_agg = fields.pop("as4_aggregator", None)
    agg = fields.get("aggregator")
    if agg is not None and agg[0] != AS_TRANS:
        if as4_agg is not None or as4_path is not None:
            result.errors.append("AS4 attributes ignored: AGGREGATOR AS is not AS_TRANS")
        return
    if agg is not None and as4_agg is not None:
        fields["aggregator"] = as4_agg
    if as4_path is None or "as_path" not in fields:
        return
    as_path = fields["as_path"]
    keep = as_path_length(as_path) - as_path_length(as4_path)
    if keep < 0:
        result.errors.append("AS4_PATH longer than AS_PATH: ignored (RFC 6793 4.2.3)")
        return
    lead: list[AsPathSegment] = []
    for seg in as_path:
        if keep <= 0:
            break
        if seg.type == AS_SEQUENCE:
            take = seg.asns[:keep]
            lead.append(AsPathSegment(AS_SEQUENCE, take))
            keep -= len(take)
        elif seg.type == AS_SET:
            lead.append(seg)
            keep -= 1
        else:
            lead.append(seg)
    merged = list(lead)
    for seg in as4_path:
        if merged and merged[-1].type == AS_SEQUENCE and seg.type == AS_SEQUENCE:
            merged[-1] = AsPathSegment(AS_SEQUENCE, merged[-1].asns + seg.asns)
        else:
            merged.append(seg)
    fields["as_path"] = tuple(merged)


# --- encoding -------------------------------------------------------------------------


def encode_attribute(flags: int, code: int, value: bytes) -> bytes:
    """One TLV; the extended-length bit is set exactly when the value needs it."""
    n = len(value)
    if n > 255:
        return bytes((flags | EXTENDED_LENGTH, code, n >> 8, n & 0xFF)) + value
    return bytes((flags & ~EXTENDED_LENGTH, code, n)) + value


def encode_as_path(path: tuple[AsPathSegment, ...], as_size: int) -> bytes:
    fmt = "I" if as_size == 4 else "H"
    out = []
    for seg in path:
        asns = seg.asns
        if as_size == 2:
            asns = tuple(a if a <= 0xFFFF else AS_TRANS for a in asns)
        for k in range(0, len(asns), 255):  # a segment holds at most 255 ASes
            chunk = asns[k : k + 255]
            out.append(struct.pack(f"!BB{len(chunk)}{fmt}", seg.type, len(chunk), *chunk))
    return b"".join(out)


def encode_attributes(attrs: PathAttributes, ctx: Negotiated, ipv4_next_hop: bool) -> bytes:
    """Every attribute except MP_REACH/MP_UNREACH, in type-code order.

    ``ipv4_next_hop``: include NEXT_HOP (classic IPv4 NLRI follows). Towards a 2-octet
    AS peer, ASes above 65535 become AS_TRANS and AS4_PATH/AS4_AGGREGATOR carry the
    real values (RFC 6793 4.2.2).
    """
    parts: list[tuple[int, bytes]] = []
    add = parts.append
    if attrs.origin is not None:
        add((ORIGIN, encode_attribute(WELL_KNOWN, ORIGIN, bytes((attrs.origin,)))))
    four = ctx.four_octet_as
    add(
        (
            AS_PATH,
            encode_attribute(WELL_KNOWN, AS_PATH, encode_as_path(attrs.as_path, 4 if four else 2)),
        )
    )
    if ipv4_next_hop:
        nh = attrs.next_hop
        if nh is None or nh.version != 4:
            raise ValueError(f"IPv4 NLRI needs an IPv4 next hop, not {nh}")
        add((NEXT_HOP, encode_attribute(WELL_KNOWN, NEXT_HOP, nh.packed)))
    if attrs.med is not None:
        add((MULTI_EXIT_DISC, encode_attribute(OPTIONAL, MULTI_EXIT_DISC, _U32.pack(attrs.med))))
    if attrs.local_pref is not None:
        add((LOCAL_PREF, encode_attribute(WELL_KNOWN, LOCAL_PREF, _U32.pack(attrs.local_pref))))
    if attrs.atomic_aggregate:
        add((ATOMIC_AGGREGATE, encode_attribute(WELL_KNOWN, ATOMIC_AGGREGATE, b"")))
    if attrs.aggregator is not None:
        asn, addr = attrs.aggregator
        if four:
            value = struct.pack("!I", asn) + addr.packed
        else:
            value = struct.pack("!H", asn if asn <= 0xFFFF else AS_TRANS) + addr.packed
        add((AGGREGATOR, encode_attribute(OPTIONAL_TRANSITIVE, AGGREGATOR, value)))
        if not four and asn > 0xFFFF:
            v4 = struct.pack("!I", asn) + addr.packed
            add((AS4_AGGREGATOR, encode_attribute(OPTIONAL_TRANSITIVE, AS4_AGGREGATOR, v4)))
    if attrs.communities:
        value = struct.pack(f"!{len(attrs.communities)}I", *attrs.communities)
        add((COMMUNITIES, encode_attribute(OPTIONAL_TRANSITIVE, COMMUNITIES, value)))
    if attrs.originator_id is not None:
        add((ORIGINATOR_ID, encode_attribute(OPTIONAL, ORIGINATOR_ID, attrs.originator_id.packed)))
    if attrs.cluster_list:
        value = b"".join(a.packed for a in attrs.cluster_list)
        add((CLUSTER_LIST, encode_attribute(OPTIONAL, CLUSTER_LIST, value)))
    if not four and any(a > 0xFFFF for seg in attrs.as_path for a in seg.asns):
        as4 = tuple(s for s in attrs.as_path if s.type in (AS_SEQUENCE, AS_SET))
        add((AS4_PATH, encode_attribute(OPTIONAL_TRANSITIVE, AS4_PATH, encode_as_path(as4, 4))))
    if attrs.large_communities:
        value = b"".join(struct.pack("!III", *lc) for lc in attrs.large_communities)
        add((LARGE_COMMUNITY, encode_attribute(OPTIONAL_TRANSITIVE, LARGE_COMMUNITY, value)))
    for unk in attrs.unknown:
        add((unk.type_code, encode_attribute(unk.flags, unk.type_code, unk.value)))
    parts.sort(key=lambda p: p[0])
    return b"".join(p[1] for p in parts)


def encode_mp_reach(
    afi: int,
    safi: int,
    next_hop: ipaddress.IPv4Address | ipaddress.IPv6Address,
    link_local: ipaddress.IPv6Address | None,
    nlri: bytes,
) -> bytes:
    nh = next_hop.packed + (link_local.packed if link_local is not None else b"")
    value = struct.pack("!HBB", afi, safi, len(nh)) + nh + b"\x00" + nlri
    return encode_attribute(OPTIONAL, MP_REACH_NLRI, value)


def encode_mp_unreach(afi: int, safi: int, withdrawn: bytes) -> bytes:
    return encode_attribute(OPTIONAL, MP_UNREACH_NLRI, struct.pack("!HB", afi, safi) + withdrawn)
