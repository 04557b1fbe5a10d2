"""Route programming benchmark: our batched programmer against `ip -batch`.

    sudo python3 bench/routes/run.py [--sizes 10000,100000] [--batch-size 512]

Our programmer runs in its default mode (errors-only acks plus a barrier ack per
batch) and with an ack for every route. Each run gets a fresh network namespace
(removed afterwards) with one veth; routes are /32s via an on-link gateway,
protocol 80. For each size and tool: add N routes, then replace all N (new
gateway); routes/s for each step and the ratio to `ip -batch`. A last check injects
unreachable-gateway routes into a batch and verifies each one is reported by name
while the rest apply. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from felix.netlink.codec import Route
from felix.netlink.programmer import ADD, REPLACE, RouteProgrammer, ops
from felix.netlink.testns import ip, temp_netns

PROTO = 80
BASE = int(ipaddress.IPv4Address("172.16.0.0"))


def setup(ns: str) -> None:
    ip("link", "add", "v0", "type", "veth", "peer", "name", "v1", netns=ns)
    ip("addr", "add", "10.0.0.1/24", "dev", "v0", netns=ns)
    ip("link", "set", "v0", "up", netns=ns)
    ip("link", "set", "v1", "up", netns=ns)


def dsts(n: int) -> list[str]:
    return [f"{ipaddress.IPv4Address(BASE + i)}/32" for i in range(n)]


def count_ours(ns: str) -> int:
    out = subprocess.run(
        ["ip", "-n", ns, "route", "show", "proto", str(PROTO)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.count("\n")


def run_ours(n: int, batch_size: int, ack_every: bool) -> tuple[float, float, float]:
    """(add s, replace s, dump s) with our programmer."""
    names = dsts(n)
    with temp_netns("tfb") as ns:
        setup(ns)
        with RouteProgrammer(ns, batch_size=batch_size, ack_every=ack_every) as prog:
            t0 = time.perf_counter()  # building the routes counts: ip parses its text too
            add = [Route(dst=d, gateway="10.0.0.2", protocol=PROTO) for d in names]
            res = prog.apply(ops(ADD, add))
            t_add = time.perf_counter() - t0
            assert res.ok and res.applied == n, res.errors[:3]
            t0 = time.perf_counter()
            rep = [Route(dst=d, gateway="10.0.0.3", protocol=PROTO) for d in names]
            res = prog.apply(ops(REPLACE, rep))
            t_rep = time.perf_counter() - t0
            assert res.ok and res.applied == n, res.errors[:3]
            t0 = time.perf_counter()
            dumped = prog.dump_routes(protocol=PROTO)
            t_dump = time.perf_counter() - t0
            assert len(dumped) == n and all(r.gateway == "10.0.0.3" for r in dumped)
        assert count_ours(ns) == n
    return t_add, t_rep, t_dump


def run_ip_batch(n: int) -> tuple[float, float]:
    """(add s, replace s) with `ip -batch`."""
    names = dsts(n)
    with temp_netns("tfb") as ns, tempfile.TemporaryDirectory() as tmp:
        setup(ns)
        times = []
        for verb, gw in (("add", "10.0.0.2"), ("replace", "10.0.0.3")):
            path = os.path.join(tmp, f"{verb}.batch")
            with open(path, "w") as f:
                f.writelines(f"route {verb} {d} via {gw} proto {PROTO}\n" for d in names)
            t0 = time.perf_counter()
            subprocess.run(["ip", "-n", ns, "-batch", path], check=True)
            times.append(time.perf_counter() - t0)
        assert count_ours(ns) == n
    return times[0], times[1]


def check_errors_detected(n: int, batch_size: int, ack_every: bool) -> str:
    """Bad routes spread through a large batch are each reported; the rest apply."""
    names = dsts(n)
    bad_every = max(1, n // 10)
    with temp_netns("tfb") as ns:
        setup(ns)
        with RouteProgrammer(ns, batch_size=batch_size, ack_every=ack_every) as prog:
            routes = [
                Route(
                    dst=d, gateway="10.99.0.2" if i % bad_every == 0 else "10.0.0.2", protocol=PROTO
                )
                for i, d in enumerate(names)
            ]
            res = prog.apply(ops(ADD, routes))
            bad = {r.dst for i, r in enumerate(routes) if i % bad_every == 0}
            reported = {e.op.route.dst for e in res.errors}
            assert reported == bad, (len(reported), len(bad))
            assert all(e.errno == errno.ENETUNREACH for e in res.errors)
            assert res.applied == n - len(bad) == count_ours(ns)
    mode = "ack-every" if ack_every else "errors-only"
    return f"[{mode}] {len(bad)} bad routes among {n}: all {len(reported)} reported, rest applied"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--batch-size", type=int, default=512)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR)  # the error check logs each bad route
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'routes':>8} {'step':>8} {'ours r/s':>10} {'ours ack-every':>15} "
          f"{'ip -batch':>10} {'ratio':>6} {'ratio ack-every':>16}")  # fmt: skip
    for n in sizes:
        o_add, o_rep, o_dump = run_ours(n, args.batch_size, ack_every=False)
        e_add, e_rep, _ = run_ours(n, args.batch_size, ack_every=True)
        i_add, i_rep = run_ip_batch(n)
        for step, o, e, i in (("add", o_add, e_add, i_add), ("replace", o_rep, e_rep, i_rep)):
            print(f"{n:>8} {step:>8} {n / o:>10,.0f} {n / e:>15,.0f} {n / i:>10,.0f} "
                  f"{i / o:>6.2f} {i / e:>16.2f}")  # fmt: skip
        print(f"{n:>8} {'dump':>8} {n / o_dump:>10,.0f}")
    for ack_every in (False, True):
        print(check_errors_detected(min(20000, max(sizes)), args.batch_size, ack_every))
    return 0


if __name__ == "__main__":
    sys.exit(main())
