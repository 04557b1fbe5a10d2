"""Felix as a whole: etcd resources in, kernel state out.

A real etcd, real ``tabby-felix`` processes (run in this namespace, programming a
node namespace via ``--dataplane-netns``), real IPAM allocations and the real kernel.
Nodes and pods are namespaces created here with a random suffix; every namespace,
process and temp file is removed also when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from datastore.etcd import EtcdStore
from datastore.etcd_fixture import EtcdServer, free_port
from datastore.resources import ResourceStore
from felix.calc.testing import felix_config, node, pool, wep
from felix.netlink.testns import have_root_netns_tools, ip, temp_netns
from ipam.client import AutoAssignRequest, IPAMClient
from model.resources import Node, WorkloadEndpoint

pytest_plugins = ["datastore.etcd_fixture"]  # the module-scoped etcd_server fixture

pytestmark = pytest.mark.skipif(
    have_root_netns_tools() is not None, reason=str(have_root_netns_tools())
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAIT = 15.0
POOL = "10.65.0.0/16"


def _poll(pred: Callable[[], object], timeout: float) -> object:
    """What ``pred`` returns once it is truthy (polled, bounded); False on timeout."""
    deadline = time.monotonic() + timeout
    while not (got := pred()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return got


def wait_for(
    pred: Callable[[], object],
    what: str,
    timeout: float = WAIT,
    why: Callable[[], str] = lambda: "",
) -> object:
    """Like ``_poll``, but a timeout fails the test naming ``what`` (and ``why()``)."""
    got = _poll(pred, timeout)
    if not got:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{why()}")
    return got


class Felix:
    """One ``tabby-felix`` process for one node, programming that node's namespace."""

    def __init__(self, node_name: str, netns: str, endpoint: str, tmp: str) -> None:
        self.node_name, self.netns, self.endpoint = node_name, netns, endpoint
        self.dir = os.path.join(tmp, node_name)
        os.makedirs(self.dir, exist_ok=True)
        self.socket = os.path.join(self.dir, "felix.sock")
        self.mtu_file = os.path.join(self.dir, "mtu")
        self.log_path = os.path.join(self.dir, "felix.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.health_port = 0

    def start(self) -> Felix:
        self.health_port = free_port()
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "felix.daemon.main", "--node-name", self.node_name,
                 "--etcd-endpoints", self.endpoint, "--socket", self.socket,
                 "--health-port", str(self.health_port), "--dataplane-netns", self.netns,
                 "--mtu-file", self.mtu_file, "--learned-routes-grace", "0",
                 "--housekeeping-interval", "0.5"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
            )  # fmt: skip
        return self

    def log(self, tail: int | None = 6000) -> str:
        with open(self.log_path) as f:
            text = f.read()
        return text[-tail:] if tail else text

    def ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, f"felix exited:\n{self.log()}"
        try:
            url = f"http://127.0.0.1:{self.health_port}/readiness"
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    def metric(self, name: str) -> float | None:
        """One value from /metrics (None when absent or felix does not answer)."""
        try:
            url = f"http://127.0.0.1:{self.health_port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as r:
                text = r.read().decode()
        except (urllib.error.URLError, ConnectionError):
            return None
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return float(value)
        return None

    def wait_ready(self) -> None:
        wait_for(self.ready, f"felix {self.node_name} ready", why=self.log)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def cluster(etcd_server: EtcdServer) -> Iterator[Cluster]:
    """A clean datastore, a temp dir, and whatever felixes the test starts (always stopped)."""
    kv = EtcdStore([etcd_server.endpoint])
    for kvp in kv.list("/")[0]:  # the etcd is per module: start from nothing
        kv.delete(kvp.key)
    c = Cluster(etcd_server.endpoint, kv, ResourceStore(kv), IPAMClient(kv), [], "")
    with tempfile.TemporaryDirectory(prefix="tfi-") as tmp:
        c.tmp = tmp
        try:
            yield c
        finally:
            for f in c.felixes:
                f.stop()
                print(f"--- felix {f.node_name} log (tail) ---\n{f.log()}")  # shown on failure
            kv.close()


