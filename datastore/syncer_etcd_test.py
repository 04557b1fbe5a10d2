"""The syncer against a real etcd: partitions, compaction while away, etcd restarts.

The syncer reaches etcd through a TcpProxy the test can cut, while the test keeps
writing to etcd directly, as other nodes would during a partition.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from datastore.etcd import EtcdStore
from datastore.etcd_fixture import EtcdServer
from datastore.syncer import IN_SYNC, RESYNC, WAIT_FOR_READY, Syncer, Update
from datastore.syncer_testlib import RecordingConsumer
from datastore.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(90)

P = "/tabby/resources/v1/ippools/"


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        yield server


@pytest.fixture
def proxy(etcd: EtcdServer) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", etcd.client_port) as p:
        yield p


def _start(kv: EtcdStore, consumer: RecordingConsumer) -> Syncer:
    s = Syncer(kv, [P], consumer, min_backoff=0.05, max_backoff=0.2)
    s.start()
    return s


def test_compaction_past_syncer_revision_resyncs_to_exact_state_incl_deletes(
    etcd: EtcdServer, proxy: TcpProxy
) -> None:
    direct = EtcdStore([etcd.endpoint])
    via_proxy = EtcdStore([proxy.endpoint], timeout=2.0)
    revs = {name: direct.create(P + name, name.encode()) for name in "abc"}
    consumer = RecordingConsumer()
    syncer = _start(via_proxy, consumer)
    try:
        assert syncer.wait_for_status(IN_SYNC, 10)
        seen = len(consumer.updates)

        proxy.cut()  # the syncer loses etcd; everyone else carries on
        direct.delete(P + "a", revs["a"])
        rb = direct.update(P + "b", b"b2", revs["b"])
        rd = direct.create(P + "d", b"d")
        gone = direct.create(P + "e", b"short-lived")
        direct.delete(P + "e", gone)
        etcd.compact_all()
        time.sleep(0.3)  # the syncer retries against the cut link meanwhile
        proxy.restore()

        expected = {P + "b": b"b2", P + "c": b"c", P + "d": b"d"}
        assert consumer.wait_view(expected) == expected
        consumer.wait(lambda: consumer.statuses[-1] == IN_SYNC)
        assert consumer.statuses == [WAIT_FOR_READY, RESYNC, IN_SYNC, RESYNC, IN_SYNC]
        after = consumer.updates[seen:]
        assert after[:2] == [Update(P + "b", b"b2", rb), Update(P + "d", b"d", rd)]
        assert [(u.key, u.value) for u in after[2:]] == [(P + "a", None)]
        assert consumer.problems == []

        # And it is live again afterwards.
        r = direct.create(P + "f", b"f")
        consumer.wait(lambda: consumer.updates[-1] == Update(P + "f", b"f", r))
        assert consumer.updates[-1] == Update(P + "f", b"f", r)
    finally:
        syncer.stop()


def test_partition_without_compaction_resumes_without_replay(
    etcd: EtcdServer, proxy: TcpProxy
) -> None:
    direct = EtcdStore([etcd.endpoint])
    consumer = RecordingConsumer()
    syncer = _start(EtcdStore([proxy.endpoint], timeout=2.0), consumer)
    try:
        assert syncer.wait_for_status(IN_SYNC, 10)
        r1 = direct.create(P + "a", b"1")
        consumer.wait(lambda: len(consumer.updates) == 1)
        proxy.cut()
        r2 = direct.update(P + "a", b"2", r1)
        r3 = direct.create(P + "b", b"3")
        time.sleep(0.3)
        proxy.restore()
        consumer.wait(lambda: len(consumer.updates) >= 3)
        time.sleep(0.2)  # give a wrongly replayed event the chance to show up
        assert consumer.updates == [
            Update(P + "a", b"1", r1),
            Update(P + "a", b"2", r2),
            Update(P + "b", b"3", r3),
        ]
        assert consumer.statuses == [WAIT_FOR_READY, RESYNC, IN_SYNC]
    finally:
        syncer.stop()


def test_syncer_survives_etcd_restart_and_sees_later_changes(etcd: EtcdServer) -> None:
    store = EtcdStore([etcd.endpoint], timeout=2.0)
    r1 = store.create(P + "a", b"1")
    consumer = RecordingConsumer()
    syncer = _start(store, consumer)
    try:
        assert syncer.wait_for_status(IN_SYNC, 10)
        etcd.stop()
        time.sleep(0.3)
        etcd.start()
        r2 = store.update(P + "a", b"2", r1)
        r3 = store.create(P + "b", b"3")
        expected = {P + "a": b"2", P + "b": b"3"}
        assert consumer.wait_view(expected, timeout=15) == expected
        assert consumer.updates == [
            Update(P + "a", b"1", r1),
            Update(P + "a", b"2", r2),
            Update(P + "b", b"3", r3),
        ]
        assert consumer.problems == []
    finally:
        t0 = time.monotonic()
        syncer.stop()
        assert time.monotonic() - t0 < 2.0


def test_syncer_waits_for_ready_until_etcd_is_reachable(etcd: EtcdServer, proxy: TcpProxy) -> None:
    EtcdStore([etcd.endpoint]).create(P + "a", b"1")
    proxy.cut()
    consumer = RecordingConsumer()
    syncer = _start(EtcdStore([proxy.endpoint], timeout=1.0), consumer)
    try:
        time.sleep(0.3)
        assert syncer.status == WAIT_FOR_READY
        proxy.restore()
        assert syncer.wait_for_status(IN_SYNC, 10)
        assert consumer.view == {P + "a": b"1"}
    finally:
        syncer.stop()
