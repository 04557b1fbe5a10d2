"""Failure tests: a service killed under load, a node removed from the cluster.

Direct routing (mode 1) on one L2 segment, services under ``tabby-node`` as the
DaemonSet runs them. What a user would notice is asserted: established pod-to-pod
connections keep flowing while Felix is SIGKILLed and restarted (and the kernel never
loses a route meanwhile), pods still come and go after the CNI service is SIGKILLed,
and a removed node's block routes vanish from every other node.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pathlib
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.connectivity import find_routes, reachability_matrix, routes
from e2e.nodes import (
    VXLAN_DEVICE,
    VXLAN_POD_MTU,
    cni_path,
    install_prefix,
    service_pid,
    start_tabby_node,
    tabby_node_daemon,
    tabbyctl,
    wait_for_log_count,
    wait_service_pid,
)
from e2e.pods import Pod, create_pod, delete_pod
from e2e.topology import Cluster, Netns, Node

BLOCK_PREFIX = 26
FELIX = "tabby-felix"
CNI_SERVICE = "tabby-cni-service"
# Felix logs this once per start, after InSync, when its dataplane is built.
FELIX_READY = r"dataplane managers built"
CNI_READY = r"ready socket="
# Established traffic may stall at most this long while Felix restarts. Direct routing
# has no graceful-restart timer of its own: routes stay in the kernel, so any gap is
# scheduling noise on a loaded 2-core machine, far below BGP's 120 s restart time.
MAX_STALL_S = 1.0
STREAM_INTERVAL_S = 0.02
STREAM_PORT = 7777
# No BGP daemon runs in these clusters: Felix's README says to set its learned-routes
# grace to 0 then (else routes nobody claims linger 90 s; tabby-node does not do it by
# itself yet, see test_removed_node_routes_withdrawn_with_tabby_node_defaults). With 0,
# Felix deletes unclaimed routes right after InSync, so "no deletion across a restart"
# really proves it adopted its routes.
NO_BGP = ("--felix-arg=--learned-routes-grace=0",)


@pytest.fixture(scope="module")
def bin_dir() -> Iterator[pathlib.Path]:
    with install_prefix() as prefix:
        yield prefix / "bin"


def block_of(ip: str) -> str:
    return str(ipaddress.ip_network(f"{ip}/{BLOCK_PREFIX}", strict=False))


def proto80(node: Node) -> list[str]:
    """Felix's routes in ``node`` (protocol 80), as sorted one-line strings."""
    out = node.exec(["ip", "-4", "route", "show", "proto", "80"]).stdout
    return sorted(line.strip() for line in out.splitlines() if line.strip())


# --- a long-lived TCP stream between two pods -------------------------------------------

ECHO_SERVER = r"""
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1]))); srv.listen(1); srv.settimeout(60)
print("listening", flush=True)
conn, _ = srv.accept(); conn.settimeout(60)
while True:
    data = conn.recv(4096)
    if not data:
        break
    conn.sendall(data)
"""

# Sends a sequence number every interval and waits for its echo (one connection for
# the whole run). Stops when the stop file appears or after max_s; prints JSON stats.
STREAM_CLIENT = r"""
import json, os, socket, struct, sys, time
host, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[4]
interval, max_s = float(sys.argv[3]), float(sys.argv[5])
stats = {"sent": 0, "echoed": 0, "max_gap_ms": 0.0, "error": ""}
try:
    s = socket.create_connection((host, port), timeout=5); s.settimeout(5)
    print("connected", flush=True)
    start = last = time.monotonic()
    while not os.path.exists(stop) and time.monotonic() - start < max_s:
        s.sendall(struct.pack("!Q", stats["sent"])); stats["sent"] += 1
        buf = b""
        while len(buf) < 8:
            chunk = s.recv(8 - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by the server")
            buf += chunk
        if struct.unpack("!Q", buf)[0] != stats["echoed"]:
            raise ValueError(f"out of order echo {struct.unpack('!Q', buf)[0]}")
        stats["echoed"] += 1
        now = time.monotonic()
        stats["max_gap_ms"] = max(stats["max_gap_ms"], (now - last) * 1000); last = now
        time.sleep(interval)
    s.close()
except Exception as exc:
    stats["error"] = repr(exc)
print(json.dumps(stats), flush=True)
"""


