"""What a user checks after installing pod networking: who reaches whom, and how.

* :func:`reachability_matrix`: ICMP and TCP from every pod to every other pod, each
  probe bounded (``ping -c 1 -W 1`` / a 1 s connect, retried until a deadline), as a
  matrix to assert on and to print as a table. The TCP listener in each pod answers
  with the pod's name, so a reply proves the right pod was reached.
* :func:`routes`: a namespace's routing table (``ip -j route``).
* :func:`capture`: tcpdump in a namespace, bounded by ``-c`` and ``timeout``, to prove
  which packets cross a wire (VXLAN between subnets, none within one).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from e2e.topology import Netns, TopologyError

log = logging.getLogger("tabby.e2e.connectivity")

PYTHON = os.path.realpath(sys.executable)
DEFAULT_DEADLINE = 10.0
CONNECT_TIMEOUT = 1.0

# Accepts up to N connections (or until its lifetime ends), answering each with a name.
LISTENER = """\
import socket, sys, time
port, n, life, reply = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(64)
print("ready", flush=True)
end = time.monotonic() + life
for _ in range(n):
    left = end - time.monotonic()
    if left <= 0:
        break
    s.settimeout(left)
    try:
        c, _ = s.accept()
    except TimeoutError:
        break
    c.sendall(reply.encode())
    c.close()
"""

CLIENT = """\
import socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with socket.create_connection((host, port), timeout=timeout) as c:
    c.settimeout(timeout)
    print(c.recv(256).decode(), end="")
"""


class Endpoint(Protocol):
    """Anything with a name, a namespace to run in and an IPv4 address (Pod, Node)."""

    name: str
    netns: str

    @property
    def ip(self) -> str: ...

    def exec(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]: ...


@dataclasses.dataclass
class Probe:
    """One directed check: did it succeed, after how many tries, and what was seen."""

    ok: bool
    attempts: int
    seconds: float
    detail: str = ""


@dataclasses.dataclass
class Matrix:
    """Results per (source name, destination name) for each protocol probed."""

    names: list[str]
    results: dict[str, dict[tuple[str, str], Probe]]

    @property
    def ok(self) -> bool:
        return not self.failures()

    def failures(self) -> list[str]:
        """``"tcp a->b: detail"`` for every failed probe."""
        out = []
        for proto, table in self.results.items():
            for (src, dst), probe in sorted(table.items()):
                if not probe.ok:
                    out.append(f"{proto} {src}->{dst}: {probe.detail}")
        return out

    def reachable(self, proto: str = "icmp") -> set[tuple[str, str]]:
        return {pair for pair, probe in self.results[proto].items() if probe.ok}

    def table(self) -> str:
        """Rows are sources, columns destinations; each cell one mark per protocol."""
        protos = list(self.results)
        width = max([len(n) for n in self.names] + [len(protos) * 2 + 1, 4])
        head = "from\\to".ljust(width) + " " + " ".join(n.ljust(width) for n in self.names)
        lines = [f"reachability ({'/'.join(protos)}; ok = reached, X = failed)", head]
        for src in self.names:
            cells = []
            for dst in self.names:
                if src == dst:
                    cells.append("-".ljust(width))
                    continue
                marks = "/".join("ok" if self.results[p][(src, dst)].ok else "X" for p in protos)
                cells.append(marks.ljust(width))
            lines.append(src.ljust(width) + " " + " ".join(cells))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def assert_all_ok(self) -> None:
        """Raise AssertionError with the table and each failure when anything failed."""
        failed = self.failures()
        if failed:
            raise AssertionError(self.table() + "\n" + "\n".join(failed))


def _retry(check: Any, until: float) -> Probe:
    """Try at least once, and again every 0.2 s until success or ``until`` (monotonic)."""
    started = time.monotonic()
    attempts = 0
    detail = ""
    while True:
        attempts += 1
        ok, detail = check()
        now = time.monotonic()
        if ok:
            return Probe(True, attempts, now - started, detail)
        if now >= until:
            return Probe(False, attempts, now - started, detail)
        time.sleep(min(0.2, until - now))


def ping_probe(
    src: Endpoint, dst_ip: str, deadline: float = DEFAULT_DEADLINE, *, until: float | None = None
) -> Probe:
    """One-packet pings from ``src`` to ``dst_ip`` until one answers or time runs out."""

    def once() -> tuple[bool, str]:
        proc = src.exec(["ping", "-n", "-c", "1", "-W", "1", dst_ip], check=False, timeout=5)
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        return proc.returncode == 0, (lines[-1] if lines else f"rc={proc.returncode}")

    return _retry(once, until if until is not None else time.monotonic() + deadline)


def tcp_probe(
    src: Endpoint,
    dst_ip: str,
    port: int,
    expect: str,
    deadline: float = DEFAULT_DEADLINE,
    *,
    until: float | None = None,
) -> Probe:
    """Connect from ``src`` and read the listener's name: ok only if it is ``expect``."""

    def once() -> tuple[bool, str]:
        argv = [PYTHON, "-S", "-c", CLIENT, dst_ip, str(port), str(CONNECT_TIMEOUT)]
        try:
            proc = src.exec(argv, check=False, timeout=CONNECT_TIMEOUT + 5)
        except TopologyError as exc:
            return False, str(exc)
        if proc.returncode != 0:
            err = proc.stderr.strip().splitlines()
            return False, err[-1] if err else f"rc={proc.returncode}"
        if proc.stdout != expect:
            return False, f"answered by {proc.stdout!r}, expected {expect!r}"
        return True, proc.stdout

    return _retry(once, until if until is not None else time.monotonic() + deadline)


