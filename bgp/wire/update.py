"""UPDATE (RFC 4271 4.3, RFC 4760): decode with RFC 7606 outcomes, encode, and pack.

IPv4 unicast rides in the classic withdrawn/NLRI fields; every other family in
MP_REACH_NLRI/MP_UNREACH_NLRI. Both are folded into ``Update.withdrawn`` and
``Update.nlri`` (a ``Prefix`` knows its AFI). ``pack_updates`` is the Adj-RIB-Out's
hot path: one attribute set, as few messages as possible.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import ClassVar

from bgp.wire.attributes import (
    EXTENDED_LENGTH,
    MP_REACH_NLRI,
    MP_UNREACH_NLRI,
    OPTIONAL,
    decode_attributes,
    encode_attributes,
    encode_mp_reach,
    encode_mp_unreach,
)
from bgp.wire.errors import (
    MALFORMED_ATTRIBUTE_LIST,
    UPDATE_MESSAGE_ERROR,
    BgpError,
)
from bgp.wire.header import HEADER_LEN, MARKER, UPDATE, frame, register
from bgp.wire.negotiated import IPV4_UNICAST, Family, Negotiated
from bgp.wire.nlri import decode_prefixes, encode_prefix
from bgp.wire.types import AFI_IPV4, AFI_IPV6, SAFI_UNICAST, PathAttributes, Prefix

_EMPTY_UPDATE_BODY = b"\x00\x00\x00\x00"


@register(UPDATE)
@dataclass
class Update:
    """One UPDATE, decoded. When ``treat_as_withdraw`` is set (RFC 7606), every prefix
    in ``nlri`` must be handled as withdrawn; ``errors`` says why.
    """

    withdrawn: list[Prefix] = field(default_factory=list)
    attributes: PathAttributes | None = None
    nlri: list[Prefix] = field(default_factory=list)
    treat_as_withdraw: bool = False
    discarded_attributes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Families of the MP attributes present (needed for End-of-RIB; MP_REACH next hop
    # when the message also carried IPv4 NLRI with its own NEXT_HOP).
    mp_reach_family: Family | None = None
    mp_unreach_family: Family | None = None
    mp_next_hop: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    mp_next_hop_link_local: ipaddress.IPv6Address | None = None
    type_code: ClassVar[int] = UPDATE

    def is_end_of_rib(self) -> Family | None:
        """RFC 4724 2: empty UPDATE (IPv4 unicast) or one holding only an empty MP_UNREACH."""
        if self.withdrawn or self.nlri or self.attributes is not None:
            return None
        if self.mp_reach_family is not None:
            return None
        return self.mp_unreach_family or IPV4_UNICAST

    def withdrawals(self) -> list[Prefix]:
        """Prefixes to remove: the withdrawn ones, plus the NLRI under treat-as-withdraw."""
        return self.withdrawn + self.nlri if self.treat_as_withdraw else self.withdrawn

    def announcements(self) -> list[Prefix]:
        return [] if self.treat_as_withdraw else self.nlri

    def attributes_for(self, afi: int) -> PathAttributes | None:
        """The attributes with the next hop that belongs to ``afi``'s NLRI."""
        attrs = self.attributes
        fam = self.mp_reach_family
        if attrs is None or fam is None or fam[0] != afi or attrs.next_hop == self.mp_next_hop:
            return attrs
        return dataclasses.replace(
            attrs, next_hop=self.mp_next_hop, next_hop_link_local=self.mp_next_hop_link_local
        )

    @classmethod
    def decode_body(cls, body: bytes, ctx: Negotiated) -> Update:
        n = len(body)
        wlen = (body[0] << 8) | body[1]
        if 4 + wlen > n:
            raise BgpError(
                UPDATE_MESSAGE_ERROR,
                MALFORMED_ATTRIBUTE_LIST,
                b"",
                f"withdrawn routes length {wlen} overruns the message",
            )
        alen = (body[2 + wlen] << 8) | body[3 + wlen]
        astart = 4 + wlen
        nstart = astart + alen
        if nstart > n:
            raise BgpError(
                UPDATE_MESSAGE_ERROR,
                MALFORMED_ATTRIBUTE_LIST,
                b"",
                f"total path attribute length {alen} overruns the message",
            )
        add_path = IPV4_UNICAST in ctx.add_path_receive
        withdrawn = (
            decode_prefixes(body, 2, 2 + wlen, 4, add_path, where="withdrawn routes")
            if wlen
            else []
        )
        nlri = decode_prefixes(body, nstart, n, 4, add_path) if nstart < n else []
        if not alen:
            if nlri:
                msg = cls(withdrawn, None, nlri, treat_as_withdraw=True)
                msg.errors.append("NLRI without path attributes (treat-as-withdraw, RFC 7606)")
                return msg
            return cls(withdrawn)
        res = decode_attributes(body[astart:nstart], ctx, bool(nlri))
        msg = cls(
            withdrawn,
            res.attributes,
            nlri,
            res.treat_as_withdraw,
            res.discarded,
            res.errors,
        )
        if res.mp_unreach is not None:
            msg.mp_unreach_family = (res.mp_unreach.afi, res.mp_unreach.safi)
            withdrawn.extend(res.mp_unreach.prefixes)
        if res.mp_reach is not None:
            mp = res.mp_reach
            msg.mp_reach_family = (mp.afi, mp.safi)
            msg.mp_next_hop = mp.next_hop
            msg.mp_next_hop_link_local = mp.link_local
            nlri.extend(mp.prefixes)
        return msg

    def encode_body(self, ctx: Negotiated) -> bytes:
        """One message's body; raises ValueError if it needs splitting (see pack_updates)."""
        v4_withdrawn = [p for p in self.withdrawn if p.afi == AFI_IPV4]
        v6_withdrawn = [p for p in self.withdrawn if p.afi != AFI_IPV4]
        v4_nlri = [p for p in self.nlri if p.afi == AFI_IPV4]
        v6_nlri = [p for p in self.nlri if p.afi != AFI_IPV4]
        ap4 = IPV4_UNICAST in ctx.add_path_send
        ap6 = (AFI_IPV6, SAFI_UNICAST) in ctx.add_path_send
        withdrawn = b"".join(encode_prefix(p, ap4) for p in v4_withdrawn)
        attrs = b""
        if self.attributes is not None:
            attrs = encode_attributes(self.attributes, ctx, bool(v4_nlri))
        elif v4_nlri or v6_nlri:
            raise ValueError("UPDATE with NLRI needs attributes")
        if v6_nlri:
            assert self.attributes is not None
            nh = self.mp_next_hop or self.attributes.next_hop
            ll = self.mp_next_hop_link_local or self.attributes.next_hop_link_local
            if nh is None or nh.version != 6:
                raise ValueError(f"IPv6 NLRI needs an IPv6 next hop, not {nh}")
            nlri6 = b"".join(encode_prefix(p, ap6) for p in v6_nlri)
            attrs += encode_mp_reach(AFI_IPV6, SAFI_UNICAST, nh, ll, nlri6)
        if v6_withdrawn:
            w6 = b"".join(encode_prefix(p, ap6) for p in v6_withdrawn)
            attrs += encode_mp_unreach(AFI_IPV6, SAFI_UNICAST, w6)
        elif self.mp_unreach_family is not None and not self.withdrawn:
            attrs += encode_mp_unreach(*self.mp_unreach_family, b"")
        nlri = b"".join(encode_prefix(p, ap4) for p in v4_nlri)
        return (
            len(withdrawn).to_bytes(2, "big")
            + withdrawn
            + len(attrs).to_bytes(2, "big")
            + attrs
            + nlri
        )


