"""``KVStore`` in memory, with etcd's semantics, for fast unit tests of pure logic.

Revisions, compare-and-swap, watch with history and compaction behave as etcd's do
(the shared contract tests run against both), so logic tested here behaves the same
on the real store. Never the only test of an integration: that is what etcd is for.
"""

from __future__ import annotations

import bisect
import queue
import threading
from collections.abc import Iterator

from datastore.api import (
    DELETE,
    PUT,
    AlreadyExists,
    Compacted,
    Conflict,
    DatastoreError,
    KeyValue,
    NotFound,
    Unavailable,
    WatchEvent,
)

_CANCELLED = object()


class MemoryStore:
    """A thread-safe single-node KV store with an etcd-like revision history."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revision = 1  # etcd's first revision on an empty store
        self._compact_revision = 0
        self._data: dict[str, KeyValue] = {}
        self._history: list[WatchEvent] = []  # every event since the compaction, in order
        self._watches: list[MemoryWatch] = []
        self._closed = False

    # --- reads ---------------------------------------------------------------------

    @property
    def revision(self) -> int:
        with self._lock:
            return self._revision

    def get(self, key: str) -> KeyValue | None:
        with self._lock:
            self._check_open()
            return self._data.get(key)

    def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        with self._lock:
            self._check_open()
            items = [kv for k, kv in self._data.items() if k.startswith(prefix)]
            items.sort(key=lambda kv: kv.key.encode())  # etcd orders by key bytes
            return items, self._revision

    # --- writes --------------------------------------------------------------------

    def create(self, key: str, value: bytes) -> int:
        with self._lock:
            self._check_open()
            if key in self._data:
                raise AlreadyExists(f"key {key} already exists")
            return self._put(key, value, create_revision=0)

    def update(self, key: str, value: bytes, expected_revision: int) -> int:
        with self._lock:
            self._check_open()
            current = self._check_cas(key, expected_revision)
            return self._put(key, value, create_revision=current.create_revision)

    def delete(self, key: str, expected_revision: int | None = None) -> int:
        with self._lock:
            self._check_open()
            if expected_revision is None:
                if key not in self._data:
                    raise NotFound(f"key {key} not found")
            else:
                self._check_cas(key, expected_revision)
            del self._data[key]
            self._revision += 1
            self._emit(WatchEvent(DELETE, key, None, self._revision))
            return self._revision

    def _check_cas(self, key: str, expected: int) -> KeyValue:
        current = self._data.get(key)
        if current is None:
            raise NotFound(f"key {key} not found")
        if current.mod_revision != expected:
            raise Conflict(
                f"key {key} was modified concurrently "
                f"(expected revision {expected}, now {current.mod_revision})"
            )
        return current

    def _put(self, key: str, value: bytes, create_revision: int) -> int:
        self._revision += 1
        rev = self._revision
        self._data[key] = KeyValue(key, bytes(value), rev, create_revision or rev)
        self._emit(WatchEvent(PUT, key, bytes(value), rev))
        return rev

    def _emit(self, event: WatchEvent) -> None:
        self._history.append(event)
        for w in self._watches:
            if event.key.startswith(w.prefix) and event.mod_revision >= w.start_revision:
                w._queue.put([event])

    # --- watch and compaction ------------------------------------------------------

    def watch(self, prefix: str, start_revision: int) -> MemoryWatch:
        with self._lock:
            self._check_open()
            w = MemoryWatch(self, prefix, start_revision)
            if 0 < start_revision < self._compact_revision:
                w._queue.put(
                    Compacted(
                        f"watch on {prefix} from revision {start_revision}: history "
                        f"compacted up to revision {self._compact_revision}; list again",
                        self._compact_revision,
                    )
                )
            else:
                if start_revision > 0:
                    revs = [e.mod_revision for e in self._history]
                    for event in self._history[bisect.bisect_left(revs, start_revision) :]:
                        if event.key.startswith(prefix):
                            w._queue.put([event])
                self._watches.append(w)
            return w

    def compact(self, revision: int) -> None:
        with self._lock:
            self._check_open()
            if revision > self._revision:
                raise DatastoreError(
                    f"cannot compact to revision {revision}: store is at {self._revision}"
                )
            if revision <= self._compact_revision:
                return
            self._compact_revision = revision
            self._history = [e for e in self._history if e.mod_revision >= revision]
            # etcd cancels open watches that still need compacted history; ours are all
            # caught up (events are pushed as they happen), so they simply continue.

    def interrupt_watches(self) -> None:
        """Test hook: end every open watch with ``Unavailable``, as a dropped connection does."""
        with self._lock:
            watches, self._watches = self._watches, []
        for w in watches:
            w._queue.put(Unavailable("memory store: watch connection dropped (test)"))

    def _forget(self, w: MemoryWatch) -> None:
        with self._lock:
            if w in self._watches:
                self._watches.remove(w)

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("memory store is closed")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            watches, self._watches = self._watches, []
        for w in watches:
            w.cancel()


class MemoryWatch:
    """Events are queued by the writer under the store lock, so order is revision order."""

    def __init__(self, store: MemoryStore, prefix: str, start_revision: int) -> None:
        self.prefix = prefix
        self.start_revision = start_revision
        self._store = store
        self._queue: queue.Queue[object] = queue.Queue()
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        if not self._cancelled.is_set():
            self._cancelled.set()
            self._queue.put(_CANCELLED)
            self._store._forget(self)

    def __iter__(self) -> Iterator[list[WatchEvent]]:
        while not self._cancelled.is_set():
            item = self._queue.get()
            if item is _CANCELLED or self._cancelled.is_set():
                return
            if isinstance(item, DatastoreError):
                self._store._forget(self)
                raise item
            assert isinstance(item, list)
            yield item
