"""IPAM with a shared BlockCache: fewer reads and no self-collisions, never a wrong answer.

"Another process" is an IPAMClient without the cache (or with its own), writing the
same blocks; the cached copy it makes stale must cost a retry, never an address.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from datastore.api import Conflict
from datastore.keys import block_key, handle_key
from ipam.block import AllocationBlock
from ipam.blockcache import BlockCache
from ipam.client import AutoAssignRequest, IPAMClient
from ipam.testing import put_pool

pytest_plugins = ["datastore.etcd_fixture", "ipam.testing"]  # etcd_server, kv


class _Recording:
    """Counts block reads and block CAS conflicts of the wrapped store."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.block_reads = 0
        self.conflicts = 0
        self._lock = threading.Lock()

    def get(self, key):
        if "/blocks/" in key:
            with self._lock:
                self.block_reads += 1
        return self.inner.get(key)

    def update(self, key, value, rev):
        try:
            return self.inner.update(key, value, rev)
        except Conflict:
            with self._lock:
                self.conflicts += 1
            raise

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _req(handle: str) -> AutoAssignRequest:
    return AutoAssignRequest(handle=handle, node="node-a")


def test_cached_client_reads_a_block_once_then_writes_from_memory(kv):
    put_pool(kv, "p", "10.80.0.0/16", 26)
    rec = _Recording(kv)
    client = IPAMClient(rec, block_cache=BlockCache())
    ips = [str(client.auto_assign(_req(f"h{i}")).ipv4[0].ip) for i in range(5)]
    assert ips == [f"10.80.0.{i}" for i in range(5)]
    assert rec.block_reads <= 1  # the claim creates it; at most one read to learn it


def test_block_changed_by_another_process_costs_a_retry_not_an_address(kv):
    put_pool(kv, "p", "10.81.0.0/16", 26)
    cached = IPAMClient(kv, block_cache=BlockCache())
    other = IPAMClient(kv)  # another process: no shared memory
    first = cached.auto_assign(_req("c1")).ipv4[0].ip
    theirs = other.auto_assign(_req("o1")).ipv4[0].ip  # the cached copy is stale now
    mine = cached.auto_assign(_req("c2")).ipv4[0].ip
    assert len({first, theirs, mine}) == 3
    blk = AllocationBlock.from_json(kv.get(block_key("10.81.0.0/26")).value)
    assert sorted(blk.handle_counts().items()) == [("c1", 1), ("c2", 1), ("o1", 1)]


def test_release_is_never_skipped_because_of_a_stale_copy(kv):
    put_pool(kv, "p", "10.82.0.0/16", 26)
    cached = IPAMClient(kv, block_cache=BlockCache())
    other = IPAMClient(kv)
    cached.auto_assign(_req("warm"))  # the cache holds the block now
    ip = str(other.auto_assign(_req("late")).ipv4[0].ip)  # unknown to the cached copy
    assert cached.release_by_handle("late") == [ip]
    blk = AllocationBlock.from_json(kv.get(block_key("10.82.0.0/26")).value)
    assert blk.ips_for_handle("late") == [] and kv.get(handle_key("late")) is None


def test_full_looking_stale_copy_does_not_claim_a_new_block(kv):
    put_pool(kv, "p", "10.83.0.0/16", 30)  # 4 addresses per block
    cached = IPAMClient(kv, block_cache=BlockCache())
    other = IPAMClient(kv)
    for i in range(4):
        cached.auto_assign(_req(f"f{i}"))  # cached copy: full
    other.release_by_handle("f2")  # freed behind the cache's back
    got = cached.auto_assign(_req("again")).ipv4[0]
    assert str(got.ip) == "10.83.0.2"  # the freed address, in the node's existing block
    assert kv.get(block_key("10.83.0.4/30")) is None


def test_concurrent_assigns_through_one_cache_queue_instead_of_colliding(kv):
    put_pool(kv, "p", "10.84.0.0/16", 26)
    rec = _Recording(kv)
    cache = BlockCache()
    IPAMClient(rec, block_cache=cache).auto_assign(_req("first"))  # claim outside the race

    def one(i: int) -> str:
        return str(IPAMClient(rec, block_cache=cache).auto_assign(_req(f"par{i}")).ipv4[0].ip)

    with ThreadPoolExecutor(8) as pool:
        ips = list(pool.map(one, range(32)))
    assert len(set(ips)) == 32
    assert rec.conflicts == 0
    blk = AllocationBlock.from_json(kv.get(block_key("10.84.0.0/26")).value)
    assert blk.in_use == 33