def end_of_rib(afi: int = AFI_IPV4, safi: int = SAFI_UNICAST) -> bytes:
    """The End-of-RIB marker for one family (RFC 4724 2), as a complete message."""
    if (afi, safi) == IPV4_UNICAST:
        return frame(UPDATE, _EMPTY_UPDATE_BODY)
    unreach = encode_mp_unreach(afi, safi, b"")
    return frame(UPDATE, b"\x00\x00" + len(unreach).to_bytes(2, "big") + unreach)


def _message(body_parts: list[bytes], length: int) -> bytes:
    total = HEADER_LEN + length
    return b"".join([MARKER, bytes((total >> 8, total & 0xFF, UPDATE)), *body_parts])


def _chunks(encoded: list[bytes], room: int) -> list[list[bytes]]:
    """Greedy split of encoded prefixes into runs of at most ``room`` octets."""
    runs: list[list[bytes]] = []
    run: list[bytes] = []
    used = 0
    for e in encoded:
        n = len(e)
        if used + n > room and run:
            runs.append(run)
            run = []
            used = 0
        run.append(e)
        used += n
    if run:
        runs.append(run)
    return runs


def pack_updates(
    attributes: PathAttributes,
    prefixes: list[Prefix],
    ctx: Negotiated,
    max_size: int | None = None,
) -> list[bytes]:
    """Advertise ``prefixes`` with one attribute set in as few UPDATEs as fit.

    IPv4 prefixes go in the NLRI field (``attributes.next_hop`` must be IPv4), IPv6
    prefixes in MP_REACH_NLRI (next hop IPv6, optional link-local). Path ids are sent
    for families with ADD-PATH send negotiated.
    """
    limit = max_size or ctx.max_message_size
    v4 = [p for p in prefixes if p.afi == AFI_IPV4]
    v6 = [p for p in prefixes if p.afi != AFI_IPV4]
    out: list[bytes] = []
    if v4:
        ap = IPV4_UNICAST in ctx.add_path_send
        common = encode_attributes(attributes, ctx, True)
        head = b"\x00\x00" + len(common).to_bytes(2, "big") + common
        room = limit - HEADER_LEN - len(head)
        encoded = [encode_prefix(p, ap) for p in v4]
        for run in _chunks(encoded, room):
            nlri = b"".join(run)
            out.append(_message([head, nlri], len(head) + len(nlri)))
    if v6:
        ap = (AFI_IPV6, SAFI_UNICAST) in ctx.add_path_send
        nh = attributes.next_hop
        if nh is None or nh.version != 6:
            raise ValueError(f"IPv6 NLRI needs an IPv6 next hop, not {nh}")
        ll = attributes.next_hop_link_local
        common = encode_attributes(attributes, ctx, False)
        nh_bytes = nh.packed + (ll.packed if ll is not None else b"")
        mp_head = bytes((0, AFI_IPV6, SAFI_UNICAST, len(nh_bytes))) + nh_bytes + b"\x00"
        # MP_REACH always with extended length here: the size is known up front.
        room = limit - HEADER_LEN - 4 - len(common) - 4 - len(mp_head)
        encoded = [encode_prefix(p, ap) for p in v6]
        for run in _chunks(encoded, room):
            nlri = b"".join(run)
            vlen = len(mp_head) + len(nlri)
            mp = bytes((OPTIONAL | EXTENDED_LENGTH, MP_REACH_NLRI, vlen >> 8, vlen & 0xFF))
            alen = len(common) + 4 + vlen
            parts = [b"\x00\x00", alen.to_bytes(2, "big"), common, mp, mp_head, nlri]
            out.append(_message(parts, 4 + alen))
    return out