def _popen_in(ns: Netns, argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns.netns, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _first_line(proc: subprocess.Popen[str], want: str, timeout: float = 10.0) -> None:
    """Wait (bounded) for ``want`` as the first stdout line of ``proc``."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"no {want!r} from {proc.args} within {timeout}s")
    line = proc.stdout.readline().strip()
    assert line == want, (line, proc.stderr.read() if proc.poll() is not None else "")


def _reap(proc: subprocess.Popen[str], timeout: float = 5.0) -> tuple[str, str]:
    """Collect a helper's output; kill its group if it overstays ``timeout``."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate(timeout=5)


@contextlib.contextmanager
def tcp_stream(src: Pod, dst: Pod, stop_file: pathlib.Path) -> Iterator[dict[str, Any]]:
    """A TCP connection from ``src`` to an echo server in ``dst``, exercised every
    20 ms until the block ends; the dict gets the client's stats afterwards."""
    server = _popen_in(dst, [sys.executable, "-c", ECHO_SERVER, str(STREAM_PORT)])
    client: subprocess.Popen[str] | None = None
    stats: dict[str, Any] = {}
    try:
        _first_line(server, "listening")
        client = _popen_in(
            src,
            [
                sys.executable,
                "-c",
                STREAM_CLIENT,
                dst.ip,
                str(STREAM_PORT),
                str(STREAM_INTERVAL_S),
                str(stop_file),
                "90",
            ],
        )
        _first_line(client, "connected")
        yield stats
    finally:
        stop_file.touch()
        if client is not None:
            out, err = _reap(client, timeout=10)
            lines = out.strip().splitlines()
            stats.update(json.loads(lines[-1]) if lines else {"error": f"no stats: {err}"})
        _reap(server)


@contextlib.contextmanager
def route_monitor(node: Node) -> Iterator[list[str]]:
    """``ip monitor route link neigh`` in ``node`` (bounded to 120 s); the list gets
    every event line once the block ends."""
    proc = _popen_in(node, ["timeout", "120", "ip", "monitor", "route", "link", "neigh"])
    events: list[str] = []
    try:
        time.sleep(0.3)  # let it subscribe before anything happens
        yield events
    finally:
        time.sleep(0.3)  # let late events arrive
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        out, _ = _reap(proc)
        events.extend(line for line in out.splitlines() if line.strip())


NUD_STATES = {"PERMANENT", "NOARP", "REACHABLE", "STALE", "DELAY", "PROBE", "FAILED", "INCOMPLETE"}


def is_neighbour_event(line: str) -> bool:
    """``ip monitor`` neighbour lines carry an lladdr or end in a NUD state."""
    return " lladdr " in line or (line.split() or [""])[-1] in NUD_STATES


def two_node_cluster(
    cluster: Cluster, bin_dir: pathlib.Path, vxlan_mode: str = "Never", mtu: int = 1500
) -> tuple[Pod, Pod]:
    """Start both nodes and one pod on each."""
    pods = []
    for node in cluster.nodes:
        conf = start_tabby_node(
            cluster, node, bin_dir, vxlan_mode=vxlan_mode, mtu=mtu, extra_args=NO_BGP
        )
        pods.append(create_pod(node, f"{node.name}-p0", "default", conf, cni_path(node)))
    reachability_matrix(pods, deadline=20).assert_all_ok()
    return pods[0], pods[1]


@pytest.mark.parametrize("mode", ["direct-l2", "vxlan-l3"])
def test_felix_sigkill_keeps_established_pod_traffic_and_kernel_routes(
    bin_dir: pathlib.Path, mode: str
) -> None:
    """Felix SIGKILLed on node-0 and restarted by tabby-node: a TCP connection and a
    ping stream between pods on node-0 and node-1 lose nothing, and node-0's kernel
    sees no route, link or neighbour deleted (Felix adopts what it programmed before:
    routes, the pod's veth, and with VXLAN the tunnel device, its ARP and FDB)."""
    vxlan = mode == "vxlan-l3"
    topology = Cluster.l3((1, 1)) if vxlan else Cluster.l2(2)
    with topology as cluster:
        n0 = cluster.nodes[0]
        if vxlan:
            pod0, pod1 = two_node_cluster(cluster, bin_dir, "CrossSubnet", VXLAN_POD_MTU)
        else:
            pod0, pod1 = two_node_cluster(cluster, bin_dir)
        supervisor_log = tabby_node_daemon(n0)
        wait_for_log_count(supervisor_log, FELIX_READY, 1)
        before = proto80(n0)
        assert any(r.startswith(f"{pod0.ip} dev cali") for r in before), before
        remote = [r for r in before if r.startswith(f"{block_of(pod1.ip)} via")]
        assert remote, before
        if vxlan:
            assert f"dev {VXLAN_DEVICE} " in remote[0] and "onlink" in remote[0], remote
        old = service_pid(n0, FELIX)
        assert old is not None

        stop = cluster.tmp / "stream.stop"
        pinger = _popen_in(pod1, ["ping", "-i", "0.05", "-W", "1", "-w", "60", pod0.ip])
        try:
            with route_monitor(n0) as events, tcp_stream(pod0, pod1, stop) as stats:
                time.sleep(1.0)  # traffic flows before the kill
                killed_at = time.monotonic()
                os.kill(old, signal.SIGKILL)
                new = wait_service_pid(n0, FELIX, not_pid=old, timeout=30)
                wait_for_log_count(supervisor_log, FELIX_READY, 2, timeout=30)
                ready_s = time.monotonic() - killed_at
                time.sleep(2.5)  # two housekeeping applies after the restart
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pinger.pid, signal.SIGINT)
            ping_out, _ = _reap(pinger)
        print(f"felix restarted old_pid={old} new_pid={new} ready_after_s={ready_s:.2f}")
        print("tcp stream:", stats)
        print("ping:", ping_out.strip().splitlines()[-2:])
        print("kernel events on node-0:", *events, sep="\n  ")

        assert stats["error"] == "", stats
        assert stats["echoed"] == stats["sent"] > 50, stats
        assert stats["max_gap_ms"] < MAX_STALL_S * 1000, stats
        summary = next(line for line in ping_out.splitlines() if "packets transmitted" in line)
        sent, received = (int(summary.split()[i]) for i in (0, 3))
        assert sent > 50 and received == sent, summary
        deleted = [e for e in events if e.startswith("Deleted")]
        neighbours = [e for e in deleted if is_neighbour_event(e)]
        assert [e for e in deleted if e not in neighbours] == [], deleted  # routes, links
        assert proto80(n0) == before
        node_run = n0.state_dir / "run"
        n0.exec([str(bin_dir / "tabby-node"), "--health-check", f"--run-dir={node_run}"])
        if vxlan:  # the remote VTEP's static ARP entry is there after the restart
            arp = n0.exec(["ip", "-4", "neigh", "show", "dev", VXLAN_DEVICE]).stdout
            assert "PERMANENT" in arp, arp
        # The VXLAN device's neighbours survive a Felix restart (setting even an
        # unchanged MAC would make the kernel flush them, the VTEP's entry included).
        assert neighbours == [], neighbours


