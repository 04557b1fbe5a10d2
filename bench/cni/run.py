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
import pathlib
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from cni import install, netns, testutil
from datastore.etcd import EtcdStore
from datastore.etcd_fixture import EtcdServer
from ipam.testing import put_pool

REF_DIR = "/usr/lib/cni"


@contextlib.contextmanager
def etcd_in_namespace(ns: str) -> Iterator[EtcdServer]:
    """etcd forked from a thread inside ``ns`` that lives as long as the server.

    The fixture ties etcd's life to its parent thread (PR_SET_PDEATHSIG), so the
    thread that starts it must stay until the end.
    """
    etcd = EtcdServer()
    ready, stop = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def keeper() -> None:
        try:
            fd = os.open(testutil.ns_path(ns), os.O_RDONLY | os.O_CLOEXEC)
            try:
                netns.setns(fd)
            finally:
                os.close(fd)
            with etcd:
                ready.set()
                stop.wait()
        except BaseException as exc:
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=keeper, name="etcd-keeper")
    thread.start()
    ready.wait(120)
    try:
        if failure:
            raise failure[0]
        yield etcd
    finally:
        stop.set()
        thread.join(60)


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


def measure(
    runners: dict[str, Runner], pods: dict[str, list[str]], parallel: int
) -> dict[str, dict[str, list[float]]]:
    """ADD then DEL every pod, ``parallel`` at a time.

    The plugins take turns batch by batch, so both see the same background load (the
    machine is shared); within a batch ``parallel`` calls of one plugin overlap.
    """
    out = {name: {"ADD": [], "DEL": []} for name in runners}
    ids = {name: [secrets.token_hex(16) for _ in pods[name]] for name in runners}
    n = min(len(p) for p in pods.values())
    with ThreadPoolExecutor(parallel) as pool:
        for command in ("ADD", "DEL"):
            for start in range(0, n, parallel):
                batch = range(start, min(n, start + parallel))
                for name, runner in runners.items():

                    def one(
                        i: int, runner: Runner = runner, name: str = name, command: str = command
                    ) -> float:
                        return runner.call(command, ids[name][i], pods[name][i])

                    out[name][command] += list(pool.map(one, batch))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    rows: list[tuple[str, str, list[float]]] = []
    with contextlib.ExitStack() as stack:
        work = stack.enter_context(tempfile.TemporaryDirectory(prefix="tabby-bench-"))
        node_ns = stack.enter_context(testutil.node_namespace())
        # etcd runs inside the node namespace (forked from a thread that entered it), as
        # it would be reachable on a real node: no test relay in the measured path.
        etcd = stack.enter_context(etcd_in_namespace(node_ns))

        def seed() -> None:
            kv = EtcdStore([etcd.endpoint])
            put_pool(kv, "bench", "10.74.0.0/16", 26)
            kv.close()

        netns.run_in(testutil.ns_path(node_ns), seed)
        bin_dir = os.path.join(work, "bin")
        install.install_binaries(pathlib.Path(bin_dir))
        node = testutil.Node(etcd.client_port, bin_dir, work, ns=node_ns)
        stack.callback(node.close)
        node.start_service()
        pods = {
            name: [stack.enter_context(testutil.namespace()) for _ in range(args.pods)]
            for name in ("tabby", "bridge+host-local")
        }
        runners = {
            "tabby": Runner(
                node.ns,
                os.path.join(bin_dir, "tabby"),
                {**node.conf(cniVersion="1.0.0", log_level="info"), "mtu": 1500},
                bin_dir,
            ),
            "bridge+host-local": Runner(
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
            ),
        }
        # Warm caches (page cache, service threads, first etcd block claim).
        measure(runners, {k: v[:2] for k, v in pods.items()}, 1)
        for mode, par in (("serial", 1), (f"{args.parallel} parallel", args.parallel)):
            got = measure(runners, pods, par)
            for plugin, phases in got.items():
                for command, values in phases.items():
                    rows.append((plugin, f"{command} {mode}", values))
    rows.sort(key=lambda r: (r[0] != "tabby", r[1][:3] == "DEL", "parallel" in r[1]))
    # The machine is shared: the load says how much to trust a run's absolute numbers.
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
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
