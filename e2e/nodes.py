"""Starting Tabby on a namespace node the way the DaemonSet does: ``tabby-node`` with
its services under a private run dir, then ``tabby-install-cni``. Shared by the mode
tests and ``make demo``."""

from __future__ import annotations

import contextlib
import pathlib
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator

from e2e.topology import Cluster, Daemon, Node, TopologyError, netns_pids, pid_alive

POD_CIDR = "10.244.0.0/16"
REFERENCE_PLUGINS = "/usr/lib/cni"  # portmap, chained after tabby by tabby-install-cni

VXLAN_DEVICE = "vxlan.tabby"  # felix.dataplane.DataplaneConfig.vxlan_device
VXLAN_POD_MTU = 1450  # 1500 underlay minus 50 bytes of VXLAN overhead


def start_tabby_node(
    cluster: Cluster,
    node: Node,
    bin_dir: pathlib.Path,
    *,
    vxlan_mode: str = "Never",
    mtu: int = 1500,
    services: str = "felix,cni",
    extra_args: tuple[str, ...] = (),
) -> str:
    """Start ``tabby-node`` in ``node`` (by default Felix and the CNI service; add
    ``bgpd`` for BGP in cluster mode) under its own run dir, wait until it registered,
    has its tunnel address settled and serves CNI, and install the CNI conf. Returns the
    path of the node's conflist."""
    state = node.state_dir
    run_dir = state / "run"
    endpoint = cluster.etcd_endpoint
    daemon = node.spawn(
        [
            str(bin_dir / "tabby-node"),
            f"--nodename={node.name}",
            f"--etcd-endpoints={endpoint}",
            f"--ip={node.address}",
            f"--default-ipv4-pool={POD_CIDR}",
            f"--default-ipv4-pool-vxlan={vxlan_mode}",
            f"--run-dir={run_dir}",
            f"--services={services}",
            *extra_args,
        ],
        name=f"{node.name}-tabby-node",
    )
    daemon.wait_for_log(rf"vxlan tunnel node={node.name} ", timeout=30)
    daemon.wait_for_log(r"ready socket=", timeout=30)
    node.exec(
        [
            str(bin_dir / "tabby-install-cni"),
            f"--bin-dir={state / 'cni-bin'}",
            f"--conf-dir={state / 'net.d'}",
            f"--etcd-endpoints={endpoint}",
            f"--nodename={node.name}",
            f"--service-socket={run_dir / 'cni.sock'}",
            f"--mtu={mtu}",
        ]
    )
    return str(state / "net.d" / "10-tabby.conflist")


# --- helpers for churn, failure and benchmark runs (additive) ---------------------------


@contextlib.contextmanager
def install_prefix() -> Iterator[pathlib.Path]:
    """A fresh ``make install`` prefix (bin/ and lib/tabby), removed afterwards."""
    from scripts import install as installer

    path = pathlib.Path(tempfile.mkdtemp(prefix="tabby-e2e-install-"))
    try:
        installer.install(path)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def cni_path(node: Node) -> list[str]:
    """CNI_PATH for a node started by :func:`start_tabby_node`."""
    return [str(node.state_dir / "cni-bin"), REFERENCE_PLUGINS]


def service_pid(node: Node, executable: str) -> int | None:
    """PID of the process in ``node``'s namespace running ``executable`` (e.g.
    ``tabby-felix``), or None. Pods live in namespaces of their own, so a node's
    services are the only such processes there."""
    for pid in netns_pids(node.netns):
        try:
            argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(pathlib.Path(a.decode(errors="replace")).name == executable for a in argv[:2]):
            return pid
    return None


def wait_service_pid(
    node: Node, executable: str, *, not_pid: int | None = None, timeout: float = 30.0
) -> int:
    """Wait for ``executable`` to run in ``node`` under a PID other than ``not_pid``
    (a supervisor restart); raise naming the service if it does not."""
    deadline = time.monotonic() + timeout
    while True:
        pid = service_pid(node, executable)
        if pid is not None and pid != not_pid and pid_alive(pid):
            return pid
        if time.monotonic() > deadline:
            raise TopologyError(
                f"{node.name}: {executable} not (re)started within {timeout}s (old pid {not_pid})"
            )
        time.sleep(0.05)


def wait_for_log_count(daemon: Daemon, pattern: str, count: int, timeout: float = 30.0) -> None:
    """Wait until ``pattern`` occurs ``count`` times in the daemon's log (a restarted
    service logs its start-up lines again into its supervisor's log)."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while len(regex.findall(daemon.log_text())) < count:
        if not daemon.alive():
            raise TopologyError(f"{daemon.name} exited before logging {pattern!r} x{count}")
        if time.monotonic() > deadline:
            raise TopologyError(
                f"{daemon.name}: {pattern!r} not logged {count} times in {timeout}s"
            )
        time.sleep(0.05)


def tabby_node_daemon(node: Node) -> Daemon:
    """The ``tabby-node`` daemon :func:`start_tabby_node` started in ``node``."""
    name = f"{node.name}-tabby-node"
    for daemon in reversed(node.cluster.daemons):
        if daemon.name == name:
            return daemon
    raise KeyError(f"no tabby-node daemon for {node.name}")


def tabbyctl(
    cluster: Cluster,
    bin_dir: pathlib.Path,
    *args: str,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``tabbyctl`` against the cluster's etcd (from the etcd namespace, where the
    operator's machine would reach it)."""
    assert cluster.etcd is not None
    return cluster.etcd.exec(
        [str(bin_dir / "tabbyctl"), f"--etcd-endpoints={cluster.etcd_endpoint}", *args],
        check=check,
        input=input,
    )
