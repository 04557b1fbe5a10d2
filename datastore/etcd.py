"""``KVStore`` on etcd v3, spoken through etcd's gRPC-JSON gateway with the standard library.

Why the gateway and not gRPC: the CLI and the CNI executable start once per command,
and importing grpc plus generated etcd stubs costs more than the whole call. The
gateway (``POST /v3/kv/...``, streaming ``/v3/watch``) takes base64 keys and values
and decimal-string int64s, and every etcd 3.4+ serves it on the client port.

Why a small HTTP/1.1 client of its own (``_Conn``) and not ``http.client``: the latter
parses every response's headers with the ``email`` package, about a third of the CNI
service's CPU per pod (docs/performance.md, "## CNI"). The gateway's answers are
simple (status line, a few headers, a Content-Length or chunked body), read here on
one kept-alive socket per thread and endpoint.

Every write is a transaction that compares ``create_revision``/``mod_revision``, so a
concurrent writer is never overwritten silently. Every call is bounded by the store's
timeout across all endpoints; an unreachable etcd is ``Unavailable`` naming the
endpoint and the reason, never a hang. A response cut off midway is ``Unavailable``
too and is never sent again on that endpoint: the write may have run.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import logging
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TypeVar
from urllib.parse import urlsplit

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

log = logging.getLogger(__name__)
T = TypeVar("T")

# gRPC status codes etcd returns through the gateway.
_GRPC_UNAVAILABLE = 14
_GRPC_DEADLINE_EXCEEDED = 4
_COMPACTED_TEXT = "required revision has been compacted"
# Keys per range request when listing: bounds one response's size, and the pages are
# read at one pinned revision so the list is still a consistent snapshot.
_LIST_PAGE = 500
_MAX_HEADER_BYTES = 64 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes) -> bytes:
    """The etcd range_end that selects every key starting with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # empty prefix: every key


def _reason(exc: BaseException) -> str:
    """A short, operator-readable cause for a connection failure."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, BrokenPipeError):
        return "connection closed by etcd"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host ({exc.strerror})"
    if isinstance(exc, OSError) and exc.errno is not None:
        return (exc.strerror or errno.errorcode.get(exc.errno, str(exc))).lower()
    return str(exc) or type(exc).__name__


class _Endpoint:
    def __init__(self, url: str) -> None:
        url = url.strip().rstrip("/")
        if "://" not in url:
            url = f"http://{url}"
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"etcd endpoint {url!r}: only http:// is supported")
        if not parts.hostname:
            raise ValueError(f"etcd endpoint {url!r} has no host")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 2379


class _Retryable(Exception):
    """This endpoint failed in a way the next endpoint might not (connection, no leader)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Ambiguous(Exception):
    """etcd took the request and its answer broke off: it may have run. Sent nowhere
    again (another endpoint would apply a write twice); the caller sees ``Unavailable``."""


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

    def roundtrip(self, path: str, payload: bytes, timeout: float) -> tuple[int, bytes]:
        """POST ``payload``; (HTTP status, body). Connects first if the socket is closed.

        ``ConnectionResetError`` only when etcd sent nothing back (the request may be
        re-sent on a fresh socket); a response broken off after its status line is
        ``_Ambiguous``, because the request ran or may have run.
        """
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
        try:
            return int(parts[1]), self._body()
        except ConnectionResetError:
            self.close()
            raise _Ambiguous("connection closed by etcd in the middle of a response") from None

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

    def _body(self) -> bytes:
        """The headers after the status line, then the body in whichever framing etcd chose."""
        length = -1
        chunked = close = False
        while line := self._line():
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        if chunked:
            body = self._chunked_body()
        elif length >= 0:
            body = self._take(length)
        else:  # no length: the body runs to the end of the connection
            with contextlib.suppress(ConnectionResetError):
                while True:
                    self._fill()
            body, close = bytes(self.buf), True
        if close:
            self.close()
        return body

    def _chunked_body(self) -> bytes:
        pieces = []
        while size := int(self._line().split(b";")[0].strip() or b"0", 16):
            pieces.append(self._take(size))
            self._take(2)  # the CRLF after each chunk
        while self._line():  # trailers, then the empty line
            pass
        return b"".join(pieces)


