"""Benchmark feeder: one BGP session that announces N IPv4 prefixes as fast as TCP allows.

Runs inside the namespace the benchmark made; connects to ``--target``, completes the
OPEN exchange, prints the wall-clock time at which the first UPDATE goes out, sends the
whole pre-encoded table, then keeps the session alive with KEEPALIVEs until killed.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import time

from bgp.wire import Keepalive, MessageReader, Negotiated, Open, encode_message, pack_updates
from bgp.wire.types import AS_SEQUENCE, ORIGIN_IGP, AsPathSegment, PathAttributes, Prefix


def table(count: int, per_update: int, asn: int, next_hop: str) -> list[bytes]:
    """Pre-encoded UPDATEs: /24s from 11.0.0.0 up, ``per_update`` per message."""
    ctx = Negotiated(local_as=asn, four_octet_as=True)
    attrs = PathAttributes(
        origin=ORIGIN_IGP,
        as_path=(AsPathSegment(AS_SEQUENCE, (asn,)),),
        next_hop=ipaddress.IPv4Address(next_hop),
    )
    base = int(ipaddress.IPv4Address("11.0.0.0"))
    prefixes = [Prefix.from_int(4, base + (i << 8), 24) for i in range(count)]
    out: list[bytes] = []
    for i in range(0, count, per_update):
        out.extend(pack_updates(attrs, prefixes[i : i + per_update], ctx))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--asn", type=int, default=65100)
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--per-update", type=int, default=800)
    ap.add_argument("--hold", type=int, default=90)
    args = ap.parse_args()
    updates = table(args.count, args.per_update, args.asn, args.source)
    sock = None
    for _ in range(100):  # the target may still be starting: retry for up to ~10 s
        try:
            sock = socket.create_connection(
                (args.target, 179), timeout=5, source_address=(args.source, 0)
            )
            break
        except OSError:
            time.sleep(0.1)
    if sock is None:
        print("connect failed", file=sys.stderr)
        return 1
    local = Open.for_speaker(args.asn, args.source, hold_time=args.hold)
    sock.sendall(encode_message(local))
    reader = MessageReader(local_open=local)
    got_open = False
    while not got_open:
        data = sock.recv(65536)
        if not data:
            print("closed during OPEN", file=sys.stderr)
            return 1
        got_open = any(isinstance(m, Open) for m in reader.feed(data))
    keepalive = encode_message(Keepalive())
    sock.sendall(keepalive)
    time.sleep(0.2)  # let the target reach Established before the table arrives
    print(f"start {time.time():.6f} updates {len(updates)}", flush=True)
    sock.sendall(b"".join(updates))
    sock.settimeout(1.0)
    deadline = time.monotonic() + 600
    next_ka = time.monotonic()
    while time.monotonic() < deadline:  # bounded: the benchmark kills us long before
        if time.monotonic() >= next_ka:
            sock.sendall(keepalive)
            next_ka = time.monotonic() + max(args.hold // 3, 1)
        try:
            if not sock.recv(65536):
                return 0
        except TimeoutError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
