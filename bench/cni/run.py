"""CNI ADD/DEL latency: Tabby (shim + warm service) against Debian's bridge + host-local.

    sudo python3 bench/cni/run.py [--pods 50] [--parallel 8]

Both plugins run in the same node namespace in the same run, exec'ed the way a
runtime does (env + stdin, a fresh process per call). The driver forks each plugin
from a thread that has entered the node namespace, so no ``ip netns exec`` overhead
is counted for either. Prints p50/p95 per phase and the Tabby/reference ratios.
Traffic: none; everything stays in namespaces this script creates.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from cni import install, netns, testutil
from datastore.etcd import EtcdStore
from datastore.etcd_fixture import EtcdServer
from ipam.testing import put_pool

REF_DIR = "/usr/lib/cni"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Runner:
    def __init__(self, node_ns: str, exe: str, conf: dict, cni_path: str) -> None:
        self.node_ns = node_ns
        self.exe = exe
        self.stdin = json.dumps(conf).encode()
        self.cni_path = cni_path

    def call(self, command: str, container_id: str, pod_ns: str) -> float:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": testutil.ns_path(pod_ns),
            "CNI_IFNAME": "eth0",
            "CNI_PATH": self.cni_path,
        }

        def run() -> tuple[float, subprocess.CompletedProcess[bytes]]:
            t0 = time.perf_counter()
            done = subprocess.run([self.exe], input=self.stdin, env=env, capture_output=True)
            return time.perf_counter() - t0, done

        elapsed, done = netns.run_in(testutil.ns_path(self.node_ns), run)
        if done.returncode != 0:
            raise RuntimeError(f"{self.exe} {command} failed: {done.stdout!r} {done.stderr!r}")
        return elapsed * 1000


def measure(runner: Runner, pods: list[str], parallel: int) -> tuple[list[float], list[float]]:
    ids = [secrets.token_hex(16) for _ in pods]
    with ThreadPoolExecutor(parallel) as pool:
        adds = list(pool.map(lambda i: runner.call("ADD", ids[i], pods[i]), range(len(pods))))
        dels = list(pool.map(lambda i: runner.call("DEL", ids[i], pods[i]), range(len(pods))))
    return adds, dels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    rows: list[tuple[str, str, list[float]]] = []
    with contextlib.ExitStack() as stack:
        work = stack.enter_context(tempfile.TemporaryDirectory(prefix="tabby-bench-"))
        etcd = stack.enter_context(EtcdServer())
        kv = EtcdStore([etcd.endpoint])
        put_pool(kv, "bench", "10.74.0.0/16", 26)
        bin_dir = os.path.join(work, "bin")
        install.install_binaries(__import__("pathlib").Path(bin_dir))
        node = testutil.Node(etcd.client_port, bin_dir, work)
        stack.callback(node.close)
        node.start_service()
        pods = [stack.enter_context(testutil.namespace()) for _ in range(args.pods)]
        tabby = Runner(
            node.ns,
            os.path.join(bin_dir, "tabby"),
            {**node.conf(cniVersion="1.0.0", log_level="info"), "mtu": 1500},
            bin_dir,
        )
        ref = Runner(
            node.ns,
            os.path.join(REF_DIR, "bridge"),
            {
                "cniVersion": "1.0.0",
                "name": "bench-ref",
                "type": "bridge",
                "bridge": f"tcb{secrets.token_hex(3)}",
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "subnet": "10.73.0.0/16",
                    "dataDir": os.path.join(work, "host-local"),
                },
            },
            REF_DIR,
        )
        for plugin, runner in (("tabby", tabby), ("bridge+host-local", ref)):
            measure(runner, pods[:3], 1)  # warm caches (page cache, service threads)
            for mode, par in (("serial", 1), (f"{args.parallel} parallel", args.parallel)):
                adds, dels = measure(runner, pods, par)
                rows.append((plugin, f"ADD {mode}", adds))
                rows.append((plugin, f"DEL {mode}", dels))
    print(f"{'plugin':<18} {'phase':<16} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
    for plugin, phase, values in rows:
        print(
            f"{plugin:<18} {phase:<16} {pct(values, 0.5):8.1f} {pct(values, 0.95):8.1f}"
            f" {statistics.fmean(values):8.1f}"
        )
    print()
    ref_rows = {phase: v for plugin, phase, v in rows if plugin != "tabby"}
    for plugin, phase, values in rows:
        if plugin == "tabby":
            r50 = pct(values, 0.5) / pct(ref_rows[phase], 0.5)
            r95 = pct(values, 0.95) / pct(ref_rows[phase], 0.95)
            print(f"ratio tabby/reference {phase:<16} p50 {r50:4.2f}x  p95 {r95:4.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
