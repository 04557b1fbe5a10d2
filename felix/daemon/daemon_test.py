"""tabby-felix end to end: a real etcd, the real daemon process, a gRPC client.

Writes resources to etcd, expects them on CalcGraph.Subscribe as a snapshot then
InSync, then live updates and removals; checks WaitReady, a late subscriber, a value
that does not parse, and the health/metrics endpoints. Runs with --no-dataplane: the
kernel side is tested by felix/dataplane.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import grpc
import pytest

from datastore import keys
from datastore.etcd import EtcdStore
from datastore.etcd_fixture import EtcdServer, free_port
from felix.calc import messages
from felix.calc.testing import bgp_peer, node, pool, wep
from ipam.testing import put_block, put_typed
from proto import calc_pb2, felix_services_pb2, felix_services_pb2_grpc

pytest_plugins = ["datastore.etcd_fixture"]  # the etcd_server fixture

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WAIT = 20.0


class Felix:
    def __init__(self, endpoint: str, tmp: str) -> None:
        self.socket = os.path.join(tmp, "felix.sock")
        self.health_port = free_port()
        self.log_path = os.path.join(tmp, "felix.log")
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "felix.daemon.main", "--node-name", "node-a",
             "--etcd-endpoints", endpoint, "--socket", self.socket,
             "--health-port", str(self.health_port), "--no-dataplane"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )  # fmt: skip
        deadline = time.monotonic() + WAIT
        while not os.path.exists(self.socket):
            assert self.proc.poll() is None, f"felix exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"no socket:\n{self.log()}"
            time.sleep(0.05)
        self.channel = grpc.insecure_channel(f"unix:{self.socket}")

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}{path}", timeout=5
            ) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stop(self) -> None:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def felix(etcd_server: EtcdServer) -> Iterator[tuple[Felix, EtcdStore]]:
    store = EtcdStore([etcd_server.endpoint])
    for prefix in (keys.RESOURCES, keys.IPAM):  # the etcd is per module: start clean
        for kv in store.list(prefix)[0]:
            store.delete(kv.key)
    with tempfile.TemporaryDirectory(prefix="tfx-") as tmp:
        f = Felix(etcd_server.endpoint, tmp)
        try:
            yield f, store
        finally:
            f.stop()
            store.close()


class Stream:
    def __init__(self, channel: grpc.Channel, name: str) -> None:
        stub = felix_services_pb2_grpc.CalcGraphStub(channel)
        self.call = stub.Subscribe(felix_services_pb2.SubscribeRequest(subscriber=name))
        self.seen: list[calc_pb2.ToDataplane] = []

    def until(self, pred, what: str) -> list[calc_pb2.ToDataplane]:
        """Read until ``pred(messages so far)``; the stream's own deadline is WAIT."""
        start = len(self.seen)
        deadline = time.monotonic() + WAIT
        for msg in self.call:
            self.seen.append(msg)
            if pred(self.seen[start:]):
                return self.seen[start:]
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
        raise AssertionError(f"stream ended waiting for {what}")


def has(category: str, key, value_pred=lambda v: True):
    def pred(msgs):
        st = messages.fold(msgs)
        return (category, key) in st and value_pred(st[(category, key)])

    return pred


def removed(category: str, key):
    def pred(msgs):
        return any(
            (c := messages.classify(m)) and c[:2] == (category, key) and c[2] is None for m in msgs
        )

    return pred


