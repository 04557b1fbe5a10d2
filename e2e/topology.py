"""Clusters of network namespaces for end-to-end tests: nodes, a switch, a router, etcd.

Every node is a network namespace with one uplink (``eth0``) into a bridge that lives in
a "switch" namespace of its own, so nothing is ever added to the host's namespace and
several clusters (other helpers' test runs) can coexist on one machine. Teardown is
guaranteed: it runs on normal exit, on any exception (KeyboardInterrupt included), and
when the build itself fails halfway; it tolerates whatever was or was not built.

    with Cluster.l2(3) as cluster:
        cluster.nodes[0].exec(["ping", "-c", "1", cluster.nodes[1].ip])
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import os
import pathlib
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence

log = logging.getLogger("tabby.e2e.topology")

# Namespace names: NETNS_PREFIX + 6 hex (the cluster id) + "-" + role, at most 15 chars.
NETNS_PREFIX = "te"
NETNS_RE = re.compile(rf"^{NETNS_PREFIX}[0-9a-f]{{6}}-")
TMP_PREFIX = "tabby-e2e-"
ETCD_BINARY = "/usr/bin/etcd"
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
ETCD_START_TIMEOUT = 20.0
# First host number given to nodes inside each subnet; .1 is the router, .2 etcd.
ROUTER_HOST = 1
ETCD_HOST = 2
FIRST_NODE_HOST = 10
UNSET_ADDRESS = ipaddress.IPv4Interface("0.0.0.0/32")


class TopologyError(RuntimeError):
    """A cluster could not be built or torn down; the message names the step."""


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30.0,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (bounded); on failure raise with its stderr."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TopologyError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    if check and proc.returncode != 0:
        raise TopologyError(
            f"command failed rc={proc.returncode}: {' '.join(argv)}: "
            f"{(proc.stderr or proc.stdout).strip()}"
        )
    return proc


def list_netns() -> list[str]:
    """Names of every network namespace on the machine (``ip netns list``)."""
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(netns: str) -> list[int]:
    """Processes whose network namespace is ``netns``."""
    proc = run(["ip", "netns", "pids", netns], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


@dataclasses.dataclass
class Daemon:
    """A long-running process started in a namespace; killed at teardown."""

    name: str
    netns: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: pathlib.Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until the log matches ``pattern``; fail early if the daemon exits."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log_text())
            if match:
                return match
            if not self.alive():
                raise TopologyError(
                    f"{self.name} exited rc={self.popen.returncode} before logging "
                    f"{pattern!r}; log tail:\n{tail(self.log_text())}"
                )
            if time.monotonic() > deadline:
                raise TopologyError(f"{self.name}: no {pattern!r} in its log after {timeout}s")
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the daemon's process group, then SIGKILL what is left."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("daemon ignored SIGTERM name=%s pid=%d", self.name, self.pid)
        # The group may hold children even after the leader exited (supervisors).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclasses.dataclass(eq=False)
class Netns:
    """A network namespace the cluster made: run commands and daemons inside it."""

    name: str
    netns: str
    cluster: Cluster

    def exec(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside this namespace (``ip netns exec``), bounded by ``timeout``."""
        return run(
            ["ip", "netns", "exec", self.netns, *argv],
            check=check,
            timeout=timeout,
            input=input,
            env=env,
        )

    def iproute(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ip -n <netns> ARGS``."""
        return run(["ip", "-n", self.netns, *args], check=check)

    def sysctl(self, key: str, value: str | int) -> None:
        self.exec(["sysctl", "-q", "-w", f"{key}={value}"])

    def spawn(
        self,
        argv: Sequence[str],
        *,
        name: str | None = None,
        log_path: pathlib.Path | str | None = None,
        env: dict[str, str] | None = None,
        cwd: pathlib.Path | str | None = None,
    ) -> Daemon:
        """Start a daemon inside this namespace, tracked and killed at teardown.

        Output goes to ``log_path`` (default: the cluster's log dir), which is printed
        when the cluster exits on an exception.
        """
        label = name or f"{self.name}-{pathlib.Path(argv[0]).name}"
        path = pathlib.Path(log_path) if log_path else self.cluster.log_dir / f"{label}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as out:
            popen = subprocess.Popen(
                # Killed with the thread that spawned it if the test process dies
                # (a Bazel timeout's SIGKILL skips teardown): no orphans with parent 1.
                # So spawn from a long-lived thread (the main thread), never a worker.
                ["setpriv", "--pdeathsig", "KILL", "--", "ip", "netns", "exec", self.netns, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        daemon = Daemon(label, self.netns, list(argv), popen, path)
        self.cluster.daemons.append(daemon)
        log.info(
            "daemon started name=%s netns=%s pid=%d log=%s", label, self.netns, popen.pid, path
        )
        return daemon


@dataclasses.dataclass(eq=False)
class Node(Netns):
    """A cluster node: a namespace with ``eth0`` on one subnet of the fabric."""

    address: ipaddress.IPv4Interface = UNSET_ADDRESS
    subnet_index: int = 0
    gateway: ipaddress.IPv4Address | None = None

    @property
    def ip(self) -> str:
        """The node's address without prefix length (what a peer or route names)."""
        return str(self.address.ip)

    @property
    def state_dir(self) -> pathlib.Path:
        """A private directory for this node's sockets, configs and data.

        Namespaces share the host's filesystem, so per-node services must be pointed
        here explicitly (sockets, CNI conf dir, MTU file) instead of /var/run/tabby.
        """
        path = self.cluster.tmp / "nodes" / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path


def _pick_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """``count`` distinct random /24s in 172.31.0.0/16 (readable, rarely shared)."""
    thirds = secrets.SystemRandom().sample(range(256), count)
    return [ipaddress.IPv4Network(f"172.31.{x}.0/24") for x in thirds]


class Cluster:
    """Nodes on one L2 segment or on two subnets behind a router, plus etcd.

    Build with :meth:`l2` or :meth:`l3` and use as a context manager. Attributes:
    ``nodes``, ``router`` (the segments' default gateway), ``etcd`` (the etcd
    namespace), ``etcd_endpoint``,
    ``subnets``, ``tmp`` (removed at teardown), ``prefix`` (every namespace name
    starts with it).
    """

    def __init__(
        self,
        nodes_per_subnet: Sequence[int],
        *,
        with_router: bool,
        with_etcd: bool = True,
        etcd_binary: str = ETCD_BINARY,
    ) -> None:
        if not nodes_per_subnet or any(n < 0 for n in nodes_per_subnet):
            raise ValueError(f"nodes_per_subnet must be non-negative counts: {nodes_per_subnet}")
        if len(nodes_per_subnet) > 1 and not with_router:
            raise ValueError("several subnets need the router")
        self.nodes_per_subnet = tuple(nodes_per_subnet)
        self.with_router = with_router
        self.with_etcd = with_etcd
        self.etcd_binary = etcd_binary
        self.id = secrets.token_hex(3)
        self.prefix = f"{NETNS_PREFIX}{self.id}-"
        self.subnets = _pick_subnets(len(nodes_per_subnet))
        self.nodes: list[Node] = []
        self.router: Node | None = None
        self.etcd: Node | None = None
        self.etcd_daemon: Daemon | None = None
        self.switch: Netns | None = None
        self.daemons: list[Daemon] = []
        self.namespaces: list[str] = []
        self._cleanups: list[tuple[str, Callable[[], None]]] = []
        self._tmp: pathlib.Path | None = None
        self._torn_down = False
        self._lock = threading.Lock()

    # -- constructors -------------------------------------------------------------------

    @classmethod
    def l2(cls, n_nodes: int = 3, *, gateway: bool = True, **kw: object) -> Cluster:
        """``n_nodes`` nodes (and etcd) on one bridge: direct routing is possible.

        Like a real segment it has a gateway (the ``router`` namespace, .1) that every
        node uses as its default route. That matters beyond realism: pods reach their
        169.254.1.1 gateway by proxy ARP, which the kernel only answers for targets it
        has a route to (via another interface), i.e. only on nodes with a default route.
        """
        return cls([n_nodes], with_router=gateway, **kw)  # type: ignore[arg-type]

    @classmethod
    def l3(cls, nodes_per_subnet: Sequence[int] = (2, 1), **kw: object) -> Cluster:
        """Nodes in several subnets, each its own bridge, joined by a router namespace.

        etcd sits in the first subnet; every node has a default route via the router.
        """
        return cls(nodes_per_subnet, with_router=True, **kw)  # type: ignore[arg-type]

    # -- context manager ----------------------------------------------------------------

    def __enter__(self) -> Cluster:
        try:
            self._build()
        except BaseException:
            self.teardown(failed=True)
            raise
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.teardown(failed=exc is not None)

    # -- accessors ----------------------------------------------------------------------

    @property
    def tmp(self) -> pathlib.Path:
        """The cluster's temp dir (logs, etcd data, node state); removed at teardown."""
        if self._tmp is None:
            self._tmp = pathlib.Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{self.id}-"))
            (self._tmp / "owner.pid").write_text(f"{os.getpid()}\n")
        return self._tmp

    @property
    def log_dir(self) -> pathlib.Path:
        path = self.tmp / "logs"
        path.mkdir(exist_ok=True)
        return path

    @property
    def etcd_endpoint(self) -> str:
        """Client URL of the cluster's etcd, reachable from every node namespace."""
        if self.etcd is None:
            raise TopologyError("this cluster was built without etcd")
        return f"http://{self.etcd.ip}:{ETCD_CLIENT_PORT}"

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r} (have {[n.name for n in self.nodes]})")

    def add_cleanup(self, what: str, fn: Callable[[], None]) -> None:
        """Run ``fn`` at teardown (last added, first run), before namespaces go."""
        self._cleanups.append((what, fn))

    def new_netns(self, role: str) -> str:
        """Create a namespace ``<prefix><role>`` (tracked, lo up) and return its name."""
        name = f"{self.prefix}{role}"
        if len(name) > 15:
            raise ValueError(f"namespace name {name!r} is longer than 15 characters")
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    # -- build --------------------------------------------------------------------------

    def _build(self) -> None:
        started = time.monotonic()
        _ = self.tmp
        self.switch = Netns("switch", self.new_netns("sw"), self)
        for i, subnet in enumerate(self.subnets):
            bridge = f"br{i}"
            self.switch.iproute("link", "add", bridge, "type", "bridge")
            self.switch.iproute("link", "set", bridge, "up")
            log.debug("bridge up cluster=%s bridge=%s subnet=%s", self.id, bridge, subnet)
        if self.with_router:
            self.router = Node("router", self.new_netns("rtr"), self)
            for i, subnet in enumerate(self.subnets):
                addr = ipaddress.IPv4Interface(f"{subnet[ROUTER_HOST]}/{subnet.prefixlen}")
                self._attach(self.router, f"eth{i}", f"rtr{i}", i, addr)
            self.router.address = ipaddress.IPv4Interface(
                f"{self.subnets[0][ROUTER_HOST]}/{self.subnets[0].prefixlen}"
            )
            self.router.sysctl("net.ipv4.ip_forward", 1)
        index = 0
        for s, count in enumerate(self.nodes_per_subnet):
            subnet = self.subnets[s]
            for _ in range(count):
                node = Node(f"node-{index}", self.new_netns(f"node{index}"), self)
                addr = ipaddress.IPv4Interface(
                    f"{subnet[FIRST_NODE_HOST + index]}/{subnet.prefixlen}"
                )
                self._attach(node, "eth0", f"node{index}", s, addr)
                node.sysctl("net.ipv4.ip_forward", 1)
                self.nodes.append(node)
                index += 1
        if self.with_etcd:
            self.etcd = Node("etcd", self.new_netns("etcd"), self)
            addr = ipaddress.IPv4Interface(
                f"{self.subnets[0][ETCD_HOST]}/{self.subnets[0].prefixlen}"
            )
            self._attach(self.etcd, "eth0", "etcd", 0, addr)
            self._start_etcd()
        log.info(
            "cluster up id=%s subnets=%s nodes=%d router=%s etcd=%s seconds=%.2f",
            self.id,
            ",".join(map(str, self.subnets)),
            len(self.nodes),
            self.router is not None,
            self.etcd_endpoint if self.etcd else "-",
            time.monotonic() - started,
        )

    def _attach(
        self,
        ns: Node,
        ifname: str,
        port: str,
        subnet_index: int,
        addr: ipaddress.IPv4Interface,
    ) -> None:
        """Cable ``ns`` to bridge ``br<subnet_index>``: veth ``port`` (switch) <-> ifname."""
        assert self.switch is not None
        self.switch.iproute(
            "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns.netns
        )
        self.switch.iproute("link", "set", port, "master", f"br{subnet_index}", "up")
        ns.iproute("addr", "add", str(addr), "dev", ifname)
        ns.iproute("link", "set", ifname, "up")
        ns.address = addr
        ns.subnet_index = subnet_index
        if self.with_router and ns is not self.router:
            gateway = self.subnets[subnet_index][ROUTER_HOST]
            ns.iproute("route", "add", "default", "via", str(gateway))
            ns.gateway = gateway

    def _start_etcd(self) -> None:
        assert self.etcd is not None
        ip = self.etcd.ip
        client = f"http://{ip}:{ETCD_CLIENT_PORT}"
        peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
        data = self.tmp / "etcd"
        self.etcd_daemon = self.etcd.spawn(
            [
                self.etcd_binary,
                "--name=e2e",
                f"--data-dir={data}",
                f"--listen-client-urls={client},http://127.0.0.1:{ETCD_CLIENT_PORT}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=e2e={peer}",
                "--logger=zap",
                "--log-level=warn",
            ],
            name="etcd",
        )
        deadline = time.monotonic() + ETCD_START_TIMEOUT
        while True:
            if not self.etcd_daemon.alive():
                raise TopologyError(
                    f"etcd exited rc={self.etcd_daemon.popen.returncode} at start; "
                    f"log tail:\n{tail(self.etcd_daemon.log_text())}"
                )
            if etcd_healthy(self.etcd, client):
                return
            if time.monotonic() > deadline:
                raise TopologyError(f"etcd not healthy at {client} after {ETCD_START_TIMEOUT}s")
            time.sleep(0.1)

    # -- teardown -----------------------------------------------------------------------

    def teardown(self, failed: bool = False) -> None:
        """Remove everything the cluster made; safe to call twice or on a half build.

        SIGINT is held off while it runs so a second Ctrl-C cannot leave debris; the
        interrupt is delivered right after.
        """
        with self._lock:
            if self._torn_down:
                return
            self._torn_down = True
        on_main = threading.current_thread() is threading.main_thread()
        if on_main:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            problems = self._teardown(failed)
        finally:
            if on_main:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        if problems and not failed:
            raise TopologyError("teardown incomplete: " + "; ".join(problems))

    def _teardown(self, failed: bool) -> list[str]:
        problems: list[str] = []

        def attempt(what: str, fn: Callable[[], None]) -> None:
            try:
                fn()
            except Exception as exc:
                problems.append(f"{what}: {exc}")
                log.warning("teardown step failed cluster=%s step=%s error=%s", self.id, what, exc)

        for what, fn in reversed(self._cleanups):
            attempt(what, fn)
        if failed:
            self.print_logs()
        for daemon in reversed(self.daemons):
            attempt(f"stop {daemon.name}", daemon.stop)
        for name in reversed(self.namespaces):
            attempt(f"delete netns {name}", lambda name=name: _delete_netns(name))
        if self._tmp is not None:
            keep = os.environ.get("TABBY_E2E_KEEP_LOGS")
            if keep and failed:
                dest = pathlib.Path(keep) / self._tmp.name
                attempt("keep logs", lambda: shutil.copytree(self._tmp / "logs", dest))
            if self._tmp.exists():
                attempt("remove tmp", lambda: shutil.rmtree(self._tmp))
        log.info("cluster down id=%s failed=%s problems=%d", self.id, failed, len(problems))
        return problems

    def print_logs(self, lines: int = 60, stream: object = None) -> None:
        """Print the tail of every daemon log (called on failure)."""
        out = stream or sys.stderr
        for daemon in self.daemons:
            text = tail(daemon.log_text(), lines)
            print(f"----- {daemon.name} ({daemon.log_path}) -----\n{text}", file=out)  # type: ignore[call-overload]


def _delete_netns(name: str) -> None:
    """Kill whatever still runs in our namespace, then delete it (ignore 'absent')."""
    for pid in netns_pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in netns_pids(name)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if name not in list_netns():
        return
    run(["ip", "netns", "del", name])


def etcd_healthy(ns: Netns, endpoint: str, timeout: float = 2.0) -> bool:
    """``etcdctl endpoint health`` run inside ``ns``: what a node would see."""
    argv = [
        "etcdctl",
        f"--endpoints={endpoint}",
        "--dial-timeout=1s",
        f"--command-timeout={timeout:g}s",
        "endpoint",
        "health",
    ]
    try:
        env = dict(os.environ, ETCDCTL_API="3")
        proc = ns.exec(argv, check=False, timeout=timeout + 3, env=env)
    except TopologyError:
        return False
    return proc.returncode == 0 and "is healthy" in (proc.stdout + proc.stderr)


def sweep_stale() -> list[str]:
    """Delete namespaces and temp dirs of clusters whose owning process is gone.

    For runs killed with SIGKILL (no teardown possible). Only touches names this module
    makes (``te<6 hex>-...``, ``/tmp/tabby-e2e-<6 hex>-...``) and only when the owner
    pid recorded in the temp dir is dead, so concurrent live clusters are safe.
    """
    removed = []
    owners: dict[str, bool] = {}
    tmp_root = pathlib.Path(tempfile.gettempdir())
    for d in tmp_root.glob(f"{TMP_PREFIX}*"):
        cid = d.name[len(TMP_PREFIX) : len(TMP_PREFIX) + 6]
        try:
            pid = int((d / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        alive = pid_alive(pid)
        owners[cid] = owners.get(cid, False) or alive
        if not alive:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
    for name in list_netns():
        if not NETNS_RE.match(name):
            continue
        cid = name[len(NETNS_PREFIX) : len(NETNS_PREFIX) + 6]
        if owners.get(cid) is False:
            _delete_netns(name)
            removed.append(name)
    return removed


def iter_cluster_netns(cluster: Cluster) -> Iterator[str]:
    """Namespaces on the machine that belong to ``cluster`` (for leak checks)."""
    return (n for n in list_netns() if n.startswith(cluster.prefix))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    if sys.argv[1:] == ["--sweep"]:
        for item in sweep_stale():
            print(f"removed {item}")
        sys.exit(0)
    print("usage: python3 -m e2e.topology --sweep", file=sys.stderr)
    sys.exit(2)
