"""Micro benchmark of the BGP codec hot paths (not a test): prefixes/s for decoding and
packing a 100k-prefix IPv4 table in ~800-prefix UPDATEs, the shape GoBGP is compared on.

    python3 bench/bgp/codec_bench.py [--prefixes 100000]
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bgp.wire import (
    AsPathSegment,
    MessageReader,
    Negotiated,
    PathAttributes,
    Prefix,
    decode_message,
    pack_updates,
    pack_withdrawals,
)


def table(n: int, seed: int = 7) -> list[Prefix]:
    rng = random.Random(seed)
    seen: set[Prefix] = set()
    while len(seen) < n:
        plen = rng.choice((16, 19, 20, 22, 23, 24, 24, 24, 24))
        seen.add(Prefix.from_int(4, rng.getrandbits(32), plen))
    return sorted(seen)


def best(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefixes", type=int, default=100_000)
    ap.add_argument("--per-update", type=int, default=800)
    args = ap.parse_args()
    ctx = Negotiated(local_as=65001, peer_as=65002)
    attrs = PathAttributes(
        origin=0,
        as_path=(AsPathSegment(2, (65002, 64512, 64513)),),
        next_hop=ipaddress.IPv4Address("192.0.2.2"),
        med=0,
        communities=(0xFDE80064,),
    )
    prefixes = table(args.prefixes)
    chunks = [prefixes[i : i + args.per_update] for i in range(0, len(prefixes), args.per_update)]
    messages: list[bytes] = []

    def encode() -> None:
        messages.clear()
        for chunk in chunks:
            messages.extend(pack_updates(attrs, chunk, ctx))

    t_enc = best(encode)
    stream = b"".join(messages)
    sizes = sorted(len(m) for m in messages)

    def decode() -> None:
        for m in messages:
            decode_message(m, ctx)

    t_dec = best(decode)

    def read_stream() -> None:
        # Keeps every prefix, as an Adj-RIB-In would (so garbage-collector cost counts).
        reader = MessageReader(ctx)
        kept: list[Prefix] = []
        for i in range(0, len(stream), 65536):
            for msg in reader.feed(stream[i : i + 65536]):
                kept.extend(msg.nlri)  # type: ignore[union-attr]
        assert len(kept) == len(prefixes)

    t_read = best(read_stream)
    t_wd = best(lambda: pack_withdrawals(prefixes, ctx))
    one = messages[len(messages) // 2]
    n_one = len(decode_message(one, ctx).nlri)  # type: ignore[union-attr]

    def decode_one() -> None:
        for _ in range(100):
            decode_message(one, ctx)

    t_one = best(decode_one) / 100
    n = len(prefixes)
    print(f"table: {n} IPv4 prefixes in {len(messages)} UPDATEs ({sizes[0]}..{sizes[-1]} octets)")
    print(f"pack_updates      {t_enc:7.3f} s  {n / t_enc:12,.0f} prefixes/s")
    print(f"decode_message    {t_dec:7.3f} s  {n / t_dec:12,.0f} prefixes/s")
    print(f"MessageReader     {t_read:7.3f} s  {n / t_read:12,.0f} prefixes/s (kept)")
    print(f"pack_withdrawals  {t_wd:7.3f} s  {n / t_wd:12,.0f} prefixes/s")
    print(f"one UPDATE of {n_one} prefixes: decode {t_one * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
