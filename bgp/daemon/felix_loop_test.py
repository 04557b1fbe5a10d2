"""Cluster mode end to end on loopback: real etcd, two real ``tabby-felix`` processes
(--no-dataplane) and two ``tabby-bgpd --felix-socket`` peering over 127.0.0.x.

What a user would notice: the nodes peer by themselves (mesh from Felix), each learns
the other's block with the owner as next hop and hands it to Felix (Felix's
``learned_route_messages_total``), a Felix restart neither flaps the session nor loses
the table (it is re-pushed), and peers follow the datastore live (a removed node's
session and routes go; a new BGPPeer appears).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator

import grpc
import pytest

from datastore import keys
from datastore.etcd import EtcdStore
from datastore.etcd_fixture import EtcdServer, free_port
from felix.calc.testing import bgp_config, bgp_peer, node
from ipam.testing import put_block, put_typed
from proto import bgp_admin_pb2, bgp_admin_pb2_grpc

pytest_plugins = ["datastore.etcd_fixture"]
pytestmark = pytest.mark.timeout(120)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N1, N2 = "127.0.0.21", "127.0.0.22"
# Daemons die with this test process even when it is killed first (no orphans).
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"]


def wait(what: str, probe: Callable[[], object], timeout: float = 20.0, *logs: Proc) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in logs)
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


class Proc:
    def __init__(self, name: str, argv: list[str], tmp: str) -> None:
        self.name = name
        self.log_path = os.path.join(tmp, f"{name}.log")
        self._log = open(self.log_path, "a")  # noqa: SIM115 (closed in stop)
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [*DIE_WITH_PARENT, sys.executable, "-m", *argv],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class NodeProcs:
    def __init__(self, name: str, etcd: str, tmp: str) -> None:
        self.name, self.etcd, self.tmp = name, etcd, tmp
        self.felix_sock = os.path.join(tmp, f"{name}-felix.sock")
        self.admin_sock = os.path.join(tmp, f"{name}-bgpd.sock")
        self.health_port = free_port()
        self.bgpd_metrics_port = free_port()
        self.felix: Proc | None = None
        self.bgpd: Proc | None = None

    def start_felix(self) -> None:
        self.felix = Proc(
            f"{self.name}-felix",
            ["felix.daemon.main", "--node-name", self.name, "--etcd-endpoints", self.etcd,
             "--socket", self.felix_sock, "--health-port", str(self.health_port),
             "--no-dataplane"],
            self.tmp,
        )  # fmt: skip

    def start_bgpd(self) -> None:
        self.bgpd = Proc(
            f"{self.name}-bgpd",
            ["bgp.daemon.main", "--felix-socket", self.felix_sock,
             "--admin-socket", self.admin_sock, "--listen-address", "node",
             "--connect-retry-time", "1", "--eor-deferral", "5",
             "--metrics-port", str(self.bgpd_metrics_port)],
            self.tmp,
        )  # fmt: skip

    def metric(self, name: str) -> int:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/metrics", timeout=2
            ) as r:
                text = r.read().decode()
        except OSError:
            return -1
        m = re.search(rf"^\S*{name}\S* (\d+(?:\.\d+)?)$", text, re.M)
        return int(float(m[1])) if m else -1

    def bgpd_metrics(self) -> dict[str, float]:
        """tabby-bgpd's own /metrics, as {'name{labels}': value} (empty when unreachable)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.bgpd_metrics_port}/metrics", timeout=2
            ) as r:
                text = r.read().decode()
        except OSError:
            return {}
        return {
            k: float(v)
            for k, v in (ln.rsplit(" ", 1) for ln in text.splitlines() if ln and ln[0] != "#")
        }

    def admin(self):
        channel = grpc.insecure_channel(f"unix:{self.admin_sock}")
        return bgp_admin_pb2_grpc.BgpAdminStub(channel), channel

    def peers(self) -> dict[str, bgp_admin_pb2.PeerStatus]:
        if not os.path.exists(self.admin_sock):
            return {}
        stub, channel = self.admin()
        with channel:
            try:
                reply = stub.ListPeers(bgp_admin_pb2.ListPeersRequest(), timeout=2)
            except grpc.RpcError:
                return {}
        return {p.address: p for p in reply.peers}

    def rib(self) -> dict[str, bgp_admin_pb2.RibEntry]:
        if not os.path.exists(self.admin_sock):
            return {}
        stub, channel = self.admin()
        with channel:
            try:
                reply = stub.ListRib(bgp_admin_pb2.ListRibRequest(), timeout=2)
            except grpc.RpcError:
                return {}
        return {e.prefix: e for e in reply.entries if e.best}

    def procs(self) -> list[Proc]:
        return [p for p in (self.felix, self.bgpd) if p is not None]

    def stop(self) -> None:
        for p in self.procs():
            p.stop()