def reachability_matrix(
    pods: Sequence[Endpoint],
    *,
    icmp: bool = True,
    tcp: bool = True,
    deadline: float = DEFAULT_DEADLINE,
    port: int | None = None,
    parallel: int = 8,
) -> Matrix:
    """Probe every ordered pair of distinct pods, retrying failures within ``deadline``.

    The deadline is shared by the whole matrix (a broken cluster fails in about
    ``deadline`` seconds, not ``deadline`` per pair); every probe runs at least once.
    """
    names = [p.name for p in pods]
    if len(set(names)) != len(names):
        raise ValueError(f"pod names must be unique in a matrix: {names}")
    pairs = [(a, b) for a in pods for b in pods if a is not b]
    results: dict[str, dict[tuple[str, str], Probe]] = {}
    started = time.monotonic()
    listeners: list[subprocess.Popen[str]] = []
    try:
        if tcp:
            port = port or random.randint(20000, 60000)
            life = deadline + 10 + 2 * len(pairs) / parallel
            listeners = [_start_listener(p, port, len(pods), deadline, life) for p in pods]
        until = time.monotonic() + deadline
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            futures: dict[str, dict[tuple[str, str], concurrent.futures.Future[Probe]]] = {}
            if icmp:
                futures["icmp"] = {
                    (a.name, b.name): pool.submit(ping_probe, a, b.ip, until=until)
                    for a, b in pairs
                }
            if tcp:
                assert port is not None
                futures["tcp"] = {
                    (a.name, b.name): pool.submit(tcp_probe, a, b.ip, port, b.name, until=until)
                    for a, b in pairs
                }
            results = {
                proto: {k: f.result() for k, f in fs.items()} for proto, fs in futures.items()
            }
    finally:
        for proc in listeners:
            _stop(proc)
    matrix = Matrix(names, results)
    log.info(
        "reachability pods=%d probes=%d failed=%d seconds=%.2f",
        len(pods),
        sum(len(t) for t in results.values()),
        len(matrix.failures()),
        time.monotonic() - started,
    )
    return matrix


