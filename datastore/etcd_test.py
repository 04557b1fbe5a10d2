"""What only the real etcd client must get right: failures, endpoints, restarts, paging."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from datastore import etcd as etcd_mod
from datastore.api import PUT, Unavailable, WatchEvent
from datastore.etcd import EtcdStore, prefix_end
from datastore.etcd_fixture import EtcdServer

pytest_plugins = ["datastore.etcd_fixture"]  # the etcd_server fixture

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def own_etcd() -> Iterator[EtcdServer]:
    """A server this test may stop and start without disturbing the module's shared one."""
    with EtcdServer() as server:
        yield server


def _refused_endpoint() -> str:
    """A loopback port nobody listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _prefix() -> str:
    return f"/tabby-test/{uuid.uuid4().hex[:8]}/"


def test_prefix_end_covers_exactly_the_prefix() -> None:
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"") == b"\0"


def test_stopped_etcd_fails_unavailable_fast_naming_endpoint(own_etcd: EtcdServer) -> None:
    store = EtcdStore([own_etcd.endpoint], timeout=2.0)
    store.create("/k", b"v")  # leaves a kept-alive connection behind
    own_etcd.stop()
    for call in (lambda: store.get("/k"), lambda: store.list("/"), lambda: store.watch("/", 0)):
        t0 = time.monotonic()
        with pytest.raises(Unavailable) as info:
            call()
        assert time.monotonic() - t0 < store.timeout + 1.0
        assert str(info.value) == f"etcd at {own_etcd.endpoint} unreachable: connection refused"


def test_silent_etcd_fails_unavailable_within_timeout() -> None:
    # A listener that accepts TCP but never answers: the worst case, a hung server.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
        store = EtcdStore([endpoint], timeout=1.0)
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match="timed out"):
            store.get("/k")
        assert time.monotonic() - t0 < store.timeout + 1.0
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match="timed out"):
            store.watch("/", 0)
        assert time.monotonic() - t0 < store.timeout + 1.0
        store.close()


def test_next_endpoint_is_used_when_the_first_refuses(etcd_server: EtcdServer) -> None:
    dead = _refused_endpoint()
    store = EtcdStore([dead, etcd_server.endpoint], timeout=2.0)
    key = _prefix() + "a"
    rev = store.create(key, b"v")
    kv = store.get(key)
    assert kv is not None and kv.mod_revision == rev
    watch = store.watch(key, rev)
    assert next(iter(watch)) == [WatchEvent(PUT, key, b"v", rev)]
    watch.cancel()
    store.close()


def test_all_endpoints_down_error_names_each(etcd_server: EtcdServer) -> None:
    a, b = _refused_endpoint(), _refused_endpoint()
    store = EtcdStore([a, b], timeout=2.0)
    with pytest.raises(Unavailable) as info:
        store.get("/k")
    assert f"{a}: connection refused" in str(info.value)
    assert f"{b}: connection refused" in str(info.value)


def test_client_recovers_after_etcd_restart_with_data_kept(own_etcd: EtcdServer) -> None:
    store = EtcdStore([own_etcd.endpoint], timeout=3.0)
    rev = store.create("/k", b"v1")
    own_etcd.stop()
    with pytest.raises(Unavailable):
        store.update("/k", b"lost?", rev)
    own_etcd.start()
    # The kept-alive socket died with the old process; the next call must just work.
    rev2 = store.update("/k", b"v2", rev)
    kv = store.get("/k")
    assert kv is not None and (kv.value, kv.mod_revision) == (b"v2", rev2)


def test_watch_raises_unavailable_when_etcd_dies_and_resumes_after_restart(
    own_etcd: EtcdServer,
) -> None:
    store = EtcdStore([own_etcd.endpoint], timeout=3.0)
    r1 = store.create("/w/a", b"1")
    watch = store.watch("/w/", r1 + 1)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in watch:
                pass
        except BaseException as e:
            errors.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.2)
    own_etcd.stop()
    reader.join(5)
    assert not reader.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], Unavailable)
    assert "closed the watch on /w/" in str(errors[0]) or "failed" in str(errors[0])

    own_etcd.start()
    r2 = store.update("/w/a", b"2", r1)
    resumed = store.watch("/w/", r1 + 1)
    assert next(iter(resumed)) == [WatchEvent(PUT, "/w/a", b"2", r2)]
    resumed.cancel()


def test_list_pages_through_many_keys_as_one_snapshot(
    etcd_server: EtcdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(etcd_mod, "_LIST_PAGE", 3)
    store = EtcdStore([etcd_server.endpoint])
    prefix = _prefix()
    keys = [f"{prefix}{i:02d}" for i in range(10)]
    for k in keys:
        store.create(k, k.encode())
    kvs, rev = store.list(prefix)
    assert [kv.key for kv in kvs] == keys
    assert [kv.value for kv in kvs] == [k.encode() for k in keys]
    assert rev == max(kv.mod_revision for kv in kvs)


def test_connections_are_safe_to_share_between_threads(etcd_server: EtcdServer) -> None:
    store = EtcdStore([etcd_server.endpoint])
    prefix = _prefix()
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                store.create(f"{prefix}{n}-{i}", b"x")
                assert store.get(f"{prefix}{n}-{i}") is not None
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    assert len(store.list(prefix)[0]) == 40


def test_bad_endpoint_is_rejected_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="only http://"):
        EtcdStore(["https://127.0.0.1:2379"])
    with pytest.raises(ValueError, match="at least one"):
        EtcdStore([])


def test_read_many_answers_gets_and_lists_from_one_revision(etcd_server: EtcdServer) -> None:
    store = EtcdStore([etcd_server.endpoint])
    p = _prefix()
    store.create(f"{p}a", b"1")
    store.create(f"{p}l/2", b"two")
    rev = store.create(f"{p}l/1", b"one")
    got, listed, at = store.read_many([f"{p}a", f"{p}missing"], [f"{p}l/", f"{p}none/"])
    assert [g.value if g else None for g in got] == [b"1", None]
    assert [(kv.key, kv.value) for kv in listed[0]] == [(f"{p}l/1", b"one"), (f"{p}l/2", b"two")]
    assert listed[1] == []
    assert at >= rev and got[0] is not None and got[0].mod_revision < rev
    store.close()


def test_large_responses_are_read_whole(etcd_server: EtcdServer) -> None:
    # ~300 KiB of answer: whatever framing etcd's gateway picks (length or chunked).
    store = EtcdStore([etcd_server.endpoint])
    p = _prefix()
    for i in range(150):
        store.create(f"{p}{i:04d}", bytes([65 + i % 26]) * 2000)
    items, _ = store.list(p)
    assert len(items) == 150
    assert all(kv.value == bytes([65 + i % 26]) * 2000 for i, kv in enumerate(items))
    store.close()


def test_response_cut_off_midway_is_unavailable_and_never_sent_twice(
    etcd_server: EtcdServer,
) -> None:
    """A write whose answer broke off may have run: it must not be replayed anywhere."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(5)
    port = listener.getsockname()[1]
    requests: list[bytes] = []

    def serve() -> None:
        with contextlib.suppress(OSError):  # the listener closed: done
            while True:
                conn, _ = listener.accept()
                with conn:
                    requests.append(conn.recv(65536))
                    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"header":')

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    # The healthy second endpoint must not get the write either: it would run twice.
    store = EtcdStore([f"http://127.0.0.1:{port}", etcd_server.endpoint], timeout=2.0)
    key = _prefix() + "k"
    try:
        with pytest.raises(Unavailable, match=r"in the middle of a response.*may or may not"):
            store.create(key, b"v")
        assert len(requests) == 1
        direct = EtcdStore([etcd_server.endpoint])
        assert direct.get(key) is None
        direct.close()
    finally:
        store.close()
        listener.close()
        server.join(5)
