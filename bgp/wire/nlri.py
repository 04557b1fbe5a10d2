"""NLRI prefix encoding (RFC 4271 4.3, RFC 4760 5, RFC 7911 3): the hot path.

A full table is hundreds of thousands of these, so the loops build ``Prefix`` objects
straight from integers (no ``ipaddress``) and use lookup tables for shifts and masks.
"""

from __future__ import annotations

import struct

from bgp.wire.errors import INVALID_NETWORK_FIELD, UPDATE_MESSAGE_ERROR, BgpError
from bgp.wire.types import KEY_ADDR_SHIFT, KEY_PLEN_SHIFT, KEY_V6, Prefix

# Per version: shift placing an n-octet address at the key's address bits, the key
# mask that clears host bits for a prefix length, and the length's key bits.
_SHIFT = {
    v: tuple(bits - 8 * n + KEY_ADDR_SHIFT for n in range(bits // 8 + 1))
    for v, bits in ((4, 32), (6, 128))
}
_KEYMASK = {
    v: tuple(
        (((1 << bits) - 1) ^ ((1 << (bits - n)) - 1)) << KEY_ADDR_SHIFT for n in range(bits + 1)
    )
    for v, bits in ((4, 32), (6, 128))
}
_PLEN = tuple((n << KEY_PLEN_SHIFT) for n in range(129))
_VBIT = {4: 0, 6: KEY_V6}
_BITS = {4: 32, 6: 128}
_ADDR_MASK = (1 << 128) - 1
_new = object.__new__
_from_bytes = int.from_bytes
_pack_bi = struct.Struct("!BI").pack
_pack_ibi = struct.Struct("!IBI").pack


def decode_prefixes(
    data: bytes,
    start: int,
    end: int,
    version: int,
    add_path: bool = False,
    code: int = UPDATE_MESSAGE_ERROR,
    subcode: int = INVALID_NETWORK_FIELD,
    where: str = "NLRI",
) -> list[Prefix]:
    """Decode ``data[start:end]`` as a run of prefixes; a syntax error raises ``code/subcode``.

    The caller picks the error: 3/10 for the UPDATE's own fields, 3/9 inside
    MP_REACH/MP_UNREACH (RFC 4760 7).
    """
    shifts = _SHIFT[version]
    masks = _KEYMASK[version]
    plens = _PLEN
    vbit = _VBIT[version]
    bits = _BITS[version]
    out: list[Prefix] = []
    append = out.append
    i = start
    path_id = 0
    while i < end:
        if add_path:
            if i + 5 > end:
                raise BgpError(code, subcode, b"", f"{where}: truncated ADD-PATH prefix at {i}")
            path_id = _from_bytes(data[i : i + 4], "big")
            i += 4
        plen = data[i]
        if plen > bits:
            raise BgpError(code, subcode, b"", f"{where}: prefix length {plen} > {bits}")
        n = (plen + 7) >> 3
        j = i + 1 + n
        if j > end:
            raise BgpError(code, subcode, b"", f"{where}: prefix /{plen} truncated at {i}")
        p = _new(Prefix)
        p._key = (
            ((_from_bytes(data[i + 1 : j], "big") << shifts[n]) & masks[plen])
            | plens[plen]
            | vbit
            | path_id
        )
        p._net = None
        append(p)
        i = j
    return out


def encode_prefix(prefix: Prefix, add_path: bool = False) -> bytes:
    """Wire form of one prefix (with its 4-octet path id when ADD-PATH is on)."""
    key = prefix._key
    address = (key >> KEY_ADDR_SHIFT) & _ADDR_MASK
    plen = (key >> KEY_PLEN_SHIFT) & 0xFF
    path_id = key & 0xFFFFFFFF
    n = (plen + 7) >> 3
    if not key & KEY_V6:
        if add_path:
            return _pack_ibi(path_id, plen, address)[: 5 + n]
        return _pack_bi(plen, address)[: 1 + n]
    body = bytes((plen,)) + (address >> (128 - 8 * n)).to_bytes(n, "big")
    return path_id.to_bytes(4, "big") + body if add_path else body


def encode_prefixes(prefixes: list[Prefix], add_path: bool = False) -> bytes:
    return b"".join([encode_prefix(p, add_path) for p in prefixes])
