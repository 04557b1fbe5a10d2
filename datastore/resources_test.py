"""ResourceStore: typed, validated, compare-and-swap writes (real etcd and MemoryStore)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import pytest

from datastore import keys
from datastore.api import AlreadyExists, Conflict, KVStore, NotFound
from datastore.etcd import EtcdStore
from datastore.etcd_fixture import EtcdServer
from datastore.memory import MemoryStore
from datastore.resources import ResourceStore, encode
from model.errors import ValidationError
from model.resources import (
    IPPool,
    IPPoolSpec,
    Node,
    ObjectMeta,
    WorkloadEndpoint,
    WorkloadEndpointSpec,
)

pytest_plugins = ["datastore.etcd_fixture"]  # the etcd_server fixture
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["memory", "etcd"])
def kv(request: pytest.FixtureRequest) -> Iterator[KVStore]:
    if request.param == "memory":
        store: KVStore = MemoryStore()
    else:
        server: EtcdServer = request.getfixturevalue("etcd_server")
        store = EtcdStore([server.endpoint])
        # One etcd serves the whole module: start each test from an empty resource tree.
        kvs, _ = store.list(keys.ROOT + "/")
        for item in kvs:
            store.delete(item.key)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def rs(kv: KVStore) -> ResourceStore:
    return ResourceStore(kv)


def pool(name: str = "pool-a", cidr: str = "10.65.0.0/16", **spec: object) -> IPPool:
    spec_ = IPPoolSpec(cidr=cidr, **spec)  # type: ignore[arg-type]
    return IPPool(metadata=ObjectMeta(name=name), spec=spec_)


def wep(namespace: str, name: str) -> WorkloadEndpoint:
    return WorkloadEndpoint(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=WorkloadEndpointSpec(node="node-1", pod=name, ip_networks=["10.65.0.3/32"]),
    )


def test_create_then_get_round_trips_with_defaults_version_uid_and_timestamp(
    rs: ResourceStore, kv: KVStore
) -> None:
    created = rs.create(pool())
    got = rs.get(IPPool, "pool-a")
    assert got == created
    assert got.spec.block_size == 26  # filled by validation
    raw = kv.get(keys.resource_key("ippools", "pool-a"))
    assert raw is not None and got.metadata.resource_version == str(raw.mod_revision)
    uuid.UUID(got.metadata.uid)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", got.metadata.creation_timestamp)


def test_stored_value_is_the_json_document_without_resource_version(
    rs: ResourceStore, kv: KVStore
) -> None:
    rs.create(pool())
    raw = kv.get("/tabby/resources/v1/ippools/pool-a")
    assert raw is not None
    doc = json.loads(raw.value)
    assert doc["kind"] == "IPPool" and doc["apiVersion"] == "tabby.dev/v1"
    assert doc["spec"]["cidr"] == "10.65.0.0/16" and doc["spec"]["blockSize"] == 26
    assert "resourceVersion" not in doc["metadata"]
    assert doc["metadata"]["uid"]


def test_create_of_existing_name_raises_already_exists(rs: ResourceStore) -> None:
    rs.create(pool())
    with pytest.raises(AlreadyExists, match=r'^IPPool "pool-a" already exists$'):
        rs.create(pool(cidr="10.65.0.0/16"))


def test_replace_with_stale_resource_version_conflicts_and_keeps_newer_write(
    rs: ResourceStore,
) -> None:
    first = rs.create(pool())
    stale_version = first.metadata.resource_version
    first.spec.nat_outgoing = True
    newer = rs.replace(first)
    edit = pool()
    edit.metadata.resource_version = stale_version
    edit.spec.disabled = True
    with pytest.raises(Conflict) as info:
        rs.replace(edit)
    assert str(info.value) == (
        f'IPPool "pool-a" was modified concurrently (resource version {stale_version} is '
        "stale); re-read and retry"
    )
    got = rs.get(IPPool, "pool-a")
    assert got.spec.nat_outgoing and not got.spec.disabled
    assert got.metadata.resource_version == newer.metadata.resource_version


def test_replace_without_version_writes_and_keeps_uid_and_creation_time(
    rs: ResourceStore,
) -> None:
    created = rs.create(pool())
    edit = pool(vxlan_mode="Always")
    edit.metadata.uid = "caller-made-this-up"
    replaced = rs.replace(edit)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    got = rs.get(IPPool, "pool-a")
    assert got.spec.vxlan_mode == "Always"
    assert got.metadata.uid == created.metadata.uid
    assert got.metadata.creation_timestamp == created.metadata.creation_timestamp


def test_replace_or_delete_of_missing_resource_is_not_found(rs: ResourceStore) -> None:
    with pytest.raises(NotFound, match=r'^IPPool "pool-a" not found$'):
        rs.replace(pool())
    with pytest.raises(NotFound, match=r'^IPPool "pool-a" not found$'):
        rs.delete(IPPool, "pool-a")
    with pytest.raises(NotFound, match=r'^Node "node-1" not found$'):
        rs.get(Node, "node-1")


def test_overlapping_pool_is_rejected_and_not_stored(rs: ResourceStore) -> None:
    rs.create(pool("pool-a", "10.65.0.0/16"))
    with pytest.raises(ValidationError) as info:
        rs.create(pool("pool-b", "10.65.128.0/20"))
    assert info.value.field == "spec.cidr"
    assert "IPPool(pool-a)" in str(info.value)
    assert [p.metadata.name for p in rs.list(IPPool)] == ["pool-a"]
    # A pool never overlaps itself: replacing it with its own CIDR is fine.
    rs.replace(pool("pool-a", "10.65.0.0/16", nat_outgoing=True))
    # ... but moving another pool onto it is not.
    rs.create(pool("pool-b", "10.66.0.0/16"))
    with pytest.raises(ValidationError, match="overlaps"):
        rs.replace(pool("pool-b", "10.65.0.0/24"))
    assert rs.get(IPPool, "pool-b").spec.cidr == "10.66.0.0/16"


def test_overlap_race_between_two_creates_is_lost_by_the_later_pool(kv: KVStore) -> None:
    """Both creates pass their check; the later write must withdraw itself."""

    class RacingKV:
        def __init__(self, inner: KVStore) -> None:
            self.inner = inner
            self.raced = False

        def create(self, key: str, value: bytes) -> int:
            if key.endswith("/pool-b") and not self.raced:
                self.raced = True  # another client's pool lands between check and write
                other = pool("pool-a", "10.65.0.0/16")
                other.metadata.uid = "x"
                self.inner.create(keys.resource_key("ippools", "pool-a"), encode(other))
            return self.inner.create(key, value)

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    racing = ResourceStore(RacingKV(kv))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"overlaps IPPool\(pool-a\)"):
        racing.create(pool("pool-b", "10.65.1.0/24"))
    assert [p.metadata.name for p in ResourceStore(kv).list(IPPool)] == ["pool-a"]


def test_validation_error_propagates_and_nothing_is_written(rs: ResourceStore) -> None:
    with pytest.raises(ValidationError) as info:
        rs.create(pool(cidr="10.65.0.0/16", block_size=12))
    assert info.value.field == "spec.blockSize"
    with pytest.raises(ValidationError, match=r"spec\.cidr"):
        rs.apply(pool(cidr="not-a-cidr"))
    assert rs.list(IPPool) == []


def test_apply_creates_then_replaces(rs: ResourceStore) -> None:
    created = rs.apply(pool())
    replaced = rs.apply(pool(nat_outgoing=True))
    assert replaced.metadata.uid == created.metadata.uid
    assert rs.get(IPPool, "pool-a").spec.nat_outgoing


def test_namespaced_list_get_and_delete(rs: ResourceStore) -> None:
    rs.create(wep("ns-b", "pod-1"))
    rs.create(wep("ns-a", "pod-2"))
    rs.create(wep("ns-a", "pod-1"))
    everything = rs.list(WorkloadEndpoint)
    assert [(w.namespace, w.name) for w in everything] == [
        ("ns-a", "pod-1"),
        ("ns-a", "pod-2"),
        ("ns-b", "pod-1"),
    ]
    assert [w.name for w in rs.list(WorkloadEndpoint, "ns-b")] == ["pod-1"]
    assert rs.get(WorkloadEndpoint, "pod-1", "ns-b").spec.node == "node-1"
    with pytest.raises(ValidationError, match=r"metadata\.namespace"):
        rs.get(WorkloadEndpoint, "pod-1")
    deleted = rs.delete(WorkloadEndpoint, "pod-1", "ns-a")
    assert deleted.namespace == "ns-a"
    with pytest.raises(NotFound, match=r'^WorkloadEndpoint "ns-a/pod-1" not found$'):
        rs.get(WorkloadEndpoint, "pod-1", "ns-a")


def test_delete_with_stale_version_conflicts_and_keeps_resource(rs: ResourceStore) -> None:
    created = rs.create(pool())
    rs.replace(pool(nat_outgoing=True))
    with pytest.raises(Conflict, match="re-read and retry"):
        rs.delete(IPPool, "pool-a", resource_version=created.metadata.resource_version)
    assert rs.get(IPPool, "pool-a").spec.nat_outgoing
    rs.delete(IPPool, "pool-a")
    assert rs.list(IPPool) == []
