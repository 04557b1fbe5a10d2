"""Pod churn: 200 pods created and deleted across 3 nodes leave nothing behind.

Direct routing on one L2 segment, nodes under ``tabby-node`` with its defaults, pods
through the real plugin chain, 8 CNI calls at a time (a busy kubelet's worth). The
waves overlap deletes with creates so IPAM reuses freed addresses while new ones are
handed out. Afterwards what an operator would check: ``tabbyctl ipam check`` clean
with zero allocations and handles, no WorkloadEndpoint left, and on every node no
``cali*`` link, no route to a ``cali*`` interface, and exactly one Felix route per IPAM
block (blackhole for its own, via the owner for the others').
"""

from __future__ import annotations

import ipaddress
import json
import pathlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from e2e.connectivity import reachability_matrix, routes
from e2e.nodes import POD_CIDR, cni_path, install_prefix, start_tabby_node, tabbyctl
from e2e.pods import Pod, create_pod, delete_pod
from e2e.topology import Cluster, Node

PODS = 200
PARALLEL = 8
WAVE1 = 100  # created first
WAVE2_DELETE = 50  # of wave 1, deleted while wave 2 is created
BUDGET_S = 90.0
# /28 blocks (16 addresses) so the ~50 pods per node at peak span several blocks per
# node: claiming, filling and reusing blocks is part of the churn. Applied before the
# first node starts, so tabby-node does not create its /26 default pool.
POOL = f"""
apiVersion: tabby.dev/v1
kind: IPPool
metadata:
  name: churn-pool
spec:
  cidr: {POD_CIDR}
  blockSize: 28
"""
BLOCK_SIZE = 16


@pytest.fixture(scope="module")
def bin_dir() -> Iterator[pathlib.Path]:
    with install_prefix() as prefix:
        yield prefix / "bin"