def _start_listener(
    pod: Endpoint, port: int, n_pods: int, deadline: float, life: float
) -> subprocess.Popen[str]:
    """A bounded TCP listener in ``pod``: enough accepts for every peer's retries."""
    max_attempts = int(deadline / 0.2) + 2
    argv = [
        "ip", "netns", "exec", pod.netns,
        PYTHON, "-S", "-c", LISTENER,
        str(port), str((n_pods - 1) * max_attempts), f"{life:.1f}", pod.name,
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    ready = _readline_within(proc.stdout, 10.0)
    if ready.strip() != "ready":
        err = _stop(proc)
        raise TopologyError(f"TCP listener in pod {pod.name} did not start: {ready!r} {err!r}")
    return proc


def _readline_within(stream: Any, timeout: float) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else ""


def _stop(proc: subprocess.Popen[str]) -> str:
    """Kill a helper we started (if still running); return its stderr."""
    if proc.poll() is None:
        proc.kill()
    _, err = proc.communicate(timeout=10)
    return err or ""


def routes(ns: Netns, *, table: str = "main", family: int = 4) -> list[dict[str, Any]]:
    """The namespace's routes as ``ip -j route`` gives them (dst, gateway, dev, protocol)."""
    proc = ns.exec(["ip", "-j", f"-{family}", "route", "show", "table", table])
    return json.loads(proc.stdout or "[]")


def find_routes(table: Iterable[dict[str, Any]], dst: str) -> list[dict[str, Any]]:
    """Entries of a parsed table for destination ``dst`` (``"default"`` works too)."""
    return [r for r in table if r.get("dst") == dst]


def route_get(ns: Netns, dst: str) -> dict[str, Any]:
    """The kernel's forwarding decision for ``dst`` in ``ns`` (``ip -j route get``)."""
    proc = ns.exec(["ip", "-j", "route", "get", dst])
    entries = json.loads(proc.stdout or "[]")
    if not entries:
        raise TopologyError(f"{ns.name}: no route decision for {dst}")
    return entries[0]


class Capture:
    """tcpdump in a namespace, started before traffic and bounded by count and time.

    Use as ``with capture(router, "eth1", "udp port 4789", count=3, timeout=5) as cap:``
    then send traffic inside the block; after it, ``cap.packets`` holds one line per
    packet seen (tcpdump's ``-nn`` text). An exception inside the block stops tcpdump
    at once instead of waiting for the timeout.
    """

    def __init__(self, ns: Netns, iface: str, bpf_filter: str, count: int, timeout: float):
        self.ns = ns
        self.iface = iface
        self.bpf_filter = bpf_filter
        self.count = count
        self.timeout = timeout
        self.packets: list[str] = []
        self.stderr = ""
        self._proc: subprocess.Popen[str] | None = None
        self._stderr_lines: list[str] = []
        self._stderr_done = threading.Event()

    def start(self) -> Capture:
        argv = [
            "ip", "netns", "exec", self.ns.netns,
            "timeout", f"{self.timeout:g}",
            "tcpdump", "-i", self.iface, "-nn", "-l", "-c", str(self.count), self.bpf_filter,
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self._stderr_lines: list[str] = []
        listening = threading.Event()
        threading.Thread(target=self._drain_stderr, args=(listening,), daemon=True).start()
        listening.wait(10.0)  # set on "listening on" or when stderr ends (tcpdump died)
        if not any("listening on" in line for line in self._stderr_lines):
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait(timeout=10)
            self._stderr_done.wait(5)
            raise TopologyError(
                f"tcpdump on {self.ns.name}/{self.iface} filter {self.bpf_filter!r} did not "
                f"start: {' '.join(line.strip() for line in self._stderr_lines)}"
            )
        return self

    def _drain_stderr(self, listening: threading.Event) -> None:
        """Collect tcpdump's stderr; flag once it reports it is capturing."""
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr_lines.append(line)
            if "listening on" in line:
                listening.set()
        listening.set()
        self._stderr_done.set()

    def wait(self) -> list[str]:
        """Wait for ``count`` packets or the timeout, then return the packet lines."""
        assert self._proc is not None
        assert self._proc.stdout is not None
        self._proc.wait(timeout=self.timeout + 10)
        out = self._proc.stdout.read()
        self._proc.stdout.close()
        self._stderr_done.wait(5)
        self.stderr = "".join(self._stderr_lines)
        self.packets = packet_lines(out)
        log.info(
            "capture done ns=%s iface=%s filter=%r packets=%d",
            self.ns.name,
            self.iface,
            self.bpf_filter,
            len(self.packets),
        )
        return self.packets

    def __enter__(self) -> Capture:
        return self if self._proc else self.start()

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None and self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
            return
        self.wait()


TIMESTAMP = re.compile(r"^\d{2}:\d{2}:\d{2}\.\d+ ")


def packet_lines(text: str) -> list[str]:
    """tcpdump text, one string per packet (a decoded inner frame joins its outer line)."""
    packets: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if TIMESTAMP.match(line) or not packets:
            packets.append(line.strip())
        else:
            packets[-1] += " | " + line.strip()
    return packets


def capture(ns: Netns, iface: str, bpf_filter: str, count: int, timeout: float) -> Capture:
    """Start tcpdump in ``ns`` on ``iface`` (ready when this returns); see :class:`Capture`."""
    return Capture(ns, iface, bpf_filter, count, timeout).start()
