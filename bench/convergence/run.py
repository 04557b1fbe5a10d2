"""Convergence benchmark: from a pod's CNI ADD on node A to its first ping reply from B.

    sudo python3 bench/convergence/run.py [--pods 50] [--deadline 5]

Builds its own cluster with ``e2e.topology`` (two nodes on one L2 segment, etcd, each
node under ``tabby-node`` with its defaults: Felix + the CNI service, direct routing),
so nothing is shared with other runs and everything is removed at the end. Two cases,
interleaved pod by pod so both see the same background load:

* existing block: the pod's address comes from a /26 block node A already owns (a
  warm-up pod claimed it), so B already routes the block to A; what converges is
  A's ``/32`` to the pod's veth;
* new block: the pod comes from a pool with ``blockSize: 32``, so every ADD claims a
  new block; B's Felix must see the block in etcd and route it to A.

Per pod: ``t0`` just before the ADD chain is exec'ed on A; when the ADD returns (the
address is only known then), ``ping -D -i 0.01`` starts in B's
namespace; the sample is the kernel timestamp of its first reply minus ``t0``. The
start of ping itself (``ip netns exec`` + exec, measured as the baseline against an
already reachable pod) is included. p50/p99 are nearest-rank over the samples.
Traffic: ICMP only, from B to pods this script created, bounded by ``--deadline``.
There is no reference tool to compare with (Calico cannot run on this machine).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from e2e.nodes import cni_path, install_prefix, start_tabby_node, tabbyctl
from e2e.pods import Pod, create_pod, delete_pod, load_conflist
from e2e.topology import Cluster, Node

GOAL_P99_S = 1.0
NEW_BLOCK_POOL = "conv-newblock"
NEW_BLOCK_CIDR = "10.245.0.0/24"
POOL_YAML = f"""
apiVersion: tabby.dev/v1
kind: IPPool
metadata:
  name: {NEW_BLOCK_POOL}
spec:
  cidr: {NEW_BLOCK_CIDR}
  blockSize: 32
