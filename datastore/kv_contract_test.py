"""The KVStore contract, run against the real etcd and against MemoryStore.

One set of tests for both backends is what lets other packages trust MemoryStore in
their fast unit tests: anything it does differently from etcd fails here.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from datastore.api import (
    DELETE,
    PUT,
    AlreadyExists,
    Compacted,
    Conflict,
    KVStore,
    NotFound,
    WatchEvent,
)
from datastore.etcd import EtcdStore
from datastore.etcd_fixture import EtcdServer
from datastore.memory import MemoryStore

pytest_plugins = ["datastore.etcd_fixture"]  # the etcd_server fixture

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["memory", "etcd"])
def store(request: pytest.FixtureRequest) -> Iterator[KVStore]:
    if request.param == "memory":
        s: KVStore = MemoryStore()
    else:
        server: EtcdServer = request.getfixturevalue("etcd_server")
        s = EtcdStore([server.endpoint], timeout=5.0)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def prefix() -> str:
    """Tests share one etcd per module, so each works under its own prefix."""
    return f"/tabby-test/{uuid.uuid4().hex[:8]}/"


def _compact(store: KVStore) -> int:
    _, rev = store.list("/")
    store.compact(rev)
    return rev


class _Collector:
    """Iterates a watch in a thread and records every batch (or the error that ended it)."""

    def __init__(self, store: KVStore, prefix: str, start: int) -> None:
        self.watch = store.watch(prefix, start)
        self.events: list[WatchEvent] = []
        self.batches = 0
        self.error: BaseException | None = None
        self._cv = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for batch in self.watch:
                with self._cv:
                    self.events.extend(batch)
                    self.batches += 1
                    self._cv.notify_all()
        except BaseException as e:
            with self._cv:
                self.error = e
                self._cv.notify_all()

    def wait_for(self, n: int, timeout: float = 5.0) -> list[WatchEvent]:
        with self._cv:
            self._cv.wait_for(lambda: len(self.events) >= n or self.error is not None, timeout)
            return list(self.events)

    def stop(self) -> float:
        t0 = time.monotonic()
        self.watch.cancel()
        self.thread.join(5)
        return time.monotonic() - t0


# --- create / get / update / delete ------------------------------------------------


def test_create_then_get_returns_value_and_revisions(store: KVStore, prefix: str) -> None:
    rev = store.create(prefix + "a", b"hello")
    kv = store.get(prefix + "a")
    assert kv is not None
    assert (kv.key, kv.value, kv.mod_revision, kv.create_revision) == (
        prefix + "a",
        b"hello",
        rev,
        rev,
    )
    assert store.get(prefix + "missing") is None


def test_create_on_existing_key_raises_already_exists_and_keeps_value(
    store: KVStore, prefix: str
) -> None:
    store.create(prefix + "a", b"first")
    with pytest.raises(AlreadyExists, match=f"{prefix}a"):
        store.create(prefix + "a", b"second")
    kv = store.get(prefix + "a")
    assert kv is not None and kv.value == b"first"


def test_update_with_current_revision_writes_and_keeps_create_revision(
    store: KVStore, prefix: str
) -> None:
    created = store.create(prefix + "a", b"1")
    updated = store.update(prefix + "a", b"2", created)
    assert updated > created
    kv = store.get(prefix + "a")
    assert kv is not None
    assert (kv.value, kv.mod_revision, kv.create_revision) == (b"2", updated, created)


def test_two_writers_same_revision_one_loses_with_conflict_nothing_lost(
    store: KVStore, prefix: str
) -> None:
    rev = store.create(prefix + "a", b"base")
    store.update(prefix + "a", b"writer-1", rev)
    with pytest.raises(Conflict, match="modified concurrently"):
        store.update(prefix + "a", b"writer-2", rev)
    kv = store.get(prefix + "a")
    assert kv is not None and kv.value == b"writer-1"


def test_concurrent_cas_increments_are_never_lost(store: KVStore, prefix: str) -> None:
    key = prefix + "counter"
    store.create(key, b"0")
    threads, per_thread = 4, 10

    def work() -> None:
        done = 0
        while done < per_thread:
            kv = store.get(key)
            assert kv is not None
            try:
                store.update(key, str(int(kv.value) + 1).encode(), kv.mod_revision)
                done += 1
            except Conflict:
                pass

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(30)
    kv = store.get(key)
    assert kv is not None and int(kv.value) == threads * per_thread


def test_update_of_missing_key_raises_not_found_and_creates_nothing(
    store: KVStore, prefix: str
) -> None:
    with pytest.raises(NotFound, match=f"{prefix}gone"):
        store.update(prefix + "gone", b"x", 5)
    # Revision 0 must not turn an update into a create.
    with pytest.raises(NotFound):
        store.update(prefix + "gone", b"x", 0)
    assert store.get(prefix + "gone") is None


def test_delete_of_missing_key_raises_not_found(store: KVStore, prefix: str) -> None:
    with pytest.raises(NotFound):
        store.delete(prefix + "gone")
    with pytest.raises(NotFound):
        store.delete(prefix + "gone", expected_revision=3)


def test_delete_with_stale_revision_conflicts_and_key_survives(store: KVStore, prefix: str) -> None:
    rev = store.create(prefix + "a", b"1")
    store.update(prefix + "a", b"2", rev)
    with pytest.raises(Conflict):
        store.delete(prefix + "a", expected_revision=rev)
    kv = store.get(prefix + "a")
    assert kv is not None and kv.value == b"2"


def test_delete_returns_new_store_revision_and_removes_key(store: KVStore, prefix: str) -> None:
    rev = store.create(prefix + "a", b"1")
    deleted_at = store.delete(prefix + "a", expected_revision=rev)
    assert deleted_at > rev
    assert store.get(prefix + "a") is None
    rev2 = store.create(prefix + "b", b"1")
    assert store.delete(prefix + "b") > rev2


# --- list ------------------------------------------------------------------------------


def test_list_is_sorted_by_key_with_store_revision_and_respects_prefix(
    store: KVStore, prefix: str
) -> None:
    for name in ["c", "a", "b/x", "b"]:
        store.create(prefix + name, name.encode())
    store.create(prefix.rstrip("/") + "0", b"outside")  # shares the prefix minus its "/"
    last = store.create(prefix[:-1] + "-other/z", b"outside")
    kvs, rev = store.list(prefix)
    assert [kv.key for kv in kvs] == [prefix + n for n in ["a", "b", "b/x", "c"]]
    assert [kv.value for kv in kvs] == [b"a", b"b", b"b/x", b"c"]
    assert rev >= last
    assert store.list(prefix + "nothing/") == ([], rev)


# --- watch -----------------------------------------------------------------------------


def test_watch_sees_every_create_update_delete_in_order(store: KVStore, prefix: str) -> None:
    _, rev = store.list(prefix)
    c = _Collector(store, prefix, rev + 1)
    try:
        r1 = store.create(prefix + "a", b"1")
        r2 = store.update(prefix + "a", b"2", r1)
        r3 = store.delete(prefix + "a", r2)
        store.create(prefix[:-1] + "-outside", b"not mine")
        r4 = store.create(prefix + "b", b"3")
        events = c.wait_for(4)
    finally:
        c.stop()
    assert c.error is None
    assert events == [
        WatchEvent(PUT, prefix + "a", b"1", r1),
        WatchEvent(PUT, prefix + "a", b"2", r2),
        WatchEvent(DELETE, prefix + "a", None, r3),
        WatchEvent(PUT, prefix + "b", b"3", r4),
    ]


def test_watch_from_past_revision_replays_history(store: KVStore, prefix: str) -> None:
    r1 = store.create(prefix + "a", b"1")
    r2 = store.update(prefix + "a", b"2", r1)
    c = _Collector(store, prefix, r1)
    try:
        events = c.wait_for(2)
    finally:
        c.stop()
    assert [(e.type, e.value, e.mod_revision) for e in events] == [(PUT, b"1", r1), (PUT, b"2", r2)]


def test_watch_across_many_keys_keeps_revision_order(store: KVStore, prefix: str) -> None:
    _, rev = store.list(prefix)
    c = _Collector(store, prefix, rev + 1)
    expected: list[tuple[str, str, int]] = []
    try:
        revs: dict[str, int] = {}
        for i in range(30):
            key = f"{prefix}k{i % 7}"
            if key in revs and i % 3 == 0:
                expected.append((DELETE, key, store.delete(key, revs.pop(key))))
            elif key in revs:
                revs[key] = store.update(key, b"u", revs[key])
                expected.append((PUT, key, revs[key]))
            else:
                revs[key] = store.create(key, b"c")
                expected.append((PUT, key, revs[key]))
        events = c.wait_for(len(expected))
    finally:
        c.stop()
    assert [(e.type, e.key, e.mod_revision) for e in events] == expected


def test_watch_on_compacted_revision_raises_compacted(store: KVStore, prefix: str) -> None:
    r1 = store.create(prefix + "a", b"1")
    store.update(prefix + "a", b"2", r1)
    compacted_at = _compact(store)
    watch = store.watch(prefix, r1)
    with pytest.raises(Compacted) as info:
        for _ in watch:
            pass
    assert info.value.compact_revision == compacted_at
    assert "compacted" in str(info.value)


def test_compact_twice_is_harmless(store: KVStore, prefix: str) -> None:
    store.create(prefix + "a", b"1")
    rev = _compact(store)
    store.compact(rev)
    assert store.get(prefix + "a") is not None


def test_cancel_ends_an_idle_watch_promptly(store: KVStore, prefix: str) -> None:
    _, rev = store.list(prefix)
    c = _Collector(store, prefix, rev + 1)
    store.create(prefix + "seen", b"1")
    c.wait_for(1)  # the reader is running; with nothing more to read, it now blocks
    elapsed = c.stop()
    assert not c.thread.is_alive()
    assert elapsed < 1.0
    assert c.error is None


def test_watch_from_a_future_revision_starts_there(store: KVStore, prefix: str) -> None:
    _, rev = store.list(prefix)
    c = _Collector(store, prefix, rev + 2)
    try:
        store.create(prefix + "early", b"1")  # rev + 1: before the start
        r2 = store.create(prefix + "later", b"2")
        events = c.wait_for(1)  # in revision order: an early event would come first
    finally:
        c.stop()
    assert c.events == events == [WatchEvent(PUT, prefix + "later", b"2", r2)]