@dataclass
class Cluster:
    endpoint: str
    kv: EtcdStore
    res: ResourceStore
    ipam: IPAMClient
    felixes: list[Felix]
    tmp: str

    def felix(self, node_name: str, netns: str) -> Felix:
        f = Felix(node_name, netns, self.endpoint, self.tmp)
        self.felixes.append(f)
        return f.start()

    def assign(self, handle: str, node_name: str) -> str:
        """One IPv4 address from IPAM, as the CNI plugin would get it."""
        got = self.ipam.auto_assign(AutoAssignRequest(handle=handle, node=node_name))
        return str(got.ipv4[0].ip)

    def add_node(self, name: str, addr: str, mac: str) -> Node:
        """A Node with its VXLAN tunnel address allocated from IPAM (as Calico does)."""
        tunnel = self.assign(f"vxlan-tunnel-addr-{name}", name)
        return self.res.create(node(name, addr, vxlan=(tunnel, mac)))

    def add_pod(self, pod: str, node_name: str, iface: str) -> tuple[str, WorkloadEndpoint]:
        pod_ip = self.assign(f"k8s-pod-network.{pod}", node_name)
        return pod_ip, self.res.create(wep("default", pod, node_name, f"{pod_ip}/32", iface=iface))


def plumb_pod(node_ns: str, pod_ns: str, host_if: str, pod_ip: str, mtu: int = 0) -> None:
    """What Calico's CNI plugin does: veth, pod /32, default via 169.254.1.1 (proxy ARP).

    The host end is left down: bringing it up and setting proxy ARP is Felix's job.
    """
    ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", pod_ns,
       netns=node_ns)  # fmt: skip
    ip("addr", "add", f"{pod_ip}/32", "dev", "eth0", netns=pod_ns)
    ip("link", "set", "eth0", "up", *(["mtu", str(mtu)] if mtu else []), netns=pod_ns)
    ip("route", "add", "169.254.1.1", "dev", "eth0", "scope", "link", netns=pod_ns)
    ip("route", "add", "default", "via", "169.254.1.1", "dev", "eth0", netns=pod_ns)


def uplink(node_ns: str, far_ns: str, far_if: str, node_addr: str, gw: str, mtu: int) -> None:
    """eth0 in the node, ``far_if`` (holding ``gw``) in the router/LAN namespace."""
    ip("link", "add", far_if, "type", "veth", "peer", "name", "eth0", "netns", node_ns,
       netns=far_ns)  # fmt: skip
    plen = node_addr.split("/")[1]
    ip("addr", "add", f"{gw}/{plen}", "dev", far_if, netns=far_ns)
    ip("link", "set", far_if, "up", "mtu", str(mtu), netns=far_ns)
    ip("addr", "add", node_addr, "dev", "eth0", netns=node_ns)
    ip("link", "set", "eth0", "up", "mtu", str(mtu), netns=node_ns)
    ip("route", "add", "default", "via", gw, netns=node_ns)


def routes(ns: str, *sel: str) -> set[str]:
    """``ip route show`` lines (normalised whitespace) in ``ns``."""
    return {" ".join(line.split()) for line in ip("route", "show", *sel, netns=ns).splitlines()}


def has_routes(ns: str, want: set[str], *sel: str) -> Callable[[], bool]:
    return lambda: want <= routes(ns, *sel)


