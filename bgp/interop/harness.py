"""Test harness for interop tests: a LAN of network namespaces, tabby-bgpd and real
peers (BIRD 2, GoBGP, FRR) started inside them, and always torn down.

Topology: a hub namespace holds a bridge; every other namespace hangs off it with a
veth pair, so all speakers share one IPv4 and one IPv6 subnet (next hops are directly
reachable, as on a rack's L2 segment). Names carry a random suffix so that tests of
other helpers running at the same time never clash.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc

from proto import bgp_admin_pb2 as pb
from proto import bgp_admin_pb2_grpc as pb_grpc

# Repo root as seen by this file (under Bazel: the runfiles tree, which holds the
# generated proto stubs; do not resolve symlinks into the source tree).
REPO = pathlib.Path(os.path.abspath(__file__)).parents[2]


def run(*cmd: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)


def have_root_netns() -> str | None:
    """None if namespaces can be made here, else the reason to skip."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 missing"
    return None


@dataclass
class Node:
    ns: str
    ifname: str
    v4: str
    v6: str


@dataclass
class Lan:
    """A hub namespace with a bridge and ``n`` nodes; index 0 is the hub itself."""

    tag: str
    subnet: int  # third octet of 10.99.<subnet>.0/24 and fd00:99:<subnet>::/64
    nodes: list[Node] = field(default_factory=list)

    def v4(self, i: int) -> str:
        return f"10.99.{self.subnet}.{i + 1}"

    def v6(self, i: int) -> str:
        return f"fd00:99:{self.subnet:x}::{i + 1:x}"


