"""``EtcdStore`` with a lean HTTP/1.1 transport, for the CNI service's hot path.

``datastore.etcd.EtcdStore`` speaks to etcd's JSON gateway through ``http.client``,
which parses every response's headers with the ``email`` package: about a third of
the service's CPU per pod before this module (docs/performance.md, "## CNI"). The
gateway's answers are simple (a status line, a few headers, a Content-Length or
chunked body), so this subclass replaces only the round trip, on one kept-alive raw
socket per thread and endpoint. Everything else (endpoint failover, timeouts, error
mapping, compare-and-swap) is the parent's, unchanged.

It also adds ``read_many``: several reads in one etcd transaction, answered at one
revision (a consistent snapshot), for callers that need a handful of keys at once.
"""

from __future__ import annotations

import socket
import threading
import time
import weakref

from datastore.api import DatastoreError, KeyValue
from datastore.etcd import EtcdStore, _b64, _kv, _reason, _Retryable, prefix_end

_MAX_HEADER_BYTES = 64 * 1024


class _Conn:
    """One kept-alive HTTP/1.1 connection: a socket and the bytes read past a response."""

    __slots__ = ("__weakref__", "buf", "host", "port", "sock")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self.buf.clear()
        if sock is not None:
            sock.close()

    def _fill(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionResetError("connection closed by etcd")
        self.buf += data

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _line(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                out = bytes(self.buf[:end])
                del self.buf[: end + 2]
                return out
            if len(self.buf) > _MAX_HEADER_BYTES:
                raise _Retryable("response header too long")
            self._fill()

    def roundtrip(self, path: str, payload: bytes, timeout: float) -> tuple[int, bytes]:
        if self.sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = sock
        self.sock.settimeout(timeout)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode("ascii")
        self.sock.sendall(head + payload)
        status_line = self._line()
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise _Retryable(f"bad status line from etcd: {status_line[:80]!r}")
        status = int(parts[1])
        try:
            return self._rest_of_response(status)
        except ConnectionResetError:
            # etcd answered part of it: the request ran (or may have). Not safe to
            # send again on this endpoint; the caller sees it as ambiguous.
            self.close()
            raise _Retryable("connection closed by etcd in the middle of a response") from None

    def _rest_of_response(self, status: int) -> tuple[int, bytes]:
        length = -1
        chunked = close = False
        while True:
            line = self._line()
            if not line:
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        if chunked:
            pieces = []
            while True:
                size = int(self._line().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self._line():  # trailers, then the empty line
                        pass
                    break
                pieces.append(self._take(size))
                self._take(2)
            body = b"".join(pieces)
        elif length >= 0:
            body = self._take(length)
        else:  # no length: the body runs to the end of the connection
            while True:
                try:
                    self._fill()
                except ConnectionResetError:
                    break
            body, close = bytes(self.buf), True
            self.buf.clear()
        if close:
            self.close()
        return status, body


class FastEtcdStore(EtcdStore):
    """``EtcdStore`` whose requests skip ``http.client``; see the module docstring."""

    def __init__(self, endpoints: list[str], timeout: float = 5.0) -> None:
        super().__init__(endpoints, timeout)
        self._fast_local = threading.local()
        self._fast_lock = threading.Lock()
        # Weak: a thread's connections go (and their sockets close) when the thread ends.
        self._fast_conns: weakref.WeakSet[_Conn] = weakref.WeakSet()

    def _fast_conn(self, idx: int) -> _Conn:
        conns: dict[int, _Conn] | None = getattr(self._fast_local, "conns", None)
        if conns is None:
            conns = self._fast_local.conns = {}
        conn = conns.get(idx)
        if conn is None:
            ep = self._endpoints[idx]
            conn = conns[idx] = _Conn(ep.host, ep.port)
            with self._fast_lock:
                self._fast_conns.add(conn)
        return conn

    def _roundtrip(self, idx: int, path: str, payload: bytes, deadline: float) -> tuple[int, bytes]:
        conn = self._fast_conn(idx)
        # As the parent: a kept-alive socket closed by etcd while idle never delivered the
        # request, so one retry on a fresh socket is safe.
        for attempt in range(2):
            reused = conn.sock is not None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                conn.close()
                raise _Retryable("timed out")
            try:
                return conn.roundtrip(path, payload, remaining)
            except (ConnectionResetError, BrokenPipeError) as e:
                conn.close()
                if reused and attempt == 0:
                    continue
                raise _Retryable(_reason(e)) from e
            except (OSError, ValueError) as e:
                conn.close()  # a timed-out socket may still get the late answer: drop it
                raise _Retryable(_reason(e)) from e
        raise AssertionError("unreachable")

    def read_many(
        self, gets: list[str], lists: list[str]
    ) -> tuple[list[KeyValue | None], list[list[KeyValue]], int]:
        """Several gets and prefix lists in one round trip, all at one revision.

        Returns (one value or None per get, one sorted list per prefix, revision).
        Lists are not paged: meant for small prefixes (pools, one node's affinities).
        """
        ops: list[dict] = [{"request_range": {"key": _b64(k.encode())}} for k in gets]
        for prefix in lists:
            raw = prefix.encode()
            ops.append({"request_range": {"key": _b64(raw), "range_end": _b64(prefix_end(raw))}})
        resp = self._txn([], ops, [])
        responses = resp.get("responses") or []
        ranges = [(r.get("response_range") or {}).get("kvs") or [] for r in responses]
        if len(ranges) != len(ops):
            raise DatastoreError("etcd answered a batched read with the wrong number of responses")
        got = [_kv(r[0]) if r else None for r in ranges[: len(gets)]]
        listed = [[_kv(d) for d in r] for r in ranges[len(gets) :]]
        return got, listed, int(resp["header"]["revision"])

    def close(self) -> None:
        with self._fast_lock:
            conns, self._fast_conns = list(self._fast_conns), weakref.WeakSet()
        for conn in conns:
            conn.close()
        super().close()