@pytest.fixture
def cluster(etcd_server: EtcdServer) -> Iterator[tuple[EtcdStore, list[NodeProcs]]]:
    store = EtcdStore([etcd_server.endpoint])
    for prefix in (keys.RESOURCES, keys.IPAM):
        for kv in store.list(prefix)[0]:
            store.delete(kv.key)
    with tempfile.TemporaryDirectory(prefix="tbgp-") as tmp:
        nodes = [NodeProcs(n, etcd_server.endpoint, tmp) for n in ("n1", "n2")]
        try:
            yield store, nodes
        finally:
            for n in nodes:
                n.stop()
            store.close()


def test_mesh_from_felix_routes_back_to_felix_felix_restart_and_live_peers(cluster):
    store, (n1, n2) = cluster
    port = free_port()
    put_typed(store, bgp_config(listen_port=port))
    put_typed(store, node("n1", f"{N1}/8"))
    put_typed(store, node("n2", f"{N2}/8"))
    put_block(store, "10.244.1.0/26", "n1")
    put_block(store, "10.244.2.0/26", "n2")
    for n in (n1, n2):
        n.start_felix()
        n.start_bgpd()
    logs = [p for n in (n1, n2) for p in n.procs()]

    # The mesh comes from Felix: each speaker peers with the other node.
    def up(n: NodeProcs, ip: str) -> bool:
        p = n.peers().get(ip)
        return p is not None and p.state == "Established"

    wait("mesh established", lambda: up(n1, N2) and up(n2, N1), 30, *logs)
    assert n1.peers()[N2].type == "mesh"
    # Each node's block is learned by the other with the owner as next hop ...
    wait("n1 learns n2's block", lambda: "10.244.2.0/26" in n1.rib(), 10, *logs)
    wait("n2 learns n1's block", lambda: "10.244.1.0/26" in n2.rib(), 10, *logs)
    assert n1.rib()["10.244.2.0/26"].next_hop == N2

    # The DaemonSet's speaker is scrapeable: /metrics says what `tabbyctl bgp peers` says.
    labels = f'{{peer="{N2}",asn="{n1.peers()[N2].as_number}"}}'
    scraped = wait("cluster-mode metrics", lambda: n1.bgpd_metrics().get(
        f"tabby_bgp_peer_prefixes_received{labels}"), 10, *logs)  # fmt: skip
    status = n1.peers()[N2]
    metrics = n1.bgpd_metrics()
    assert scraped == status.prefixes_received == 1
    assert metrics[f"tabby_bgp_peer_up{labels}"] == 1
    assert metrics[f"tabby_bgp_peer_prefixes_accepted{labels}"] == status.prefixes_accepted
    assert metrics[f"tabby_bgp_peer_prefixes_advertised{labels}"] == status.prefixes_advertised
    assert metrics['tabby_bgp_loc_rib_prefixes{afi="ipv4"}'] == 2
    assert n1.rib()["10.244.2.0/26"].from_peer == N2
    assert n2.rib()["10.244.1.0/26"].next_hop == N1
    # ... and pushed to Felix (route + end-of-rib at least).
    wait("felix n1 got learned routes", lambda: n1.metric("learned_route_messages_total") >= 2,
         10, *logs)  # fmt: skip
    assert n1.bgpd is not None
    wait("end-of-rib pushed", lambda: "learned routes end-of-rib sent" in n1.bgpd.log(), 10, *logs)

    # SIGHUP is logged and ignored (its default action would kill the speaker).
    since = n1.peers()[N2].established_since_unix
    n1.bgpd.proc.send_signal(signal.SIGHUP)
    wait("SIGHUP ignored", lambda: "SIGHUP ignored" in n1.bgpd.log(), 10, *logs)
    assert n1.bgpd.proc.poll() is None

    # Felix restarts: bgpd resubscribes, the session does not flap, the table is re-pushed.
    assert n1.felix is not None
    n1.felix.stop()
    n1.start_felix()
    logs = [p for n in (n1, n2) for p in n.procs()]
    wait("bgpd resubscribed", lambda: n1.bgpd.log().count("felix in sync") >= 2, 30, *logs)
    wait("table re-pushed to the new felix",
         lambda: n1.metric("learned_route_messages_total") >= 2, 15, *logs)  # fmt: skip
    assert n1.peers()[N2].established_since_unix == since
    assert up(n1, N2)

    # A new BGPPeer appears live; removing node n2 takes its session and routes away.
    put_typed(store, bgp_peer("tor", peer_ip="127.0.0.29", as_number=65000))
    wait("global peer added", lambda: "127.0.0.29" in n1.peers(), 10, *logs)
    assert n1.peers()["127.0.0.29"].type == "global"
    assert n1.peers()["127.0.0.29"].as_number == 65000
    assert n1.peers()[N2].established_since_unix == since  # untouched by the addition
    store.delete(keys.resource_key("nodes", "n2"))
    wait("n2 peer removed", lambda: N2 not in n1.peers(), 10, *logs)
    wait("n2's block withdrawn", lambda: "10.244.2.0/26" not in n1.rib(), 10, *logs)
    assert "10.244.1.0/26" in n1.rib()  # our own block stays
