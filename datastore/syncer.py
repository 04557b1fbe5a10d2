"""Keep a consumer's view of some key prefixes equal to the store's, through any failure.

This is Calico's syncer shape: list each prefix, then watch from the listed revision
+ 1, and report ``wait-for-ready`` → ``resync`` → ``in-sync``. A dropped connection
is retried with backoff and resumed from the last revision seen (so nothing is
replayed or skipped); a compacted revision forces a full re-list, diffed against what
the consumer already has so that it gets exactly the changed and new keys plus a
delete for every key that vanished meanwhile, never a duplicate delete.

Each prefix has its own watcher thread (as Calico has one watcher per resource type);
callbacks are serialised, so a consumer sees one call at a time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from datastore.api import PUT, Compacted, DatastoreError, KeyValue, KVStore, Unavailable, Watch
from datastore.api import WatchEvent as _WatchEvent

log = logging.getLogger(__name__)

WAIT_FOR_READY = "wait-for-ready"
RESYNC = "resync"
IN_SYNC = "in-sync"


@dataclass(frozen=True)
class Update:
    key: str
    value: bytes | None  # None: the key was deleted
    revision: int


class SyncerCallbacks(Protocol):
    def on_updates(self, updates: list[Update]) -> None: ...

    def on_status(self, status: str) -> None: ...


# --- the pure core: what to tell the consumer ---------------------------------------


def diff_listing(
    known: dict[str, int], kvs: Iterable[KeyValue], revision: int
) -> tuple[list[Update], dict[str, int]]:
    """Updates that turn the consumer's view (key -> mod_revision) into a fresh listing.

    Unchanged keys are not repeated; vanished keys get one delete at the list revision.
    """
    fresh: dict[str, int] = {}
    updates: list[Update] = []
    for kv in kvs:
        fresh[kv.key] = kv.mod_revision
        if known.get(kv.key) != kv.mod_revision:
            updates.append(Update(kv.key, kv.value, kv.mod_revision))
    updates.extend(Update(key, None, revision) for key in sorted(known.keys() - fresh.keys()))
    return updates, fresh


def apply_events(known: dict[str, int], events: Iterable[_WatchEvent]) -> list[Update]:
    """Updates for a watch batch, updating ``known`` in place; drops repeats and stray deletes."""
    updates: list[Update] = []
    for ev in events:
        if ev.type == PUT:
            if known.get(ev.key) == ev.mod_revision:
                continue
            known[ev.key] = ev.mod_revision
            updates.append(Update(ev.key, ev.value, ev.mod_revision))
        elif ev.key in known:
            del known[ev.key]
            updates.append(Update(ev.key, None, ev.mod_revision))
    return updates


def aggregate_status(states: Iterable[str]) -> str:
    """All prefixes listed -> in-sync; none reachable yet -> wait-for-ready; else resync."""
    states = list(states)
    if all(s == IN_SYNC for s in states):
        return IN_SYNC
    if all(s == WAIT_FOR_READY for s in states):
        return WAIT_FOR_READY
    return RESYNC


# --- the threads ---------------------------------------------------------------------


class Syncer:
    """Lists then watches ``prefixes`` of ``kv``, feeding ``callbacks`` until ``stop()``."""

    def __init__(
        self,
        kv: KVStore,
        prefixes: list[str],
        callbacks: SyncerCallbacks,
        *,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        if not prefixes:
            raise ValueError("Syncer needs at least one prefix")
        self._kv = kv
        self._callbacks = callbacks
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._stop = threading.Event()
        self._deliver_lock = threading.Lock()  # one callback at a time, in order
        self._cond = threading.Condition()
        self._states = {p: WAIT_FOR_READY for p in dict.fromkeys(prefixes)}
        self._status = ""
        self._watchers = [_PrefixWatcher(self, p) for p in self._states]
        self._threads: list[threading.Thread] = []

    @property
    def status(self) -> str:
        with self._cond:
            return self._status

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("Syncer already started")
        self._set_state(None, WAIT_FOR_READY)
        for w in self._watchers:
            t = threading.Thread(target=w.run, name=f"syncer{w.prefix}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching and join the threads; no callback is made after this returns."""
        self._stop.set()
        for w in self._watchers:
            w.cancel()
        for t in self._threads:
            t.join(timeout)
        with self._deliver_lock:  # wait out a callback in progress
            pass

    def wait_for_status(self, status: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._status == status, timeout)

    # --- used by the watchers ------------------------------------------------------

    def _deliver(self, updates: list[Update]) -> None:
        if not updates:
            return
        with self._deliver_lock:
            if self._stop.is_set():
                return
            try:
                self._callbacks.on_updates(updates)
            except Exception:
                log.exception("syncer consumer failed on_updates count=%d", len(updates))

    def _set_state(self, prefix: str | None, state: str) -> None:
        with self._deliver_lock:
            with self._cond:
                if prefix is not None:
                    self._states[prefix] = state
                status = aggregate_status(self._states.values())
                if status == self._status:
                    return
                self._status = status
                self._cond.notify_all()
            if self._stop.is_set():
                return
            log.info("syncer status=%s prefixes=%s", status, ",".join(self._states))
            try:
                self._callbacks.on_status(status)
            except Exception:
                log.exception("syncer consumer failed on_status status=%s", status)