@contextlib.contextmanager
def lan(count: int) -> Iterator[Lan]:
    """``count`` namespaces on one bridge (node 0 holds the bridge)."""
    tag = secrets.token_hex(3)
    net = Lan(tag, int(tag[:2], 16) % 250 + 1)
    created: list[str] = []
    try:
        hub = f"tbg-{tag}-0"
        run("ip", "netns", "add", hub)
        created.append(hub)
        run("ip", "-n", hub, "link", "set", "lo", "up")
        run("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", hub, "link", "set", "br0", "up")
        _addr(hub, "br0", net.v4(0), net.v6(0))
        net.nodes.append(Node(hub, "br0", net.v4(0), net.v6(0)))
        for i in range(1, count):
            ns = f"tbg-{tag}-{i}"
            run("ip", "netns", "add", ns)
            created.append(ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            outside = f"tbg{tag}p{i}"
            run(
                "ip", "-n", hub, "link", "add", outside, "type", "veth",
                "peer", "name", "eth0", "netns", ns,
            )  # fmt: skip
            run("ip", "-n", hub, "link", "set", outside, "master", "br0", "up")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            _addr(ns, "eth0", net.v4(i), net.v6(i))
            net.nodes.append(Node(ns, "eth0", net.v4(i), net.v6(i)))
        yield net
    finally:
        for ns in reversed(created):
            with contextlib.suppress(subprocess.SubprocessError):  # delete the rest anyway
                run("ip", "netns", "del", ns, check=False)


def _addr(ns: str, dev: str, v4: str, v6: str) -> None:
    run("ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", dev)
    run("ip", "-n", ns, "addr", "add", f"{v6}/64", "dev", dev, "nodad")


def wait_for(what: str, probe: Callable[[], object], timeout: float = 20.0) -> object:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (subprocess.SubprocessError, grpc.RpcError, OSError) as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")


# The child is SIGKILLed when the thread that started it dies, so a test runner that is
# itself killed (a Bazel timeout, ^C) leaves no daemon behind with parent 1. setpriv sets
# PR_SET_PDEATHSIG before exec (a Python preexec_fn could crash in a forked grpc-threaded
# process), and ``ip netns exec`` execs the daemon in place, so the daemon inherits it.
DIE_WITH_PARENT = ("setpriv", "--pdeathsig", "KILL", "--")


class Proc:
    """A daemon started inside a namespace (or on the host when ``ns`` is None), in a
    process group of its own; ``stop`` ends the group and reaps it."""

    def __init__(
        self, ns: str | None, argv: list[str], log: pathlib.Path, env: dict | None = None
    ) -> None:
        self.log = log
        self._f = open(log, "ab")  # noqa: SIM115 (closed in stop)
        try:
            self.p = subprocess.Popen(
                [*DIE_WITH_PARENT, *(["ip", "netns", "exec", ns] if ns else []), *argv],
                stdout=self._f,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except BaseException:
            self._f.close()
            raise

    def alive(self) -> bool:
        return self.p.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the daemon itself (SIGHUP reload, SIGKILL crash), not its group."""
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def _signal_group(self, sig: int) -> None:
        # Only while the leader is unreaped: its pid (the group id) cannot be reused yet.
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, sig)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; the log file is closed whatever happens."""
        try:
            self._signal_group(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.p.wait(5)
        finally:
            self._f.close()

    def output(self) -> str:
        self._f.flush()
        return self.log.read_text(errors="replace")


def stop_all(procs: list) -> None:
    """Stop every process (newest first) even when one of them fails to stop."""
    errors: list[BaseException] = []
    for proc in reversed(procs):
        try:
            proc.stop()
        except Exception as e:  # keep going: the others must not leak
            errors.append(e)
    if errors:
        raise errors[0]


class Tabby:
    """tabby-bgpd in a namespace (None: on the host, loopback tests), with its admin API
    reachable over the unix socket."""

    def __init__(self, ns: str | None, workdir: pathlib.Path, config: str, name: str = "tabby"):
        self.ns = ns
        self.dir = workdir
        self.name = name
        self.conf = workdir / f"{name}.yaml"
        self.sock = workdir / f"{name}.sock"
        self.conf.write_text(config + f"\nadminSocket: {self.sock}\n")
        self.proc: Proc | None = None

    def start(self) -> Tabby:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        argv = [sys.executable, "-m", "bgp.daemon.main", "--config", str(self.conf)]
        self.proc = Proc(self.ns, argv, self.dir / f"{self.name}.log", env)
        try:
            wait_for(f"{self.name} admin socket", self._ready, 15)
        except BaseException:
            self.proc.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if not self.proc.alive():
            raise AssertionError(f"{self.name} exited: {self.proc.output()[-2000:]}")
        return self.sock.exists()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def reload(self, config: str) -> None:
        self.conf.write_text(config + f"\nadminSocket: {self.sock}\n")
        assert self.proc is not None
        self.proc.kill(signal.SIGHUP)

    def _stub(self) -> pb_grpc.BgpAdminStub:
        return pb_grpc.BgpAdminStub(grpc.insecure_channel(f"unix:{self.sock}"))

    def peers(self) -> dict[str, pb.PeerStatus]:
        reply = self._stub().ListPeers(pb.ListPeersRequest(), timeout=5)
        return {p.address: p for p in reply.peers}

    def rib(self, peer: str = "", afi: str = "") -> dict[str, pb.RibEntry]:
        """Best entries by prefix (Loc-RIB), or a peer's Adj-RIB-In."""
        reply = self._stub().ListRib(pb.ListRibRequest(peer=peer, afi=afi), timeout=5)
        return {e.prefix: e for e in reply.entries if e.best or peer}

    def established(self, address: str) -> bool:
        p = self.peers().get(address)
        return p is not None and p.state == "Established"

    def metrics(self, url: str) -> Metrics:
        """Scrape ``url`` (the daemon's /metrics) into samples."""
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return Metrics.parse(r.read().decode())


@dataclass
class Metrics:
    """Prometheus text samples as {(name, sorted label pairs): value}; enough of the
    exposition format to check what tabby-bgpd serves."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    types: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Metrics:
        samples: dict = {}
        types: dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                types[name] = kind
            if not line or line.startswith("#"):
                continue
            m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)", line)
            assert m, f"not a sample line: {line!r}"
            labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or "")))
            samples[(m.group(1), labels)] = float(m.group(3))
        return cls(samples, types)

    def get(self, metric: str, /, **labels: object) -> float:
        """The sum of ``metric``'s samples whose labels include ``labels`` (0 if none)."""
        want = {(k, str(v)) for k, v in labels.items()}
        return sum(v for (n, ls), v in self.samples.items() if n == metric and want <= set(ls))


class Bird:
    """BIRD 2 in the foreground (``-f``) with its own config and control socket."""

    def __init__(self, ns: str, workdir: pathlib.Path, config: str, name: str = "bird"):
        if shutil.which("bird") is None:
            raise RuntimeError("bird (BIRD 2) is not installed")
        self.ns = ns
        self.name = name
        self.conf = workdir / f"{name}.conf"
        self.sock = workdir / f"{name}.ctl"
        self.conf.write_text(config)
        self.proc = Proc(
            ns, ["bird", "-c", str(self.conf), "-s", str(self.sock), "-f"], workdir / f"{name}.log"
        )
        try:
            wait_for(f"{name} control socket", self._ready, 15)
        except BaseException:
            self.proc.stop()
            raise

    def _ready(self) -> bool:
        if not self.proc.alive():
            raise AssertionError(f"{self.name} exited: {self.proc.output()[-2000:]}")
        return self.sock.exists()

    def cli(self, *args: str) -> str:
        # birdc exits 1 for "Network not found"; the text says what happened.
        return run("birdc", "-s", str(self.sock), *args, check=False).stdout

    def protocol_state(self, proto: str) -> str:
        out = self.cli("show", "protocols", proto)
        for line in out.splitlines():
            if line.startswith(proto + " "):
                return line.split()[5] if len(line.split()) > 5 else line
        return ""

    def established(self, proto: str) -> bool:
        return "Established" in self.cli("show", "protocols", proto)

    def route(self, prefix: str, table: str | None = None) -> str:
        """``show route <prefix> all`` text ('' when BIRD has no such route)."""
        args = ["show", "route", prefix]
        if table:
            args += ["table", table]
        out = self.cli(*args, "all")
        return out if prefix in out and "Network not found" not in out else ""

    def stop(self) -> None:
        self.proc.stop()


@contextlib.contextmanager
def workdir() -> Iterator[pathlib.Path]:
    d = pathlib.Path(tempfile.mkdtemp(prefix="tbg-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class GoBgp:
    """gobgpd with a TOML config; its gRPC API stays inside the namespace (default port)."""

    def __init__(self, ns: str, workdir: pathlib.Path, config: str, name: str = "gobgp"):
        if shutil.which("gobgpd") is None:
            raise RuntimeError("gobgpd is not installed")
        self.ns = ns
        self.name = name
        self.conf = workdir / f"{name}.toml"
        self.conf.write_text(config)
        argv = ["gobgpd", "-f", str(self.conf), "-p", "--pprof-disable"]
        self.proc = Proc(ns, argv, workdir / f"{name}.log")
        try:
            wait_for(f"{name} API", self._ready, 20)
        except BaseException:
            self.proc.stop()
            raise

    def _ready(self) -> bool:
        if not self.proc.alive():
            raise AssertionError(f"{self.name} exited: {self.proc.output()[-2000:]}")
        return run("ip", "netns", "exec", self.ns, "gobgp", "global", check=False).returncode == 0

    def cli(self, *args: str) -> str:
        return run("ip", "netns", "exec", self.ns, "gobgp", *args, check=False).stdout

    def rib(self, afi: str = "ipv4") -> dict:
        """Global RIB as {prefix: [paths]} from ``gobgp global rib -a AFI -j``."""
        import json

        out = self.cli("global", "rib", "-a", afi, "-j")
        return json.loads(out) if out.strip() else {}

    def established(self, address: str) -> bool:
        return "bgp state = established" in self.cli("neighbor", address).lower()

    def stop(self) -> None:
        self.proc.stop()


class Frr:
    """FRR bgpd without zebra (-Z, -n): its own config, pid file and vty socket dir."""

    def __init__(self, ns: str, workdir: pathlib.Path, config: str, name: str = "frr"):
        bgpd = "/usr/lib/frr/bgpd"
        if not os.path.exists(bgpd):
            raise RuntimeError("FRR bgpd is not installed")
        self.ns = ns
        self.name = name
        self.vty = workdir / f"{name}-vty"
        self.vty.mkdir()
        self.conf = workdir / f"{name}.conf"
        self.conf.write_text(config)
        argv = [
            bgpd, "-f", str(self.conf), "-i", str(workdir / f"{name}.pid"),
            "--vty_socket", str(self.vty), "-Z", "-n", "-S", "-P", "0", "--log", "stdout",
        ]  # fmt: skip
        self.proc = Proc(ns, argv, workdir / f"{name}.log")
        try:
            wait_for(f"{name} vty socket", self._ready, 20)
        except BaseException:
            self.proc.stop()
            raise

    def _ready(self) -> bool:
        if not self.proc.alive():
            raise AssertionError(f"{self.name} exited: {self.proc.output()[-2000:]}")
        return (self.vty / "bgpd.vty").exists()

    def cli(self, command: str) -> str:
        return run(
            "ip", "netns", "exec", self.ns, "vtysh", "--vty_socket", str(self.vty),
            "-d", "bgpd", "-c", command, check=False,
        ).stdout  # fmt: skip

    def json(self, command: str) -> dict:
        import json

        out = self.cli(command + " json")
        try:
            return json.loads(out)
        except ValueError:
            return {}

    def established(self, address: str) -> bool:
        n = self.json(f"show bgp neighbors {address}")
        return n.get(address, {}).get("bgpState") == "Established"

    def stop(self) -> None:
        self.proc.stop()