def run_parallel(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run the jobs ``PARALLEL`` at a time; the first failure is raised (after the
    others finished, so cleanup sees a settled state)."""
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = [pool.submit(job) for job in jobs]
        return [f.result() for f in futures]


def sample(pods: list[Pod], nodes: list[Node], per_node: int = 2) -> list[Pod]:
    out: list[Pod] = []
    for node in nodes:
        out += [p for p in pods if p.node is node][:per_node]
    return out


def assert_unique_ips(pods: list[Pod]) -> None:
    ips = [p.ip for p in pods]
    dupes = sorted({ip for ip in ips if ips.count(ip) > 1})
    assert not dupes, f"addresses handed to two live pods: {dupes}"
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(POD_CIDR) for ip in ips)


def test_200_pods_created_and_deleted_leave_no_leak_and_no_stale_route(
    bin_dir: pathlib.Path,
) -> None:
    started = time.monotonic()
    timings: dict[str, float] = {}
    with Cluster.l2(3) as cluster:
        tabbyctl(cluster, bin_dir, "apply", "-f", "-", input=POOL)
        confs: dict[str, str] = {}
        for node in cluster.nodes:
            confs[node.name] = start_tabby_node(cluster, node, bin_dir)
        timings["cluster up"] = time.monotonic() - started
        counter = iter(range(PODS))

        def add(node: Node) -> Callable[[], Pod]:
            k = next(counter)
            return lambda: create_pod(node, f"churn-{k}", "churn", confs[node.name], cni_path(node))

        def placement(n: int) -> list[Node]:
            return [cluster.nodes[i % len(cluster.nodes)] for i in range(n)]

        # Wave 1: 100 pods.
        t = time.monotonic()
        wave1: list[Pod] = run_parallel([add(node) for node in placement(WAVE1)])
        timings["wave 1: 100 ADD"] = time.monotonic() - t
        assert_unique_ips(wave1)
        t = time.monotonic()
        matrix = reachability_matrix(sample(wave1, cluster.nodes), tcp=False, deadline=20)
        timings["wave 1: sample ping matrix"] = time.monotonic() - t
        print(matrix)
        matrix.assert_all_ok()

        # Wave 2: 50 of them deleted while 100 more are created (freed addresses reused).
        t = time.monotonic()
        gone, kept = wave1[:WAVE2_DELETE], wave1[WAVE2_DELETE:]
        deletes: list[Callable[[], Any]] = [lambda p=p: delete_pod(p) for p in gone]
        creates = [add(node) for node in placement(PODS - WAVE1)]
        mixed: list[Callable[[], Any]] = []
        for i, create in enumerate(creates):  # every second job a delete, while they last
            mixed += [create, *deletes[i : i + 1]]
        results = run_parallel(mixed)
        wave2 = [r for r in results if isinstance(r, Pod)]
        timings["wave 2: 100 ADD + 50 DEL"] = time.monotonic() - t
        assert len(wave2) == PODS - WAVE1
        alive = kept + wave2
        assert_unique_ips(alive)
        t = time.monotonic()
        matrix = reachability_matrix(sample(wave2, cluster.nodes), tcp=False, deadline=20)
        timings["wave 2: sample ping matrix"] = time.monotonic() - t
        print(matrix)
        matrix.assert_all_ok()
        blocks_at_peak = block_usage(cluster, bin_dir)
        print("blocks at peak:", json.dumps(blocks_at_peak))
        assert sum(b["in_use"] for b in blocks_at_peak) == len(alive)
        assert all(b["size"] == BLOCK_SIZE for b in blocks_at_peak), blocks_at_peak
        per_node = {n.name: 0 for n in cluster.nodes}
        for blk in blocks_at_peak:
            per_node[str(blk["affinity"]).removeprefix("host:")] += 1
        assert min(per_node.values()) >= 3, per_node  # ~50 pods / 16 per block

        # Wave 3: every pod deleted.
        t = time.monotonic()
        run_parallel([lambda p=p: delete_pod(p) for p in alive])
        timings["wave 3: 150 DEL"] = time.monotonic() - t

        t = time.monotonic()
        check = json.loads(tabbyctl(cluster, bin_dir, "ipam", "check", "-o", "json").stdout)
        assert check["ok"], check
        assert (check["allocations_checked"], check["handles_checked"]) == (0, 0), check
        weps = tabbyctl(cluster, bin_dir, "get", "weps", "-A", "-o", "json").stdout
        assert not workload_endpoints(weps), weps
        blocks = block_usage(cluster, bin_dir)
        assert blocks and all(b["in_use"] == 0 for b in blocks), blocks
        owners = {n.name: n.ip for n in cluster.nodes}
        for node in cluster.nodes:
            assert_no_pod_leftovers(node)
            assert_block_routes(node, blocks, owners)
        timings["final checks"] = time.monotonic() - t
    timings["total (incl. teardown)"] = time.monotonic() - started
    for what, seconds in timings.items():
        print(f"churn timing: {what}: {seconds:.2f} s")
    assert timings["total (incl. teardown)"] < BUDGET_S, timings


def block_usage(cluster: Cluster, bin_dir: pathlib.Path) -> list[dict[str, Any]]:
    out = tabbyctl(cluster, bin_dir, "ipam", "show", "--show-blocks", "-o", "json").stdout
    return list(json.loads(out)["blocks"])


def workload_endpoints(text: str) -> list[Any]:
    """The resources of a ``tabbyctl get -o json`` answer (a list, or a List's items)."""
    if not text.strip():
        return []
    doc = json.loads(text)
    if isinstance(doc, dict):
        return list(doc.get("items") or [])
    return list(doc)


def assert_no_pod_leftovers(node: Node) -> None:
    links = node.exec(["ip", "-o", "link", "show"]).stdout
    cali = [line for line in links.splitlines() if ": cali" in line]
    assert not cali, f"{node.name}: cali links left: {cali}"
    stale = [r for r in routes(node) if str(r.get("dev", "")).startswith("cali")]
    assert not stale, f"{node.name}: routes to cali interfaces left: {stale}"


def assert_block_routes(node: Node, blocks: list[dict[str, Any]], owners: dict[str, str]) -> None:
    """Felix's routes in ``node`` are exactly one per IPAM block: a blackhole for the
    node's own blocks, ``via <owner>`` on eth0 for the other nodes' blocks."""
    ours = {r["dst"]: r for r in routes(node) if r.get("protocol") == "80"}
    want = {b["cidr"] for b in blocks}
    assert set(ours) == want, f"{node.name}: routes {sorted(ours)} != blocks {sorted(want)}"
    for blk in blocks:
        owner = str(blk["affinity"]).removeprefix("host:")
        route = ours[blk["cidr"]]
        if owner == node.name:
            assert route.get("type") == "blackhole", (node.name, route)
        else:
            assert (route.get("gateway"), route.get("dev")) == (owners[owner], "eth0"), (
                node.name,
                route,
            )