def test_snapshot_insync_live_updates_and_removals(felix):
    f, store = felix
    put_typed(store, node("node-a", "10.0.1.5/24", vxlan=("10.65.0.1", "66:00:00:00:00:0a")))
    put_typed(store, node("node-b", "10.0.2.6/24", vxlan=("10.65.0.65", "66:00:00:00:00:0b")))
    put_typed(store, pool("default-pool", "10.65.0.0/16", vxlan="CrossSubnet"))
    put_block(store, "10.65.0.0/26", "node-a")
    put_block(store, "10.65.0.64/26", "node-b")
    put_typed(store, wep("default", "pod", "node-a", "10.65.0.2/32"))

    stream = Stream(f.channel, "test")
    snap = stream.until(lambda ms: ms[-1].HasField("in_sync"), "InSync")
    assert [m.sequence_number for m in snap] == list(range(1, len(snap) + 1))
    state = messages.fold(snap)
    remote = state[(messages.ROUTE, "10.65.0.64/26")]
    assert (remote.dst_node_ip, remote.encap) == ("10.0.2.6", calc_pb2.ENCAP_TYPE_VXLAN)
    assert state[(messages.ROUTE, "10.65.0.0/26")].advertise
    assert (messages.VTEP, "node-b") in state
    assert state[(messages.BGP_PEER, "10.0.2.6")].type == calc_pb2.MESH
    kinds = [m.WhichOneof("payload") for m in snap]
    assert kinds.index("vtep_update") < kinds.index("route_update")
    assert not [k for k in kinds if k.endswith("_remove")]

    # The endpoint's routes were "applied" (no managers): WaitReady says yes.
    status = felix_services_pb2_grpc.EndpointStatusStub(f.channel)
    reply = status.WaitReady(felix_services_pb2.EndpointReadyRequest(
        id=calc_pb2.WorkloadEndpointID(orchestrator_id="k8s", workload_id="default/pod",
                                       endpoint_id="eth0"), timeout_ms=5000))  # fmt: skip
    assert (reply.ready, reply.reason) == (True, "")
    reply = status.WaitReady(felix_services_pb2.EndpointReadyRequest(
        id=calc_pb2.WorkloadEndpointID(orchestrator_id="k8s", workload_id="default/nope",
                                       endpoint_id="eth0"), timeout_ms=200))  # fmt: skip
    assert not reply.ready and "default/nope" in reply.reason

    # Live: a new node and its block, a peer; then removals.
    put_typed(store, node("node-c", "10.0.1.7/24"))
    put_block(store, "10.65.0.128/26", "node-c")
    put_typed(store, bgp_peer("tor", peer_ip="10.0.1.1", as_number=65000))
    # Resources and blocks are separate watches: the block may arrive before its node,
    # and the route is first sent without the node's address. It must converge to:
    live = stream.until(
        has(messages.ROUTE, "10.65.0.128/26", lambda r: r.dst_node_ip == "10.0.1.7"),
        "node-c's block with node-c's address",
    )
    assert messages.fold(live)[(messages.ROUTE, "10.65.0.128/26")].encap == (
        calc_pb2.ENCAP_TYPE_NONE  # same subnet: direct
    )
    stream.until(has(messages.BGP_PEER, "10.0.1.1"), "the tor peer")
    store.delete(keys.block_key("10.65.0.64/26"))
    stream.until(removed(messages.ROUTE, "10.65.0.64/26"), "route removal")

    # A value that does not parse removes what it described, and says why in the log.
    block_c = store.get(keys.block_key("10.65.0.128/26"))
    store.update(keys.block_key("10.65.0.128/26"), b"{broken", block_c.mod_revision)
    stream.until(removed(messages.ROUTE, "10.65.0.128/26"), "bad block -> removal")
    assert "key=/tabby/ipam/v1/blocks/ipv4/10.65.0.128-26" in f.log()

    # A late subscriber gets the current state (not the history), then InSync.
    late = Stream(f.channel, "late")
    late_snap = late.until(lambda ms: ms[-1].HasField("in_sync"), "late InSync")
    assert messages.fold(late_snap) == messages.fold(stream.seen)
    assert not [m for m in late_snap if m.WhichOneof("payload").endswith("_remove")]

    # Routes the BGP daemon pushes are accepted (and counted) over the socket.
    push = felix_services_pb2_grpc.LearnedRoutesStub(f.channel).Push
    learned = [
        felix_services_pb2.LearnedRouteMessage(update=felix_services_pb2.LearnedRoute(
            dst="10.70.0.0/24", next_hops=["10.0.1.1"], peer="10.0.1.1")),
        felix_services_pb2.LearnedRouteMessage(end_of_rib=True),
    ]  # fmt: skip
    push(iter(learned), timeout=WAIT)

    # Health and metrics.
    assert f.http("/readiness") == (200, "ready\n")
    assert f.http("/liveness")[0] == 200
    code, text = f.http("/metrics")
    assert code == 200
    metrics = dict(line.split(" ") for line in text.splitlines() if not line.startswith("#"))
    assert float(metrics["tabby_felix_messages_emitted_total"]) >= len(snap)
    assert float(metrics["tabby_felix_datastore_bad_values_total"]) == 1
    assert float(metrics["tabby_felix_calc_update_seconds_count"]) > 0
    assert float(metrics["tabby_felix_in_sync"]) == 1
    assert float(metrics["tabby_felix_learned_route_messages_total"]) == 2
    stream.call.cancel()
    late.call.cancel()


def test_bad_endpoint_flag_fails_fast_with_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "felix.daemon.main", "--etcd-endpoints", "not a url",
         "--no-dataplane", "--socket", str(tmp_path / "x.sock")],
        cwd=REPO, capture_output=True, text=True, timeout=30,
        env=dict(os.environ, PYTHONPATH=REPO),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "etcd endpoint 'not a url' is not an http(s)://host:port URL" in proc.stderr
    assert not (tmp_path / "x.sock").exists()