def test_cni_service_sigkill_restarted_pods_come_and_go(bin_dir: pathlib.Path) -> None:
    """The CNI service SIGKILLed on node-0 and restarted by tabby-node: a pod added
    afterwards gets an address and reaches the others, a pod added before the kill is
    deleted cleanly, and IPAM is consistent afterwards."""
    with Cluster.l2(2) as cluster:
        n0 = cluster.nodes[0]
        pod0, pod1 = two_node_cluster(cluster, bin_dir)
        supervisor_log = tabby_node_daemon(n0)
        old = service_pid(n0, CNI_SERVICE)
        assert old is not None
        os.kill(old, signal.SIGKILL)
        new = wait_service_pid(n0, CNI_SERVICE, not_pid=old, timeout=30)
        wait_for_log_count(supervisor_log, CNI_READY, 2, timeout=30)
        print(f"cni service restarted old_pid={old} new_pid={new}")

        conf = str(n0.state_dir / "net.d" / "10-tabby.conflist")
        fresh = create_pod(n0, "node-0-after", "default", conf, cni_path(n0))
        assert fresh.ip not in (pod0.ip, pod1.ip)
        matrix = reachability_matrix([pod0, pod1, fresh], deadline=20)
        print(matrix)
        matrix.assert_all_ok()

        delete_pod(pod0)  # made by the killed service's predecessor
        assert not find_routes(routes(n0), f"{pod0.ip}"), "stale /32 of the deleted pod"
        links = n0.exec(["ip", "-o", "link", "show"]).stdout
        assert len([ln for ln in links.splitlines() if ": cali" in ln]) == 1, links
        check = json.loads(tabbyctl(cluster, bin_dir, "ipam", "check", "-o", "json").stdout)
        assert check["ok"], check
        assert check["allocations_checked"] == 2, check  # pod1 and the fresh pod
        health = [
            str(bin_dir / "tabby-node"),
            "--health-check",
            f"--run-dir={n0.state_dir / 'run'}",
        ]
        deadline = time.monotonic() + 5  # a probe runs periodically; status.json is 1 s old
        while (probe := n0.exec(health, check=False)).returncode != 0:
            assert time.monotonic() < deadline, probe.stderr
            time.sleep(0.5)


