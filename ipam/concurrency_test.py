"""Many writers at once: no address handed out twice, nothing leaked, exhaustion is clean.

Runs on a real etcd (the integration) and on the memory store. Also measures assign
latency on etcd (``test_assign_latency_on_etcd``, a benchmark: numbers are printed and
written to the test's undeclared outputs; the bound only catches pathologies).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time

from datastore.etcd import EtcdStore
from datastore.keys import IPAM_HANDLES
from ipam.client import AutoAssignRequest, IPAMClient
from ipam.errors import PoolExhausted
from ipam.report import check, show
from ipam.testing import put_pool, wipe

THREADS = 8


pytest_plugins = ["datastore.etcd_fixture", "ipam.testing"]  # etcd_server, kv


def _run_threads(target, n: int = THREADS) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def wrap(i: int) -> None:
        try:
            start.wait(timeout=10)
            target(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    return errors


def test_concurrent_assigns_on_two_nodes_never_collide_and_exhaust_cleanly(kv):
    put_pool(kv, "small", "10.66.0.0/28", 30)  # 4 blocks of 4 = 16 addresses
    got: dict[str, str] = {}
    ends: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        client = IPAMClient(kv)
        node = "node-a" if i % 2 == 0 else "node-b"
        for j in range(20):  # bounded: 16 addresses in all
            handle = f"net.t{i}-{j}"
            try:
                res = client.auto_assign(AutoAssignRequest(handle=handle, node=node))
            except PoolExhausted as e:
                with lock:
                    ends.append(str(e))
                return
            with lock:
                got[handle] = str(res.ipv4[0].ip)

    assert _run_threads(worker) == []
    assert len(got) == 16
    assert len(set(got.values())) == 16, "an address was handed out twice"
    assert len(ends) == THREADS
    assert all("small (10.66.0.0/28)" in e for e in ends)
    # Every record agrees: each handle holds exactly the one address it was given.
    client = IPAMClient(kv)
    for handle, ip in got.items():
        assert client.ips_by_handle(handle) == [ip]
    rep = check(kv)
    assert rep.count_mismatches == []
    # (No Node resources exist in this test, so only "block does not exist" matters.)
    assert [a for a in rep.orphan_affinities if a.reason != "node does not exist"] == []
    usage = show(kv, show_blocks=True)
    assert [p.in_use for p in usage.pools] == [16]
    assert {b.affinity for b in usage.blocks} <= {"host:node-a", "host:node-b"}


def test_concurrent_assign_and_release_churn_leaks_nothing(kv):
    put_pool(kv, "small", "10.66.0.0/27", 29)  # 4 blocks of 8
    live: dict[str, str] = {}
    lock = threading.Lock()

    def worker(i: int) -> None:
        client = IPAMClient(kv)
        rng = random.Random(i)
        node = f"node-{i % 3}"
        mine: list[str] = []
        for j in range(12):  # bounded
            if mine and rng.random() < 0.4:
                handle = mine.pop(rng.randrange(len(mine)))
                with lock:  # forget it first: once released, another thread may get it
                    ip = live.pop(handle)
                assert client.release_by_handle(handle) == [ip]
                continue
            handle = f"net.c{i}-{j}"
            ip = str(client.auto_assign(AutoAssignRequest(handle=handle, node=node)).ipv4[0].ip)
            with lock:
                assert ip not in live.values(), f"{ip} handed out twice"
                live[handle] = ip
            mine.append(handle)
        for handle in mine:
            with lock:
                ip = live.pop(handle)
            assert client.release_by_handle(handle) == [ip]

    assert _run_threads(worker) == []
    assert live == {}
    assert kv.list(IPAM_HANDLES)[0] == []
    usage = show(kv, show_blocks=True)
    assert sum(b.in_use for b in usage.blocks) == 0
    rep = check(kv)
    assert rep.count_mismatches == [] and rep.leaked_allocations == []


def test_assign_latency_on_etcd(etcd_server):
    store = EtcdStore([etcd_server.endpoint])
    try:
        wipe(store)
        put_pool(store, "default", "10.65.0.0/16", 26)
        client = IPAMClient(store)
        assign_ms: list[float] = []
        release_ms: list[float] = []
        for i in range(100):
            t0 = time.perf_counter()
            client.auto_assign(AutoAssignRequest(handle=f"net.bench{i}", node="node-a"))
            assign_ms.append((time.perf_counter() - t0) * 1000)
        for i in range(100):
            t0 = time.perf_counter()
            client.release_by_handle(f"net.bench{i}")
            release_ms.append((time.perf_counter() - t0) * 1000)
    finally:
        store.close()
    result = {
        "assign_p50_ms": round(statistics.median(assign_ms), 2),
        "assign_p90_ms": round(statistics.quantiles(assign_ms, n=10)[-1], 2),
        "assign_max_ms": round(max(assign_ms), 2),
        "release_p50_ms": round(statistics.median(release_ms), 2),
        "n": 100,
    }
    print(f"ipam etcd latency {json.dumps(result)}")
    out = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
    if out:
        with open(os.path.join(out, "ipam_latency.json"), "w") as f:
            json.dump(result, f)
    assert result["assign_p50_ms"] < 250, result
