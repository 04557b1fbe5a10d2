"""Test helpers for IPAM: the two-store ``kv`` fixture, pool/config seeding, CAS races.

``kv`` runs a test on the memory store and on a real etcd. Load it (and the
``etcd_server`` it needs) in a test module with::

    pytest_plugins = ["datastore.etcd_fixture", "ipam.testing"]

``RacingStore`` wraps any real ``KVStore`` (memory or etcd) and runs a callback just
before chosen writes, so "a second writer between my read and my write" is a
deterministic test rather than a lucky interleaving.

(PYTEST_DONT_REWRITE: no asserts here, and test modules import it before pytest
loads it as a plugin.)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

import pytest

from datastore.api import KeyValue, KVStore, Watch
from datastore.etcd import EtcdStore
from datastore.keys import block_key, resource_key
from datastore.memory import MemoryStore
from ipam.block import AllocationBlock
from model.codec import resource_to_dict
from model.resources import Resource


@pytest.fixture(params=["memory", "etcd"])
def kv(request: pytest.FixtureRequest) -> Iterator[KVStore]:
    """The test runs twice: on the memory store, and on the module's etcd (wiped first).

    etcd is the integration that matters; the memory store (same CAS semantics) tells
    a logic bug from a transport bug.
    """
    store: KVStore
    if request.param == "memory":
        store = MemoryStore()
    else:
        store = EtcdStore([request.getfixturevalue("etcd_server").endpoint])
        wipe(store)
    try:
        yield store
    finally:
        store.close()


def put_pool(
    kv: KVStore,
    name: str,
    cidr: str,
    block_size: int | None = None,
    *,
    disabled: bool = False,
    node_selector: str = "all()",
) -> None:
    """Store an IPPool resource the way tabbyctl would."""
    spec: dict = {"cidr": cidr, "disabled": disabled, "nodeSelector": node_selector}
    if block_size is not None:
        spec["blockSize"] = block_size
    doc = {"apiVersion": "tabby.dev/v1", "kind": "IPPool", "metadata": {"name": name}, "spec": spec}
    _put(kv, resource_key("ippools", name), doc)


def put_ipam_config(kv: KVStore, *, strict_affinity: bool = False, **extra: object) -> None:
    spec = {"strictAffinity": strict_affinity, **extra}
    doc = {
        "apiVersion": "tabby.dev/v1",
        "kind": "IPAMConfiguration",
        "metadata": {"name": "default"},
        "spec": spec,
    }
    _put(kv, resource_key("ipamconfigurations", "default"), doc)


def put_resource(kv: KVStore, plural: str, name: str, doc: dict, namespace: str | None = None):
    _put(kv, resource_key(plural, name, namespace), doc)


def put_typed(kv: KVStore, res: Resource) -> None:
    """Store a typed resource as the datastore holds it (no validation: tests may need
    values ResourceStore would refuse), creating or replacing it."""
    _put(kv, resource_key(type(res).PLURAL, res.name, res.namespace), resource_to_dict(res))


def put_block(kv: KVStore, cidr: str, node: str) -> None:
    """An empty IPAM block affine to ``node``, as IPAM itself would have claimed it."""
    kv.create(block_key(cidr), AllocationBlock.new(cidr, f"host:{node}").to_json())


def _put(kv: KVStore, key: str, doc: dict) -> None:
    body = json.dumps(doc).encode()
    cur = kv.get(key)
    if cur is None:
        kv.create(key, body)
    else:
        kv.update(key, body, cur.mod_revision)


class RacingStore:
    """Delegates to ``inner``; before the first ``times`` writes to keys starting with
    ``prefix``, runs ``race()`` (another writer) against the inner store."""

    def __init__(
        self, inner: KVStore, prefix: str, race: Callable[[], None], times: int = 1
    ) -> None:
        self.inner = inner
        self.prefix = prefix
        self.race = race
        self.remaining = times
        self.fired = 0
        self._lock = threading.Lock()

    def _maybe_race(self, key: str) -> None:
        with self._lock:
            if self.remaining <= 0 or not key.startswith(self.prefix):
                return
            self.remaining -= 1
            self.fired += 1
        self.race()

    def get(self, key: str) -> KeyValue | None:
        return self.inner.get(key)

    def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        return self.inner.list(prefix)

    def create(self, key: str, value: bytes) -> int:
        self._maybe_race(key)
        return self.inner.create(key, value)

    def update(self, key: str, value: bytes, expected_revision: int) -> int:
        self._maybe_race(key)
        return self.inner.update(key, value, expected_revision)

    def delete(self, key: str, expected_revision: int | None = None) -> int:
        self._maybe_race(key)
        return self.inner.delete(key, expected_revision)

    def watch(self, prefix: str, start_revision: int) -> Watch:
        return self.inner.watch(prefix, start_revision)

    def compact(self, revision: int) -> None:
        self.inner.compact(revision)

    def close(self) -> None:
        self.inner.close()


def wipe(kv: KVStore, prefix: str = "/tabby/") -> None:
    """Delete every key under ``prefix`` (a shared test etcd between tests)."""
    kvs, _ = kv.list(prefix)
    for item in kvs:
        kv.delete(item.key)