def pack_withdrawals(
    prefixes: list[Prefix], ctx: Negotiated, max_size: int | None = None
) -> list[bytes]:
    """Withdraw ``prefixes`` in as few UPDATEs as fit (IPv6 in MP_UNREACH_NLRI)."""
    limit = max_size or ctx.max_message_size
    v4 = [p for p in prefixes if p.afi == AFI_IPV4]
    v6 = [p for p in prefixes if p.afi != AFI_IPV4]
    out: list[bytes] = []
    if v4:
        ap = IPV4_UNICAST in ctx.add_path_send
        room = limit - HEADER_LEN - 4
        for run in _chunks([encode_prefix(p, ap) for p in v4], room):
            w = b"".join(run)
            out.append(_message([len(w).to_bytes(2, "big"), w, b"\x00\x00"], 4 + len(w)))
    if v6:
        ap = (AFI_IPV6, SAFI_UNICAST) in ctx.add_path_send
        room = limit - HEADER_LEN - 4 - 4 - 3
        for run in _chunks([encode_prefix(p, ap) for p in v6], room):
            w = b"".join(run)
            vlen = 3 + len(w)
            attr = bytes(
                (
                    OPTIONAL | EXTENDED_LENGTH,
                    MP_UNREACH_NLRI,
                    vlen >> 8,
                    vlen & 0xFF,
                    0,
                    AFI_IPV6,
                    SAFI_UNICAST,
                )
            )
            alen = 4 + vlen
            out.append(_message([b"\x00\x00", alen.to_bytes(2, "big"), attr, w], 4 + alen))
    return out
