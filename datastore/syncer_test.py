"""Syncer logic: the pure diff core, and the threads driven by MemoryStore (fast).

The same recovery paths against the real etcd are in syncer_etcd_test.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from datastore.api import DELETE, PUT, KeyValue, Unavailable, Watch, WatchEvent
from datastore.memory import MemoryStore
from datastore.syncer import (
    IN_SYNC,
    RESYNC,
    WAIT_FOR_READY,
    Syncer,
    Update,
    aggregate_status,
    apply_events,
    diff_listing,
)
from datastore.syncer_testlib import RecordingConsumer

pytestmark = pytest.mark.timeout(60)

P = "/tabby/resources/v1/ippools/"


# --- pure core -----------------------------------------------------------------------


def test_diff_listing_sends_changed_and_new_keys_and_one_delete_per_vanished_key() -> None:
    known = {P + "a": 2, P + "b": 3, P + "c": 4}
    kvs = [KeyValue(P + "b", b"b2", 7), KeyValue(P + "c", b"c", 4), KeyValue(P + "d", b"d", 8)]
    updates, fresh = diff_listing(known, kvs, 9)
    assert updates == [
        Update(P + "b", b"b2", 7),
        Update(P + "d", b"d", 8),
        Update(P + "a", None, 9),
    ]
    assert fresh == {P + "b": 7, P + "c": 4, P + "d": 8}


def test_apply_events_drops_repeated_puts_and_deletes_of_unknown_keys() -> None:
    known = {P + "a": 2}
    events = [
        WatchEvent(PUT, P + "a", b"a", 2),  # already delivered
        WatchEvent(DELETE, P + "x", None, 3),  # never delivered: no delete either
        WatchEvent(PUT, P + "b", b"b", 4),
        WatchEvent(DELETE, P + "a", None, 5),
        WatchEvent(DELETE, P + "a", None, 5),
    ]
    assert apply_events(known, events) == [Update(P + "b", b"b", 4), Update(P + "a", None, 5)]
    assert known == {P + "b": 4}


def test_aggregate_status_is_in_sync_only_when_every_prefix_is() -> None:
    assert aggregate_status([WAIT_FOR_READY, WAIT_FOR_READY]) == WAIT_FOR_READY
    assert aggregate_status([IN_SYNC, WAIT_FOR_READY]) == RESYNC
    assert aggregate_status([IN_SYNC, RESYNC]) == RESYNC
    assert aggregate_status([IN_SYNC, IN_SYNC]) == IN_SYNC


# --- threads over MemoryStore --------------------------------------------------------


class FlakyKV:
    """MemoryStore behind a switch: while down, the syncer's list/watch are Unavailable.

    The test writes straight to the MemoryStore, as other clients would while this
    one is cut off.
    """

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise Unavailable("etcd at test unreachable: connection refused")

    def cut(self) -> None:
        self.down = True
        self.store.interrupt_watches()

    def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        self._check()
        return self.store.list(prefix)

    def watch(self, prefix: str, start_revision: int) -> Watch:
        self._check()
        return self.store.watch(prefix, start_revision)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


@pytest.fixture
def mem() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def consumer() -> RecordingConsumer:
    return RecordingConsumer()


@pytest.fixture
def flaky(mem: MemoryStore) -> FlakyKV:
    return FlakyKV(mem)


@pytest.fixture
def syncer(flaky: FlakyKV, consumer: RecordingConsumer) -> Iterator[Syncer]:
    s = Syncer(flaky, [P], consumer, min_backoff=0.02, max_backoff=0.1)  # type: ignore[arg-type]
    try:
        yield s
    finally:
        s.stop()


def test_initial_state_then_in_sync_in_calico_status_order(
    mem: MemoryStore, syncer: Syncer, consumer: RecordingConsumer
) -> None:
    mem.create(P + "a", b"1")
    mem.create(P + "b", b"2")
    mem.create("/tabby/other", b"not watched")
    syncer.start()
    assert syncer.wait_for_status(IN_SYNC, 5)
    assert consumer.statuses == [WAIT_FOR_READY, RESYNC, IN_SYNC]
    assert consumer.view == {P + "a": b"1", P + "b": b"2"}


def test_changes_after_in_sync_arrive_in_order(
    mem: MemoryStore, syncer: Syncer, consumer: RecordingConsumer
) -> None:
    syncer.start()
    assert syncer.wait_for_status(IN_SYNC, 5)
    r1 = mem.create(P + "a", b"1")
    r2 = mem.update(P + "a", b"2", r1)
    r3 = mem.delete(P + "a")
    consumer.wait(lambda: len(consumer.updates) == 3)
    assert consumer.updates == [
        Update(P + "a", b"1", r1),
        Update(P + "a", b"2", r2),
        Update(P + "a", None, r3),
    ]
    assert consumer.problems == []


def test_waits_for_ready_while_store_is_down_then_syncs(
    mem: MemoryStore, flaky: FlakyKV, syncer: Syncer, consumer: RecordingConsumer
) -> None:
    mem.create(P + "a", b"1")
    flaky.down = True
    syncer.start()
    time.sleep(0.2)
    assert syncer.status == WAIT_FOR_READY
    flaky.down = False
    assert syncer.wait_for_status(IN_SYNC, 5)
    assert consumer.view == {P + "a": b"1"}


def test_dropped_watch_resumes_from_last_revision_without_replay_or_loss(
    mem: MemoryStore, flaky: FlakyKV, syncer: Syncer, consumer: RecordingConsumer
) -> None:
    r1 = mem.create(P + "a", b"1")
    syncer.start()
    assert syncer.wait_for_status(IN_SYNC, 5)
    flaky.cut()
    r2 = mem.update(P + "a", b"2", r1)
    r3 = mem.create(P + "b", b"3")
    r4 = mem.delete(P + "a")
    flaky.down = False
    assert consumer.wait_view({P + "b": b"3"}) == {P + "b": b"3"}
    assert consumer.updates == [
        Update(P + "a", b"1", r1),
        Update(P + "a", b"2", r2),
        Update(P + "b", b"3", r3),
        Update(P + "a", None, r4),
    ]
    assert consumer.statuses == [WAIT_FOR_READY, RESYNC, IN_SYNC]


def test_compaction_while_cut_off_resyncs_with_deletes_and_no_repeats(
    mem: MemoryStore, flaky: FlakyKV, syncer: Syncer, consumer: RecordingConsumer
) -> None:
    ra = mem.create(P + "a", b"a")
    rb = mem.create(P + "b", b"b")
    mem.create(P + "c", b"c")
    syncer.start()
    assert syncer.wait_for_status(IN_SYNC, 5)
    seen = len(consumer.updates)
    flaky.cut()
    mem.delete(P + "a", ra)
    rb2 = mem.update(P + "b", b"b2", rb)
    rd = mem.create(P + "d", b"d")
    mem.compact(mem.revision)
    flaky.down = False
    expected = {P + "b": b"b2", P + "c": b"c", P + "d": b"d"}
    assert consumer.wait_view(expected) == expected
    consumer.wait(lambda: consumer.statuses[-1] == IN_SYNC)
    assert consumer.statuses == [WAIT_FOR_READY, RESYNC, IN_SYNC, RESYNC, IN_SYNC]
    after = consumer.updates[seen:]
    assert after[:2] == [Update(P + "b", b"b2", rb2), Update(P + "d", b"d", rd)]
    assert [(u.key, u.value) for u in after[2:]] == [(P + "a", None)]
    assert consumer.problems == []
    # Live again: a later change still arrives.
    mem.delete(P + "c")
    assert consumer.wait_view({P + "b": b"b2", P + "d": b"d"}) == {P + "b": b"b2", P + "d": b"d"}


def test_several_prefixes_are_in_sync_only_when_all_are_listed(
    mem: MemoryStore, consumer: RecordingConsumer
) -> None:
    q = "/tabby/resources/v1/nodes/"
    mem.create(P + "a", b"pool")
    mem.create(q + "n1", b"node")
    s = Syncer(mem, [P, q], consumer, min_backoff=0.02)
    s.start()
    try:
        assert s.wait_for_status(IN_SYNC, 5)
        assert consumer.view == {P + "a": b"pool", q + "n1": b"node"}
        assert consumer.statuses.count(IN_SYNC) == 1
        mem.create(q + "n2", b"node2")
        consumer.wait(lambda: q + "n2" in consumer.view)
    finally:
        s.stop()
    assert consumer.view[q + "n2"] == b"node2"


def test_stop_is_prompt_and_no_callback_follows(
    mem: MemoryStore, syncer: Syncer, consumer: RecordingConsumer
) -> None:
    syncer.start()
    assert syncer.wait_for_status(IN_SYNC, 5)
    t0 = time.monotonic()
    syncer.stop()
    assert time.monotonic() - t0 < 1.0
    assert not [t for t in threading.enumerate() if t.name.startswith("syncer/")]
    count = len(consumer.updates)
    mem.create(P + "late", b"x")
    time.sleep(0.1)
    assert len(consumer.updates) == count


def test_a_failing_consumer_does_not_stop_the_sync(mem: MemoryStore) -> None:
    class Flaky(RecordingConsumer):
        def on_updates(self, updates: list[Update]) -> None:
            if any(u.key.endswith("boom") for u in updates):
                raise RuntimeError("consumer bug")
            super().on_updates(updates)

    consumer = Flaky()
    s = Syncer(mem, [P], consumer)
    s.start()
    try:
        assert s.wait_for_status(IN_SYNC, 5)
        mem.create(P + "boom", b"x")
        mem.create(P + "ok", b"y")
        assert consumer.wait_view({P + "ok": b"y"}) == {P + "ok": b"y"}
    finally:
        s.stop()