def read_file(path: str) -> str:
    """The file's text, or "" while it does not exist yet."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def sysctl(ns: str, path: str) -> str:
    out = subprocess.run(["ip", "netns", "exec", ns, "cat", f"/proc/sys/{path}"],
                         capture_output=True, text=True, timeout=10)  # fmt: skip
    return out.stdout.strip()


@contextlib.contextmanager
def route_monitor(ns: str) -> Iterator[Callable[[], list[str]]]:
    """``ip monitor route`` in ``ns``; yields a function returning the events so far.

    Attachment is proven with a sentinel route (added and deleted here) before the body
    runs, so an empty result really means "no route changes".
    """
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(["ip", "-n", ns, "monitor", "route"], stdout=out, text=True)
        try:
            sentinel = "198.51.100.77"  # TEST-NET-2, inside this namespace only

            def events() -> list[str]:
                out.seek(0)
                return [ln for ln in out.read().splitlines() if ln.strip()]

            # `ip monitor` subscribes a moment after it starts: repeat the sentinel
            # (bounded) until one is seen, then wait for its removal to show too.
            for _ in range(20):
                ip("route", "add", "blackhole", sentinel, netns=ns)
                seen = any(sentinel in e for e in events()) or bool(
                    _poll(lambda: any(sentinel in e for e in events()), 0.5)
                )
                ip("route", "del", "blackhole", sentinel, netns=ns)
                if seen:
                    break
            else:
                raise AssertionError("ip monitor never reported the sentinel route")
            wait_for(lambda: "Deleted" in events()[-1], "ip monitor saw the sentinel removal")
            start = len(events())
            yield lambda: events()[start:]
        finally:
            proc.terminate()
            proc.wait(5)


# --- one node, routes of every kind ---------------------------------------------------


@pytest.fixture
def lan() -> Iterator[tuple[str, str, str]]:
    """node-a's namespace on a /24 with a gateway namespace, and one pod namespace."""
    with temp_netns("tfia") as node_ns, temp_netns("tfil") as lan_ns, temp_netns("tfip") as pod:
        uplink(node_ns, lan_ns, "lan0", "10.0.1.5/24", "10.0.1.1", 1500)
        yield node_ns, lan_ns, pod