def _kv(doc: dict) -> KeyValue:
    return KeyValue(
        key=_unb64(doc.get("key")).decode(),
        value=_unb64(doc.get("value")),
        mod_revision=int(doc.get("mod_revision", 0)),
        create_revision=int(doc.get("create_revision", 0)),
    )


def _compare(target: str, key: bytes, result: str, value: int) -> dict:
    field = {"CREATE": "create_revision", "MOD": "mod_revision"}[target]
    return {"target": target, "key": _b64(key), "result": result, field: str(value)}


class EtcdStore:
    """A thread-safe etcd v3 client: one keep-alive HTTP connection per thread and endpoint."""

    def __init__(self, endpoints: list[str], timeout: float = 5.0) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is required")
        self._endpoints = [_Endpoint(e) for e in endpoints]
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        # Weak: a thread's connections go (and their sockets close) when the thread ends.
        self._conns: weakref.WeakSet[_Conn] = weakref.WeakSet()
        self._watches: weakref.WeakSet[EtcdWatch] = weakref.WeakSet()
        self._preferred = 0  # the endpoint that answered last; tried first

    @property
    def endpoints(self) -> list[str]:
        return [e.url for e in self._endpoints]

    # --- transport -----------------------------------------------------------------

    def _order(self) -> list[int]:
        n = len(self._endpoints)
        return [(self._preferred + i) % n for i in range(n)]

    def _unavailable(self, errors: list[tuple[str, str]]) -> Unavailable:
        if len(errors) == 1:
            url, why = errors[0]
            return Unavailable(f"etcd at {url} unreachable: {why}")
        detail = "; ".join(f"{url}: {why}" for url, why in errors)
        return Unavailable(f"no etcd endpoint reachable within {self.timeout:g}s ({detail})")

    def _failover(self, attempt: Callable[[int, float], T], what: str) -> T:
        """``attempt(endpoint index, deadline)`` on each endpoint, the one that answered
        last first, until one does not raise ``_Retryable``; all within the timeout.

        Requests and watches share this, so both fail over alike and an unreachable
        etcd is one ``Unavailable`` naming every endpoint and why.
        """
        deadline = time.monotonic() + self.timeout
        errors: list[tuple[str, str]] = []
        for idx in self._order():
            url = self._endpoints[idx].url
            if time.monotonic() >= deadline:
                errors.append((url, "not tried, timeout spent"))
                continue
            try:
                result = attempt(idx, deadline)
            except _Ambiguous as e:
                raise Unavailable(
                    f"etcd at {url} {what}: {e}; it may or may not have been applied"
                ) from None
            except _Retryable as e:
                log.debug("etcd endpoint failed endpoint=%s what=%s reason=%s", url, what, e)
                errors.append((url, e.reason))
                continue
            self._preferred = idx
            return result
        raise self._unavailable(errors)

    def _request(self, path: str, body: dict) -> dict:
        """POST ``body`` to the first endpoint that answers, all within the timeout."""
        payload = json.dumps(body).encode()

        def attempt(idx: int, deadline: float) -> dict:
            status, data = self._roundtrip(idx, path, payload, deadline)
            return self._decode(self._endpoints[idx], path, status, data)

        return self._failover(attempt, path)

    def _conn(self, idx: int) -> _Conn:
        conns: dict[int, _Conn] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        conn = conns.get(idx)
        if conn is None:
            ep = self._endpoints[idx]
            conn = conns[idx] = _Conn(ep.host, ep.port)
            with self._lock:
                self._conns.add(conn)
        return conn

    def _roundtrip(self, idx: int, path: str, payload: bytes, deadline: float) -> tuple[int, bytes]:
        conn = self._conn(idx)
        # A kept-alive connection may have been closed by an etcd restart while idle; the
        # request then never reached a live server, so one retry on a fresh socket is safe.
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
            except (OSError, ValueError) as e:  # ValueError: a malformed length or chunk size
                conn.close()  # a timed-out socket may still get the late answer: drop it
                raise _Retryable(_reason(e)) from e
        raise AssertionError("unreachable")

    def _decode(self, ep: _Endpoint, path: str, status: int, data: bytes) -> dict:
        try:
            doc = json.loads(data) if data else {}
        except ValueError as e:
            raise _Retryable(f"bad response to {path} (HTTP {status})") from e
        if status == 200:
            return doc
        message = str(doc.get("message") or doc.get("error") or data[:200].decode(errors="replace"))
        code = doc.get("code")
        if code in (_GRPC_UNAVAILABLE, _GRPC_DEADLINE_EXCEEDED) or status in (502, 503):
            raise _Retryable(message)
        if _COMPACTED_TEXT in message:
            raise Compacted(f"etcd at {ep.url}: {message}")
        raise DatastoreError(f"etcd at {ep.url} rejected {path}: {message}")

    def _txn(self, compare: list[dict], success: list[dict], failure: list[dict]) -> dict:
        return self._request(
            "/v3/kv/txn", {"compare": compare, "success": success, "failure": failure}
        )

    # --- KVStore -------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        resp = self._request("/v3/kv/range", {"key": _b64(key.encode())})
        kvs = resp.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        for _ in range(3):
            try:
                return self._list_once(prefix)
            except Compacted:
                # Compacted between two pages of one snapshot: start a new snapshot.
                log.info("list restarted after compaction prefix=%s", prefix)
        return self._list_once(prefix)

    def _list_once(self, prefix: str) -> tuple[list[KeyValue], int]:
        raw = prefix.encode()
        end = _b64(prefix_end(raw))
        out: list[KeyValue] = []
        start = raw
        revision = 0
        while True:
            body: dict = {"key": _b64(start), "range_end": end, "limit": str(_LIST_PAGE)}
            if revision:
                body["revision"] = str(revision)
            resp = self._request("/v3/kv/range", body)
            if not revision:
                revision = int(resp["header"]["revision"])
            kvs = [_kv(d) for d in resp.get("kvs") or []]
            out.extend(kvs)
            if not resp.get("more") or not kvs:
                return out, revision
            start = kvs[-1].key.encode() + b"\0"

    def read_many(
        self, gets: list[str], lists: list[str]
    ) -> tuple[list[KeyValue | None], list[list[KeyValue]], int]:
        """Several gets and prefix lists in one round trip, all at one revision.

        Not part of ``KVStore``: callers that need a handful of keys at once (the CNI
        plugin's ADD, ``IPAMClient.snapshot``) use it when the store has it. One
        read-only transaction, so the answers are a consistent snapshot. Returns (one
        value or None per get, one sorted list per prefix, the revision). Lists are not
        paged: meant for small prefixes (pools, one node's affinities).
        """
        ops: list[dict] = [{"request_range": {"key": _b64(k.encode())}} for k in gets]
        for prefix in lists:
            raw = prefix.encode()
            ops.append({"request_range": {"key": _b64(raw), "range_end": _b64(prefix_end(raw))}})
        resp = self._txn([], ops, [])
        responses = resp.get("responses") or []
        ranges = [(r.get("response_range") or {}).get("kvs") or [] for r in responses]
        if len(ranges) != len(ops):
            raise DatastoreError(
                f"etcd answered a batched read of {len(ops)} ranges with {len(ranges)}"
            )
        got = [_kv(r[0]) if r else None for r in ranges[: len(gets)]]
        listed = [[_kv(d) for d in r] for r in ranges[len(gets) :]]
        return got, listed, int(resp["header"]["revision"])

    def create(self, key: str, value: bytes) -> int:
        k = key.encode()
        resp = self._txn(
            [_compare("CREATE", k, "EQUAL", 0)],
            [{"request_put": {"key": _b64(k), "value": _b64(value)}}],
            [],
        )
        if not resp.get("succeeded"):
            raise AlreadyExists(f"key {key} already exists")
        return int(resp["header"]["revision"])

    def update(self, key: str, value: bytes, expected_revision: int) -> int:
        k = key.encode()
        resp = self._txn(
            [_compare("CREATE", k, "GREATER", 0), _compare("MOD", k, "EQUAL", expected_revision)],
            [{"request_put": {"key": _b64(k), "value": _b64(value)}}],
            [{"request_range": {"key": _b64(k)}}],
        )
        if not resp.get("succeeded"):
            self._raise_cas_failure(key, expected_revision, resp)
        return int(resp["header"]["revision"])

    def delete(self, key: str, expected_revision: int | None = None) -> int:
        k = key.encode()
        if expected_revision is None:
            resp = self._request("/v3/kv/deleterange", {"key": _b64(k)})
            if int(resp.get("deleted", 0)) == 0:
                raise NotFound(f"key {key} not found")
            return int(resp["header"]["revision"])
        resp = self._txn(
            [_compare("CREATE", k, "GREATER", 0), _compare("MOD", k, "EQUAL", expected_revision)],
            [{"request_delete_range": {"key": _b64(k)}}],
            [{"request_range": {"key": _b64(k)}}],
        )
        if not resp.get("succeeded"):
            self._raise_cas_failure(key, expected_revision, resp)
        return int(resp["header"]["revision"])

    @staticmethod
    def _raise_cas_failure(key: str, expected: int, resp: dict) -> None:
        responses = resp.get("responses") or [{}]
        kvs = (responses[0].get("response_range") or {}).get("kvs") or []
        if not kvs:
            raise NotFound(f"key {key} not found")
        now = int(kvs[0].get("mod_revision", 0))
        raise Conflict(
            f"key {key} was modified concurrently (expected revision {expected}, now {now})"
        )

    def watch(self, prefix: str, start_revision: int) -> EtcdWatch:
        w = EtcdWatch(self, prefix, start_revision)
        with self._lock:
            self._watches.add(w)
        return w

    def compact(self, revision: int) -> None:
        try:
            self._request("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        except Compacted:
            log.debug("compaction already past revision=%d", revision)

    def close(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns), weakref.WeakSet()
            watches = list(self._watches)
        for conn in conns:
            conn.close()
        for w in watches:
            w.cancel()


class EtcdWatch:
    """One streaming ``/v3/watch`` on its own socket, read with a small HTTP/1.1 decoder.

    Not a pooled ``_Conn``: the stream never ends, is decoded as it arrives, and must
    be woken from another thread: ``cancel()`` shuts the socket down and the reader
    returns at once.
    """

    def __init__(self, store: EtcdStore, prefix: str, start_revision: int) -> None:
        self.prefix = prefix
        self.start_revision = start_revision
        self.last_revision = start_revision - 1 if start_revision > 0 else 0
        self._cancelled = threading.Event()
        self._buf = bytearray()  # raw bytes from the socket
        self._body = bytearray()  # de-chunked body, split into messages at "\n"
        self._chunked = False
        self._body_done = False
        self._sock: socket.socket | None = None
        self._url = ""
        self._connect(store)

    # --- connection ----------------------------------------------------------------

    def _connect(self, store: EtcdStore) -> None:
        raw = self.prefix.encode()
        create: dict = {"key": _b64(raw), "range_end": _b64(prefix_end(raw))}
        if self.start_revision > 0:
            create["start_revision"] = str(self.start_revision)
        payload = json.dumps({"create_request": create}).encode()

        def attempt(idx: int, deadline: float) -> None:
            ep = store._endpoints[idx]
            try:
                self._open(ep, payload, deadline)
            except OSError as e:
                self._close_sock()
                raise _Retryable(_reason(e)) from e
            except _Retryable:
                self._close_sock()
                raise
            self._url = ep.url

        store._failover(attempt, f"watch {self.prefix}")
        log.debug(
            "watch open endpoint=%s prefix=%s start=%d", self._url, self.prefix, self.start_revision
        )

    def _open(self, ep: _Endpoint, payload: bytes, deadline: float) -> None:
        sock = socket.create_connection((ep.host, ep.port), timeout=deadline - time.monotonic())
        self._sock = sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for opt, val in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, opt):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), val)
        head = (
            f"POST /v3/watch HTTP/1.1\r\nHost: {ep.host}:{ep.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        sock.sendall(head + payload)
        # Headers arrive with etcd's "created" message; wait for them within the deadline.
        while b"\r\n\r\n" not in self._buf:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            data = sock.recv(65536)
            if not data:
                raise _Retryable("connection closed by etcd")
            self._buf += data
        header_blob, _, rest = bytes(self._buf).partition(b"\r\n\r\n")
        self._buf = bytearray(rest)
        lines = header_blob.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if status != 200:
            raise _Retryable(f"watch refused with HTTP {status}")
        sock.settimeout(None)  # from here on, cancel() is what wakes the reader

    def _close_sock(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cancel(self) -> None:
        if self._cancelled.is_set():
            return
        self._cancelled.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in recv()

    # --- stream decoding -----------------------------------------------------------

    def _recv(self) -> bool:
        """Read more raw bytes; False at end of stream."""
        sock = self._sock
        if sock is None:
            return False
        try:
            data = sock.recv(65536)
        except OSError as e:
            if self._cancelled.is_set():
                return False
            raise Unavailable(
                f"etcd at {self._url} watch on {self.prefix} failed: {_reason(e)}"
            ) from e
        if not data:
            return False
        self._buf += data
        return True

    def _dechunk(self) -> None:
        """Move complete chunks from the raw buffer to the body buffer."""
        if not self._chunked:
            self._body += self._buf
            self._buf.clear()
            return
        while not self._body_done:
            line_end = self._buf.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(self._buf[:line_end]).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self._body_done = True
                return
            start = line_end + 2
            if len(self._buf) < start + size + 2:
                return
            self._body += self._buf[start : start + size]
            del self._buf[: start + size + 2]

    def _next_message(self) -> dict | None:
        while True:
            nl = self._body.find(b"\n")
            if nl >= 0:
                line = bytes(self._body[:nl]).strip()
                del self._body[: nl + 1]
                if line:
                    return json.loads(line)
                continue
            before = len(self._body)
            self._dechunk()
            if len(self._body) > before:
                continue
            if self._body_done or not self._recv():
                return None

    def __iter__(self) -> Iterator[list[WatchEvent]]:
        try:
            while not self._cancelled.is_set():
                msg = self._next_message()
                if self._cancelled.is_set():
                    return
                if msg is None:
                    raise Unavailable(
                        f"etcd at {self._url} closed the watch on {self.prefix} "
                        f"(last revision {self.last_revision})"
                    )
                batch = self._handle(msg)
                if batch:
                    yield batch
        finally:
            self._close_sock()

    def _handle(self, msg: dict) -> list[WatchEvent]:
        if "error" in msg:
            err = msg["error"]
            text = err.get("message") or err.get("error") if isinstance(err, dict) else str(err)
            raise Unavailable(f"etcd at {self._url} watch on {self.prefix} failed: {text}")
        result = msg.get("result") or {}
        compact_rev = int(result.get("compact_revision", 0))
        if compact_rev:
            raise Compacted(
                f"watch on {self.prefix} from revision {self.start_revision}: etcd compacted "
                f"history up to revision {compact_rev}; list again",
                compact_rev,
            )
        if result.get("canceled"):
            reason = result.get("cancel_reason") or "no reason given"
            raise Unavailable(f"etcd at {self._url} cancelled the watch on {self.prefix}: {reason}")
        events: list[WatchEvent] = []
        for ev in result.get("events") or []:
            kv = ev.get("kv") or {}
            kind = DELETE if ev.get("type") == "DELETE" else PUT
            rev = int(kv.get("mod_revision", 0))
            events.append(
                WatchEvent(
                    type=kind,
                    key=_unb64(kv.get("key")).decode(),
                    value=_unb64(kv.get("value")) if kind == PUT else None,
                    mod_revision=rev,
                )
            )
            self.last_revision = max(self.last_revision, rev)
        return events
