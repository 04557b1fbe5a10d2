"""``make demo``: a three-node Tabby cluster in network namespaces, left running.

``up`` starts an owner process in the background that builds the cluster (etcd in a
namespace of its own, three nodes on one L2 segment each running ``tabby-node`` with
Felix, the CNI service and tabby-bgpd in a BGP full mesh, two pods per node created
through the real CNI plugin),
writes a report and then waits. ``down`` asks the owner to stop; it tears everything
down (namespaces, processes, files) on its way out, whatever state it is in.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 180


def _own(prefix: pathlib.Path, state: pathlib.Path) -> int:
    """The owner: builds the cluster, reports, waits for SIGTERM, tears down."""
    sys.path.insert(0, str(REPO))
    from e2e.connectivity import reachability_matrix
    from e2e.nodes import REFERENCE_PLUGINS, start_tabby_node
    from e2e.pods import create_pod
    from e2e.topology import Cluster

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    bin_dir = prefix / "bin"
    with Cluster.l2(3) as cluster:
        pods = []
        for node in cluster.nodes:
            conflist = start_tabby_node(
                cluster,
                node,
                bin_dir,
                services="felix,cni,bgpd",  # BGP full mesh, configured by Felix
                extra_args=("--bgpd-arg=--connect-retry-time=1",),
            )
            cni_path = [str(node.state_dir / "cni-bin"), REFERENCE_PLUGINS]
            for k in range(2):
                pods.append(create_pod(node, f"{node.name}-p{k}", "default", conflist, cni_path))
        first = cluster.nodes[0]
        ctl = [str(bin_dir / "tabbyctl"), f"--etcd-endpoints={cluster.etcd_endpoint}"]
        lines = []
        for node in cluster.nodes:
            status = [*ctl, "node", "status", f"--bgp-socket={node.state_dir / 'run/bgpd.sock'}"]
            deadline = time.monotonic() + 30
            while True:  # until every mesh session is up (bounded)
                out = node.exec(status, check=False).stdout
                if out.count("Established") >= len(cluster.nodes) - 1:
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            lines += [f"$ tabbyctl node status    # on {node.name}", out.rstrip(), ""]
        rib = [*ctl, "bgp", "rib", f"--bgp-socket={first.state_dir / 'run/bgpd.sock'}"]
        lines += [f"$ tabbyctl bgp rib    # on {first.name}", first.exec(rib).stdout, ""]
        matrix = reachability_matrix(pods, deadline=30)
        for args in (
            ["get", "nodes", "-o", "wide"],
            ["get", "ippools", "-o", "wide"],
            ["get", "workloadendpoints", "-A"],
            ["ipam", "show", "--show-blocks"],
        ):
            lines += [f"$ tabbyctl {' '.join(args)}", first.exec([*ctl, *args]).stdout.rstrip(), ""]
        for node in cluster.nodes:
            routes = node.exec(["ip", "-4", "route", "show"]).stdout.rstrip()
            lines += [f"$ ip -n {node.netns} route    # {node.name} ({node.ip})", routes, ""]
        lines += ["Pod-to-pod reachability (ICMP and TCP, every direction):", matrix.table(), ""]
        lines += ["Try it:"]
        a, b = pods[0], pods[-1]
        lines += [f"  ip netns exec {a.netns} ping -c 3 {b.ip}    # {a.name} -> {b.name}"]
        lines += [f"  ip netns exec {first.netns} {' '.join(ctl)} get weps -A"]
        (state / "report.txt").write_text("\n".join(lines) + "\n")
        (state / "ready.json").write_text(
            json.dumps({"ok": matrix.ok, "etcd": cluster.etcd_endpoint, "prefix": cluster.prefix})
        )
        while True:
            signal.pause()


def up(prefix: pathlib.Path, state: pathlib.Path) -> int:
    state.mkdir(parents=True, exist_ok=True)
    pidfile = state / "owner.pid"
    if pidfile.exists() and _alive(int(pidfile.read_text())):
        print(f"demo already running (owner pid {pidfile.read_text().strip()})")
        print((state / "report.txt").read_text() if (state / "report.txt").exists() else "")
        return 0
    for stale in ("ready.json", "report.txt"):
        (state / stale).unlink(missing_ok=True)
    log = open(state / "owner.log", "w")  # noqa: SIM115 - handed to the owner process
    owner = subprocess.Popen(
        [sys.executable, __file__, "_own", "--prefix", str(prefix), "--state", str(state)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pidfile.write_text(f"{owner.pid}\n")
    print(f"building a 3-node cluster in network namespaces (log: {state / 'owner.log'}) ...")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not (state / "ready.json").exists():
        if owner.poll() is not None or time.monotonic() > deadline:
            print("demo failed to start; last lines of the log:", file=sys.stderr)
            print("\n".join((state / "owner.log").read_text().splitlines()[-30:]), file=sys.stderr)
            down(state)
            return 1
        time.sleep(0.5)
    ready = json.loads((state / "ready.json").read_text())
    print((state / "report.txt").read_text())
    print("Demo cluster running. Tear it down with: make demo-down")
    return 0 if ready["ok"] else 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def down(state: pathlib.Path) -> int:
    pidfile = state / "owner.pid"
    if not pidfile.exists():
        return 0
    pid = int(pidfile.read_text())
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    print("demo cluster stopped")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["up", "down", "_own"])
    parser.add_argument("--prefix", type=pathlib.Path, default="/tmp/tabby-demo/install")
    parser.add_argument("--state", type=pathlib.Path, default="/tmp/tabby-demo")
    args = parser.parse_args()
    if args.action == "up":
        return up(args.prefix.resolve(), args.state.resolve())
    if args.action == "down":
        return down(args.state.resolve())
    return _own(args.prefix.resolve(), args.state.resolve())


if __name__ == "__main__":
    sys.exit(main())
