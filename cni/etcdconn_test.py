"""FastEtcdStore against a real etcd: the whole KVStore contract, then what it adds.

The contract tests are imported from the datastore package and run again here with
``store`` overridden, so the lean transport is held to exactly what EtcdStore meets.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import uuid
from collections.abc import Iterator

import pytest

from cni.etcdconn import FastEtcdStore
from datastore import kv_contract_test
from datastore.api import Unavailable
from datastore.etcd_fixture import EtcdServer
from datastore.keys import handle_key
from ipam.client import AutoAssignRequest, IPAMClient
from ipam.testing import put_pool

pytest_plugins = ["datastore.etcd_fixture"]  # the etcd_server fixture
pytestmark = pytest.mark.timeout(60)

# Every contract test, collected again in this module.
globals().update(
    {name: fn for name, fn in vars(kv_contract_test).items() if name.startswith("test_")}
)
prefix = kv_contract_test.prefix


@pytest.fixture
def store(etcd_server: EtcdServer) -> Iterator[FastEtcdStore]:
    s = FastEtcdStore([etcd_server.endpoint], timeout=5.0)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def fresh_prefix() -> str:
    return f"/tabby-fast/{uuid.uuid4().hex[:8]}/"


def test_read_many_answers_gets_and_lists_from_one_revision(store, fresh_prefix):
    p = fresh_prefix
    store.create(f"{p}a", b"1")
    store.create(f"{p}l/2", b"two")
    rev = store.create(f"{p}l/1", b"one")
    got, listed, at = store.read_many([f"{p}a", f"{p}missing"], [f"{p}l/", f"{p}none/"])
    assert [g.value if g else None for g in got] == [b"1", None]
    assert [(kv.key, kv.value) for kv in listed[0]] == [(f"{p}l/1", b"one"), (f"{p}l/2", b"two")]
    assert listed[1] == []
    assert at >= rev and got[0] is not None and got[0].mod_revision < rev


def test_large_responses_are_read_whole(store, fresh_prefix):
    # ~300 KiB of answer: whatever framing etcd's gateway picks (length or chunked).
    for i in range(150):
        store.create(f"{fresh_prefix}{i:04d}", bytes([65 + i % 26]) * 2000)
    items, _ = store.list(fresh_prefix)
    assert len(items) == 150
    assert all(kv.value == bytes([65 + i % 26]) * 2000 for i, kv in enumerate(items))


def test_kept_alive_connection_survives_an_etcd_restart(etcd_server, fresh_prefix):
    s = FastEtcdStore([etcd_server.endpoint], timeout=10.0)
    try:
        s.create(f"{fresh_prefix}k", b"v")
        etcd_server.stop()
        etcd_server.start()
        # The idle socket died with the old server; the next call reconnects by itself.
        got = s.get(f"{fresh_prefix}k")
        assert got is not None and got.value == b"v"
    finally:
        s.close()


def test_unreachable_endpoint_is_unavailable_naming_it():
    from cni.testutil import free_port

    url = f"http://127.0.0.1:{free_port()}"
    s = FastEtcdStore([url], timeout=1.0)
    try:
        with pytest.raises(Unavailable, match=f"etcd at {url} unreachable: connection refused"):
            s.get("/x")
    finally:
        s.close()


def test_threads_use_their_own_connections_and_lose_no_update(store, fresh_prefix):
    key = f"{fresh_prefix}counter"
    store.create(key, b"0")

    def bump() -> None:
        for _ in range(20):
            while True:
                cur = store.get(key)
                assert cur is not None
                try:
                    store.update(key, str(int(cur.value) + 1).encode(), cur.mod_revision)
                    break
                except Exception as exc:  # Conflict: re-read and retry
                    assert "modified concurrently" in str(exc)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    final = store.get(key)
    assert final is not None and final.value == b"80"


def test_ipam_snapshot_is_one_round_trip_and_assigns_like_before(store):
    put_pool(store, "fast", "10.68.0.0/16", 26)
    calls: list[str] = []
    original = store._request

    def counted(path: str, body: dict) -> dict:
        calls.append(path)
        return original(path, body)

    store._request = counted  # type: ignore[method-assign]
    client = IPAMClient(store)
    snap, (node,) = client.snapshot("node-f", "net.f1", ["/registry/nodes/node-f"])
    assert calls == ["/v3/kv/txn"] and node is None
    res = client.auto_assign(AutoAssignRequest(handle="net.f1", node="node-f"), snap)
    assert res.ipv4 == [ipaddress.IPv4Interface("10.68.0.0/26")]
    got = store.get(handle_key("net.f1"))
    assert got is not None and json.loads(got.value)["block"] == {"10.68.0.0/26": 1}
    assert client.release_by_handle("net.f1") == ["10.68.0.0"]


def test_response_cut_off_midway_is_unavailable_and_never_sent_twice():
    """A write whose answer broke off may have run: it must not be replayed blindly."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    requests: list[bytes] = []

    def serve() -> None:
        listener.settimeout(5)
        try:
            while True:
                conn, _ = listener.accept()
                with conn:
                    requests.append(conn.recv(65536))
                    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"header":')
        except OSError:
            return

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    s = FastEtcdStore([f"http://127.0.0.1:{port}"], timeout=2.0)
    try:
        with pytest.raises(Unavailable, match="in the middle of a response"):
            s.create("/k", b"v")
        assert len(requests) == 1
    finally:
        s.close()
        listener.close()
        server.join(5)