def test_routes_follow_the_datastore_foreign_kept_restart_quiet_resync_repairs(cluster, lan):
    node_ns, _lan_ns, pod_ns = lan
    c = cluster
    # A route felix does not own, inside the pool's address space.
    ip("route", "add", "10.65.200.0/24", "via", "10.0.1.1", "proto", "static", netns=node_ns)
    foreign = "10.65.200.0/24 via 10.0.1.1 dev eth0 proto static"

    c.res.create(felix_config("default", route_refresh_interval="2s"))
    c.res.create(pool("default-pool", POOL, vxlan="CrossSubnet"))
    c.add_node("node-a", "10.0.1.5/24", "66:00:00:00:00:0a")
    c.add_node("node-b", "10.0.1.6/24", "66:00:00:00:00:0b")  # same subnet: direct
    cn = c.add_node("node-c", "10.0.2.7/24", "66:00:00:00:00:0c")  # other subnet: VXLAN
    c.add_pod("pod-b", "node-b", "calib0")
    c.add_pod("pod-c", "node-c", "calic0")
    blocks = {kv.key.rsplit("/", 1)[1] for kv in c.kv.list("/tabby/ipam/v1/blocks/")[0]}
    assert blocks == {"10.65.0.0-26", "10.65.0.64-26", "10.65.0.128-26"}, blocks
    expected = {
        "blackhole 10.65.0.0/26 proto 80",
        "10.65.0.64/26 via 10.0.1.6 dev eth0 proto 80",
        f"10.65.0.128/26 via {cn.spec.ipv4_vxlan_tunnel_addr} dev vxlan.tabby proto 80 onlink",
    }

    felix = c.felix("node-a", node_ns)
    felix.wait_ready()
    wait_for(has_routes(node_ns, expected), "block routes", why=lambda: routes(node_ns))
    dev = ip("-d", "link", "show", "vxlan.tabby", netns=node_ns)
    assert "vxlan id 4096" in dev and "mtu 1450" in dev, dev
    with open(felix.mtu_file) as f:
        assert f.read().strip() == "1450"

    # A pod arrives. Its endpoint is written before the veth exists (a slow runtime,
    # or a restarted felix racing the CNI plugin): with no further datastore event,
    # the housekeeping apply must still find the veth. Its /32 appears, the veth is up.
    pod_ip = c.assign("k8s-pod-network.pod-a", "node-a")
    c.res.create(wep("default", "pod-a", "node-a", f"{pod_ip}/32", iface="calia0"))
    time.sleep(0.5)  # felix has seen the endpoint and found no interface
    plumb_pod(node_ns, pod_ns, "calia0", pod_ip)
    pod_route = f"{pod_ip} dev calia0 proto 80 scope link"
    wait_for(has_routes(node_ns, {pod_route}), "pod route", why=lambda: routes(node_ns))
    assert sysctl(node_ns, "net/ipv4/conf/calia0/proxy_arp") == "1"
    [veth] = json.loads(ip("-j", "link", "show", "calia0", netns=node_ns))
    assert "UP" in veth["flags"], veth
    assert foreign in routes(node_ns)
    ours = [r for r in routes(node_ns) if " proto 80" in r]
    wait_for(
        lambda: felix.metric("tabby_felix_routes_programmed") == len(ours),
        "routes_programmed metric matches the kernel",
        why=lambda: f"{felix.metric('tabby_felix_routes_programmed')} != {len(ours)}: {ours}",
    )

    # Deleted by hand: back after the next periodic resync (routeRefreshInterval 2s).
    ip("route", "del", "10.65.0.64/26", "proto", "80", netns=node_ns)
    assert "10.65.0.64/26 via 10.0.1.6 dev eth0 proto 80" not in routes(node_ns)
    wait_for(has_routes(node_ns, expected), "resync to restore the route", timeout=6)

    # Restart with nothing changed: not one route message, through a full resync too.
    before = routes(node_ns)
    felix.stop()
    with route_monitor(node_ns) as events:
        felix.start()
        felix.wait_ready()
        time.sleep(3.0)  # > routeRefreshInterval: the periodic resync also finds nothing
        # The kernel's own routes (IPv6 link-local on a veth that came up a moment
        # ago, finishing address configuration now) are not route changes anyone made.
        made = [e for e in events() if "proto kernel" not in e]
        assert made == [], events()
    assert routes(node_ns) == before

    # Resources go, routes go; the foreign route and the rest stay.
    c.res.delete(WorkloadEndpoint, "node-a-k8s-pod-a-eth0", "default")
    c.ipam.release_by_handle("k8s-pod-network.pod-a")
    wait_for(lambda: pod_route not in routes(node_ns), "pod route removal")
    # node-c leaves: its VTEP goes first (IPAM garbage collection comes later), and
    # the route into the tunnel must not outlive the tunnel's neighbour entries.
    vx = f"10.65.0.128/26 via {cn.spec.ipv4_vxlan_tunnel_addr} dev vxlan.tabby proto 80 onlink"
    c.res.delete(WorkloadEndpoint, "node-c-k8s-pod-c-eth0", "default")
    c.res.delete(Node, "node-c")
    wait_for(lambda: vx not in routes(node_ns), "VXLAN route removal", why=lambda: routes(node_ns))
    for handle in ("k8s-pod-network.pod-c", "vxlan-tunnel-addr-node-c"):
        c.ipam.release_by_handle(handle)
    c.ipam.release_node_affinities("node-c")

    # node-b leaves while felix is down: the route it left behind goes after InSync.
    felix.stop()
    c.res.delete(WorkloadEndpoint, "node-b-k8s-pod-b-eth0", "default")
    for handle in ("k8s-pod-network.pod-b", "vxlan-tunnel-addr-node-b"):
        c.ipam.release_by_handle(handle)
    c.ipam.release_node_affinities("node-b")
    c.res.delete(Node, "node-b")
    assert "10.65.0.64/26 via 10.0.1.6 dev eth0 proto 80" in routes(node_ns)
    felix.start()
    wait_for(
        lambda: routes(node_ns, "proto", "80") == {"blackhole 10.65.0.0/26"},
        "only the local block left",
        why=lambda: routes(node_ns),
    )
    assert foreign in routes(node_ns)
    # A normal life (start, pods, restart, removals) logs no warnings and no errors.
    full = felix.log(tail=None)
    noisy = [ln for ln in full.splitlines() if " WARNING " in ln or " ERROR " in ln]
    assert noisy == [] and "Traceback" not in full, felix.log()

    # A FelixConfiguration change the dataplane depends on: felix exits cleanly for its
    # supervisor (the DaemonSet) to restart it with the new value; routes stay.
    c.res.apply(felix_config("default", route_refresh_interval="5s"))
    proc = felix.proc
    assert proc is not None
    assert proc.wait(10) == 0, felix.log()
    assert "configuration changed; exiting to restart with it fields=resync_interval" in (
        felix.log()
    )
    assert "blackhole 10.65.0.0/26 proto 80" in routes(node_ns)


# --- two nodes in different subnets, pods talk through VXLAN ----------------------------

UPLINK_MTU = 1400


