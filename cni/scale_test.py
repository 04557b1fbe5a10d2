"""Many pods and several nodes at once: the allocator and the plumbing under concurrency.

A runtime may run ADDs for different containers in parallel; two nodes may allocate
from the same pool at the same moment. Addresses must never collide, every pod must
reach its gateway, and DELs must leave zero allocations.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from cni import testutil
from cni.testutil import ns_path
from datastore import keys
from datastore.etcd import EtcdStore
from ipam.testing import put_pool

pytest_plugins = ["datastore.etcd_fixture", "cni.testutil"]  # etcd_server, bin_dir
pytestmark = testutil.needs_root


@pytest.fixture(scope="module")
def kv(etcd_server):
    store = EtcdStore([etcd_server.endpoint], timeout=5)
    put_pool(store, "pool-big", "10.78.0.0/24", 26)
    put_pool(store, "pool-small", "10.79.0.0/28", 30)
    yield store
    store.close()


@contextlib.contextmanager
def started_node(etcd_port: int, bin_dir: str, work: str):
    n = testutil.Node(etcd_port, bin_dir, work)
    try:
        n.start_service()
        yield n
    finally:
        n.close()


def handles(kv) -> list[str]:
    return [i.key for i in kv.list(keys.IPAM_HANDLES)[0]]


def test_100_adds_10_at_a_time_distinct_ips_gateway_reachable_then_zero_allocations(
    etcd_server,
    kv,
    bin_dir,
    tmp_path,
):
    with contextlib.ExitStack() as stack:
        node = stack.enter_context(started_node(etcd_server.client_port, bin_dir, str(tmp_path)))
        pods = [stack.enter_context(testutil.namespace()) for _ in range(100)]
        ids = [secrets.token_hex(16) for _ in pods]
        conf = node.conf(ipam={"type": "tabby-ipam", "ipv4_pools": ["pool-big"]})

        def add(i: int):
            return node.run("ADD", conf, container_id=ids[i], netns_path=ns_path(pods[i]))

        with ThreadPoolExecutor(10) as pool:
            results = list(pool.map(add, range(100)))
        failures = [(rc, out, err[-500:]) for rc, out, err in results if rc != 0]
        assert not failures, failures[:3]
        addrs = [out["ips"][0]["address"] for _, out, _ in results]
        assert len(set(addrs)) == 100
        assert all(a.startswith("10.78.0.") for a in addrs)
        unreachable = [
            p
            for p in pods
            if subprocess.run(
                ["ip", "netns", "exec", p, "ping", "-c", "1", "-W", "2", "169.254.1.1"],
                capture_output=True,
            ).returncode
            != 0
        ]
        assert unreachable == []

        def delete(i: int):
            return node.run("DEL", conf, container_id=ids[i], netns_path=ns_path(pods[i]))

        with ThreadPoolExecutor(10) as pool:
            dels = list(pool.map(delete, range(100)))
        assert [rc for rc, _, _ in dels] == [0] * 100
        assert handles(kv) == []
        assert "cali" not in testutil.ip("link", ns=node.ns)


def test_two_nodes_share_a_small_pool_without_collisions_and_exhaustion_is_101(
    etcd_server,
    kv,
    bin_dir,
    tmp_path,
):
    with contextlib.ExitStack() as stack:
        nodes = [
            stack.enter_context(started_node(etcd_server.client_port, bin_dir, str(tmp_path)))
            for _ in range(2)
        ]
        work = []
        for n in nodes:
            for _ in range(10):
                work.append((n, stack.enter_context(testutil.namespace()), secrets.token_hex(8)))

        def conf(n):
            return n.conf(ipam={"type": "tabby-ipam", "ipv4_pools": ["10.79.0.0/28"]})

        def add(item):
            n, pod, c = item
            return n.run("ADD", conf(n), container_id=c, netns_path=ns_path(pod))

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(add, work))
        ok = [out["ips"][0]["address"] for rc, out, _ in results if rc == 0]
        failed = [out for rc, out, _ in results if rc != 0]
        # 16 addresses in the pool, 20 pods: every address used once, 4 clear failures.
        assert len(ok) == 16 and len(set(ok)) == 16, ok
        assert len(failed) == 4
        for out in failed:
            assert out["code"] == 101, out
            assert "no free IPv4 address" in out["msg"] and "10.79.0.0/28" in out["msg"]
        assert len(handles(kv)) == 16
        for (n, pod, c), (rc, _, _) in zip(work, results, strict=True):
            if rc == 0:
                assert n.run("DEL", conf(n), container_id=c, netns_path=ns_path(pod))[0] == 0
        assert handles(kv) == []