def remove_node_and_watch_routes(
    bin_dir: pathlib.Path, extra_args: tuple[str, ...], within_s: float
) -> None:
    """node-2 drained, stopped and deleted (``tabbyctl delete node``); its block route
    must leave node-0 and node-1 within ``within_s``; the rest keeps working; the
    deletion gave back node-2's (empty) block, so IPAM is clean with nothing routed to
    node-2 any more."""
    with Cluster.l2(3) as cluster:
        n0, n1, n2 = cluster.nodes
        pods: dict[str, Pod] = {}
        for node in cluster.nodes:
            conf = start_tabby_node(cluster, node, bin_dir, extra_args=extra_args)
            pods[node.name] = create_pod(node, f"{node.name}-p0", "default", conf, cni_path(node))
        reachability_matrix(list(pods.values()), deadline=20).assert_all_ok()
        gone_block = block_of(pods["node-2"].ip)
        for node in (n0, n1):
            found = find_routes(routes(node), gone_block)
            assert found and found[0].get("gateway") == n2.ip, (node.name, found)

        # Drain (the pod goes through CNI DEL), then the node goes away.
        delete_pod(pods.pop("node-2"))
        tabby_node_daemon(n2).stop()
        for node in (n0, n1):  # an empty block keeps its route while the node exists
            assert find_routes(routes(node), gone_block), node.name
        started = time.monotonic()
        out = tabbyctl(cluster, bin_dir, "delete", "node", "node-2").stdout
        assert "Successfully deleted 1 'Node'" in out, out
        assert f"Released 1 IPAM block(s) of node node-2: {gone_block}" in out, out

        deadline = started + within_s
        left = {n.name: find_routes(routes(n), gone_block) for n in (n0, n1)}
        while any(left.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
            left = {n.name: find_routes(routes(n), gone_block) for n in (n0, n1)}
        withdrawn_s = time.monotonic() - started
        print(f"block {gone_block} of node-2 withdrawn in {withdrawn_s:.2f}s: {left}")
        assert not any(left.values()), f"{gone_block} still routed after {within_s}s: {left}"
        reachability_matrix(list(pods.values()), deadline=20).assert_all_ok()

        res = tabbyctl(cluster, bin_dir, "ipam", "check")
        assert "IPAM is consistent." in res.stdout, res.stdout
        time.sleep(1.5)  # a housekeeping pass later, still no route to node-2
        for node in (n0, n1):
            assert not find_routes(routes(node), gone_block), node.name
            assert not [r for r in routes(node) if r.get("gateway") == n2.ip], node.name


def test_removed_node_block_routes_withdrawn_everywhere(bin_dir: pathlib.Path) -> None:
    """Nodes configured as Felix's README says for BGP-less clusters: the removed
    node's block route leaves every other node within 5 s of ``tabbyctl delete node``."""
    remove_node_and_watch_routes(bin_dir, NO_BGP, within_s=5.0)


def test_removed_node_routes_withdrawn_with_tabby_node_defaults(bin_dir: pathlib.Path) -> None:
    """The same with tabby-node's defaults, as the DaemonSet runs it."""
    remove_node_and_watch_routes(bin_dir, (), within_s=5.0)