@pytest.fixture
def routed() -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """node-a (10.1.0.2/24) and node-b (10.2.0.2/24) behind a router namespace; a pod
    namespace for each (plumbed later, once felix has published the MTU)."""
    with contextlib.ExitStack() as stack:
        router = stack.enter_context(temp_netns("tfir"))
        ip("netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        nodes, pods = {}, {}
        for i, name in enumerate(("node-a", "node-b"), start=1):
            nodes[name] = stack.enter_context(temp_netns("tfin"))
            pods[name] = stack.enter_context(temp_netns("tfip"))
            uplink(nodes[name], router, f"r{i}", f"10.{i}.0.2/24", f"10.{i}.0.1", UPLINK_MTU)
        yield nodes, pods


def ping(ns: str, dst: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "2",
                           *extra, dst], capture_output=True, text=True, timeout=20)  # fmt: skip


def test_pods_on_nodes_in_different_subnets_reach_each_other_through_vxlan(cluster, routed):
    nodes, pods = routed
    c = cluster
    c.res.create(pool("vxlan-pool", "10.66.0.0/16", vxlan="CrossSubnet"))
    macs = {"node-a": "66:00:00:00:01:0a", "node-b": "66:00:00:00:01:0b"}
    for i, name in enumerate(nodes, start=1):
        c.add_node(name, f"10.{i}.0.2/24", macs[name])
    felixes = {name: c.felix(name, ns) for name, ns in nodes.items()}
    for f in felixes.values():
        f.wait_ready()

    # The CNI plugin reads the MTU felix published, then plumbs the pod and writes its WEP.
    pod_ips = {}
    for name, f in felixes.items():
        mtu = int(wait_for(lambda f=f: read_file(f.mtu_file), f"{name} mtu file", why=f.log))
        assert mtu == UPLINK_MTU - 50
        dev = ip("-d", "link", "show", "vxlan.tabby", netns=nodes[name])
        assert f"mtu {UPLINK_MTU - 50}" in dev and "vxlan id 4096" in dev, dev
        iface = f"cali{name[-1]}0"
        pod_ips[name] = c.assign(f"k8s-pod-network.pod-{name}", name)
        plumb_pod(nodes[name], pods[name], iface, pod_ips[name], mtu)
        c.res.create(wep("default", f"pod-{name[-1]}", name, f"{pod_ips[name]}/32", iface=iface))

    for name in nodes:
        want = {f"{pod_ips[name]} dev cali{name[-1]}0 proto 80 scope link"}
        wait_for(has_routes(nodes[name], want), f"{name} pod route",
                 why=lambda n=name: routes(nodes[n]))  # fmt: skip
        block = [r for r in routes(nodes[name], "proto", "80") if "vxlan.tabby" in r]
        assert len(block) == 1 and "onlink" in block[0], routes(nodes[name])

    for name, other in (("node-a", "node-b"), ("node-b", "node-a")):
        res = ping(pods[name], pod_ips[other])
        assert res.returncode == 0, f"{name} -> {other}: {res.stdout}{res.stderr}"
    # Full-size packets at the published MTU pass with DF set: the MTU is right.
    big = ping(pods["node-a"], pod_ips["node-b"], "-M", "do", "-s", str(UPLINK_MTU - 50 - 28))
    assert big.returncode == 0, big.stdout + big.stderr
    # ... and they really went through the tunnel (the VXLAN devices counted them).
    for ns in nodes.values():
        [dev] = json.loads(ip("-s", "-j", "link", "show", "vxlan.tabby", netns=ns))
        assert dev["stats64"]["rx"]["packets"] >= 8 and dev["stats64"]["tx"]["packets"] >= 8


def test_missing_dataplane_namespace_fails_fast_naming_it(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "felix.daemon.main", "--node-name", "node-a",
         "--etcd-endpoints", "http://127.0.0.1:9", "--socket", str(tmp_path / "f.sock"),
         "--health-port", "0", "--dataplane-netns", "tfi-absent"],
        capture_output=True, text=True, timeout=30, env=env, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "--dataplane-netns 'tfi-absent': /run/netns/tfi-absent does not exist" in proc.stderr
    assert not (tmp_path / "f.sock").exists()