class _PrefixWatcher:
    """One prefix: list, watch, and recover; owns the consumer's view of that prefix."""

    def __init__(self, syncer: Syncer, prefix: str) -> None:
        self.syncer = syncer
        self.prefix = prefix
        self.known: dict[str, int] = {}  # key -> mod_revision, as the consumer has it
        self.revision = 0  # every change up to here has been delivered
        self._watch: Watch | None = None
        self._lock = threading.Lock()

    def cancel(self) -> None:
        with self._lock:
            watch = self._watch
        if watch is not None:
            watch.cancel()

    def run(self) -> None:
        s = self.syncer
        need_list = True
        backoff = s._min_backoff
        while not s._stop.is_set():
            try:
                if need_list:
                    self._list()
                    need_list = False
                self._watch_once()
                backoff = s._min_backoff
                continue
            except Compacted as e:
                log.info(
                    "syncer resync prefix=%s revision=%d compact_revision=%d",
                    self.prefix,
                    self.revision,
                    e.compact_revision,
                )
                s._set_state(self.prefix, RESYNC)
                need_list = True
                continue  # no wait: the store is fine, only our revision is too old
            except Unavailable as e:
                log.warning(
                    "syncer datastore unavailable prefix=%s revision=%d retry_in=%.1fs error=%s",
                    self.prefix,
                    self.revision,
                    backoff,
                    e,
                )
            except DatastoreError as e:
                log.warning(
                    "syncer error prefix=%s retry_in=%.1fs error=%s", self.prefix, backoff, e
                )
            except Exception:
                # A bug, not an outage: log it and rebuild the view from a fresh listing.
                log.exception("syncer unexpected failure prefix=%s", self.prefix)
                need_list = True
            s._stop.wait(backoff)
            backoff = min(backoff * 2, s._max_backoff)

    def _list(self) -> None:
        kvs, revision = self.syncer._kv.list(self.prefix)
        updates, self.known = diff_listing(self.known, kvs, revision)
        self.revision = revision
        log.info(
            "syncer listed prefix=%s keys=%d revision=%d updates=%d",
            self.prefix,
            len(self.known),
            revision,
            len(updates),
        )
        self.syncer._set_state(self.prefix, RESYNC)
        self.syncer._deliver(updates)
        self.syncer._set_state(self.prefix, IN_SYNC)

    def _watch_once(self) -> None:
        s = self.syncer
        watch = s._kv.watch(self.prefix, self.revision + 1)
        with self._lock:
            self._watch = watch
        try:
            if s._stop.is_set():
                return
            for batch in watch:
                updates = apply_events(self.known, batch)
                if batch:
                    self.revision = max(self.revision, max(ev.mod_revision for ev in batch))
                s._deliver(updates)
                if s._stop.is_set():
                    return
            if not s._stop.is_set():
                raise Unavailable(f"watch on {self.prefix} ended unexpectedly")
        finally:
            with self._lock:
                self._watch = None
            watch.cancel()