"""
PAUSE_S = 0.2  # between samples, so each starts from a quiet cluster


class NoReply(RuntimeError):
    pass


def node_exec(node: Node) -> list[str]:
    return ["ip", "netns", "exec", node.netns]


def ping_first_reply(node: Node, ip: str, deadline: float) -> float:
    """Ping ``ip`` from ``node`` every 10 ms until the first reply, for at most
    ``deadline`` s; return that reply's wall-clock timestamp (ping ``-D``).

    No ``-w``: with a deadline, iputils ping gives up at the first ICMP error, and
    "unreachable" is exactly what B sees while routes converge. The bound is ours
    (the process is killed at the deadline) plus ``-c``."""
    count = str(int(deadline / 0.01) + 1)
    argv = [*node_exec(node), "ping", "-D", "-n", "-i", "0.01", "-c", count, ip]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    timer = threading.Timer(deadline, proc.kill)
    timer.start()
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if "bytes from" in line and line.startswith("["):
                return float(line[1 : line.index("]")])
    finally:
        timer.cancel()
        proc.kill()
        proc.wait(timeout=10)
    raise NoReply(f"no reply from {ip} within {deadline}s")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 50 samples is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summarize(name: str, samples: list[float], adds: list[float]) -> dict[str, float | str]:
    return {
        "case": name,
        "n": len(samples),
        "p50_ms": percentile(samples, 50) * 1000,
        "p90_ms": percentile(samples, 90) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "max_ms": max(samples) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
        "add_p50_ms": percentile(adds, 50) * 1000,
        "after_add_p99_ms": percentile([t - d for t, d in zip(samples, adds, strict=True)], 99)
        * 1000,
    }


def measure(
    a: Node, b: Node, name: str, conf: dict, deadline: float, pods: list[Pod]
) -> tuple[float, float]:
    """One sample: (ADD -> first reply from B, ADD alone), in seconds."""
    t0 = time.time()
    pod = create_pod(a, name, "bench", conf, cni_path(a))
    t_add = time.time()
    pods.append(pod)
    reply = ping_first_reply(b, pod.ip, deadline)
    return reply - t0, t_add - t0


def run(n_pods: int, deadline: float) -> int:
    with install_prefix() as prefix, Cluster.l2(2) as cluster:
        bin_dir = prefix / "bin"
        a, b = cluster.nodes
        conf_path = start_tabby_node(cluster, a, bin_dir)
        start_tabby_node(cluster, b, bin_dir)
        tabbyctl(cluster, bin_dir, "apply", "-f", "-", input=POOL_YAML)
        existing = load_conflist(conf_path)
        newblock = json.loads(json.dumps(existing))
        newblock["plugins"][0].setdefault("ipam", {})["ipv4_pools"] = [NEW_BLOCK_POOL]

        pods: list[Pod] = []
        try:
            # Warm-up: A claims its /26 and B routes it; also the ping start baseline.
            warm = create_pod(a, "warm-up", "bench", existing, cni_path(a))
            pods.append(warm)
            ping_first_reply(b, warm.ip, 10.0)
            baseline = []
            for _ in range(5):
                t0 = time.time()
                baseline.append(ping_first_reply(b, warm.ip, deadline) - t0)
            block = ipaddress.ip_network(f"{warm.ip}/26", strict=False)

            results: dict[str, tuple[list[float], list[float]]] = {
                "existing block": ([], []),
                "new block": ([], []),
            }
            for i in range(n_pods):
                for case, conf in (("existing block", existing), ("new block", newblock)):
                    total, add = measure(a, b, f"{case[:3]}-{i}", conf, deadline, pods)
                    results[case][0].append(total)
                    results[case][1].append(add)
                    ip = ipaddress.ip_address(pods[-1].ip)
                    if case == "existing block" and ip not in block:
                        raise AssertionError(f"{ip} is not in the warm-up block {block}")
                    if case == "new block" and ip not in ipaddress.ip_network(NEW_BLOCK_CIDR):
                        raise AssertionError(f"{ip} is not in {NEW_BLOCK_CIDR}")
                    time.sleep(PAUSE_S)
            shown = json.loads(
                tabbyctl(cluster, bin_dir, "ipam", "show", "--show-blocks", "-o", "json").stdout
            )
            new_blocks = [
                blk
                for blk in shown["blocks"]
                if blk["pool"] == NEW_BLOCK_POOL and blk["affinity"] == f"host:{a.name}"
            ]
            if len(new_blocks) != n_pods:
                raise AssertionError(f"{len(new_blocks)} /32 blocks for {n_pods} new-block pods")
            restarts = [
                line
                for n in (a, b)
                for line in (cluster.log_dir / f"{n.name}-tabby-node.log").read_text().splitlines()
                if "service exited" in line
            ]
        finally:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda p: delete_pod(p, timeout=15), pods))

    print()
    print(f"Convergence: CNI ADD on {a.name} -> first ping reply from {b.name}, {n_pods} pods")
    base50, base_max = percentile(baseline, 50) * 1000, max(baseline) * 1000
    print(
        f"  ping start baseline (already reachable pod): p50 {base50:.1f} ms, max {base_max:.1f} ms"
    )
    cols = ("p50", "p90", "p99", "max", "ADD p50")
    print(f"  {'case':<15} {'n':>3} " + " ".join(f"{c:>8}" for c in cols) + "  after ADD p99")
    rows = [summarize(case, *res) for case, res in results.items()]
    for r in rows:
        print(
            f"  {r['case']:<15} {r['n']:>3} {r['p50_ms']:>6.1f}ms {r['p90_ms']:>6.1f}ms "
            f"{r['p99_ms']:>6.1f}ms {r['max_ms']:>6.1f}ms {r['add_p50_ms']:>6.1f}ms "
            f"{r['after_add_p99_ms']:>11.1f}ms"
        )
    if restarts:
        print("  WARNING: services restarted during the run:", *restarts, sep="\n    ")
    met = all(float(r["p99_ms"]) < GOAL_P99_S * 1000 for r in rows)
    print(f"  goal p99 < {GOAL_P99_S * 1000:.0f} ms: {'met' if met else 'NOT met'}")
    print("  (no reference tool: Calico cannot run on this machine)")
    return 0 if met else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=50, help="samples per case (default 50)")
    ap.add_argument("--deadline", type=float, default=5.0, help="seconds to wait per ping")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: it creates network namespaces", file=sys.stderr)
        return 2
    if not 1 <= args.pods <= 63:
        print("--pods must be 1..63 (one /26 holds the existing-block pods)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    return run(args.pods, args.deadline)


if __name__ == "__main__":
    sys.exit(main())
