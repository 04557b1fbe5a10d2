"""A real, private etcd for tests: random loopback ports, a temp data dir, always cleaned up.

Tests across the repo (IPAM, CNI, Felix, the CLI) run against the real engine rather
than a fake, and several helpers run tests at the same time on one machine, so every
server gets its own ports and directory and only ever kills its own process.

    with EtcdServer() as etcd:
        store = EtcdStore([etcd.endpoint])

or, in pytest, load this module as a plugin and request the module-scoped fixture:

    pytest_plugins = ["datastore.etcd_fixture"]

    def test_x(etcd_server: EtcdServer) -> None: ...

(PYTEST_DONT_REWRITE: the module has no test asserts, and tests import it before
pytest loads it as a plugin.)
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from types import TracebackType

import pytest

log = logging.getLogger(__name__)

ETCD_BINARY = "/usr/bin/etcd"
_START_TIMEOUT = 20.0
_START_ATTEMPTS = 3
# The child is killed if the thread that started it dies first (no orphans on a shared
# box). setpriv sets PR_SET_PDEATHSIG before exec; a Python preexec_fn would run Python
# in a forked child of a threaded (grpc) process, which can crash before exec.
_DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"]


def free_port(addr: str = "127.0.0.1") -> int:
    """A TCP port on ``addr`` the kernel just handed out (free now; callers bind it soon).

    Another process may take it in between: etcd start-up is retried for that race.
    Other packages' tests use this too (daemon health and BGP ports).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((addr, 0))
        return int(s.getsockname()[1])


class EtcdServer:
    """One etcd process on 127.0.0.1; ``stop()``/``start()`` keep its data and ports."""

    def __init__(self, binary: str = ETCD_BINARY) -> None:
        self.binary = binary
        self.client_port = 0
        self.peer_port = 0
        self.data_dir = ""
        self._root = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = ""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> EtcdServer:
        self._root = tempfile.mkdtemp(prefix="tabby-etcd-")
        self.data_dir = os.path.join(self._root, "data")
        self._log_path = os.path.join(self._root, "etcd.log")
        try:
            self._first_start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Kill our etcd (only ours) and remove its directory."""
        self.stop()
        if self._root:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = ""

    def _first_start(self) -> None:
        last_error: Exception | None = None
        for _ in range(_START_ATTEMPTS):
            self.client_port, self.peer_port = free_port(), free_port()
            try:
                self.start()
                return
            except RuntimeError as e:  # most likely a port race with another test run
                last_error = e
                self.stop()
                shutil.rmtree(self.data_dir, ignore_errors=True)
        raise RuntimeError(f"etcd did not start after {_START_ATTEMPTS} attempts: {last_error}")

    def start(self) -> None:
        """Start (or restart, keeping data) and wait until etcd answers a read."""
        if self.running:
            return
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            self.binary,
            "--name=tabby-test",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.endpoint}",
            f"--advertise-client-urls={self.endpoint}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=tabby-test={peer}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-outputs=stderr",
            "--log-level=warn",
        ]
        logfile = open(self._log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self._proc = subprocess.Popen(
                _DIE_WITH_PARENT + args,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=logfile,
                start_new_session=True,  # a Ctrl-C to pytest must not race our own cleanup
            )
        finally:
            logfile.close()
        log.info("etcd starting pid=%d endpoint=%s", self._proc.pid, self.endpoint)
        self._wait_ready(_START_TIMEOUT)

    def stop(self) -> None:
        """Kill our etcd process (SIGKILL: tests want an abrupt failure) and reap it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        log.info("etcd stopped pid=%d endpoint=%s", proc.pid, self.endpoint)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"etcd exited early; log tail:\n{self.log_tail()}")
            with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
                # A read through the gateway proves both the gRPC server and the gateway.
                self._post("/v3/kv/range", {"key": _b64("/")}, timeout=1.0)
                return
            time.sleep(0.05)
        raise RuntimeError(f"etcd not ready after {timeout:.0f}s; log tail:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self._log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
        except OSError:
            return "(no log)"

    # --- helpers for tests ---------------------------------------------------------

    def revision(self) -> int:
        resp = self._post("/v3/kv/range", {"key": _b64("/"), "count_only": True})
        return int(resp["header"]["revision"])

    def compact_all(self) -> int:
        """Compact away every old revision (physically), as an operator's compaction would."""
        rev = self.revision()
        try:
            self._post("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        except ValueError as e:
            if "has been compacted" not in str(e):  # nothing written since the last one
                raise
        return rev

    def _post(self, path: str, body: dict, timeout: float = 5.0) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.client_port, timeout=timeout)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise ValueError(f"etcd {path} -> HTTP {resp.status}: {data[:200]!r}")
            return json.loads(data)
        finally:
            conn.close()


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.fixture(scope="module")
def etcd_server() -> Iterator[EtcdServer]:
    """A running private etcd for one test module; killed and removed afterwards."""
    with EtcdServer() as server:
        yield server
