"""Test helpers: throw-away network namespaces, a loopback relay into them, a node.

Only tests import this. Every namespace gets the ``tcn-`` prefix plus random hex so
concurrent helpers never collide, and every helper cleans up on failure too. Test
modules that drive the installed executables load its ``bin_dir`` fixture with
``pytest_plugins = ["cni.testutil"]``.

(PYTEST_DONT_REWRITE: no asserts here, and test modules import it before pytest
loads it as a plugin.)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from cni import install, netns

PREFIX = "tcn-"
T = TypeVar("T")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``tabby`` and ``tabby-ipam`` installed as ``tabby-install-cni`` installs them."""
    d = tmp_path_factory.mktemp("bin")
    install.install_binaries(d)
    return str(d)


def unique(prefix: str = PREFIX) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


def ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")
    return done.stdout


@contextlib.contextmanager
def namespace(name: str | None = None) -> Iterator[str]:
    """A named netns (``/var/run/netns/<name>``) with lo up; deleted on exit."""
    name = name or unique()
    ip("netns", "add", name)
    try:
        ip("link", "set", "lo", "up", ns=name)
        yield name
    finally:
        ip("netns", "del", name, check=False)


def ns_path(name: str) -> str:
    return f"/var/run/netns/{name}"


@contextlib.contextmanager
def node_namespace() -> Iterator[str]:
    """A namespace standing in for a node: lo up and 169.254.1.1 on lo, so pods can ping it.

    On a real host the pod's ARP for 169.254.1.1 is answered by proxy ARP and the
    ping is routed onwards; here the node answers itself.
    """
    with namespace() as name:
        ip("addr", "add", "169.254.1.1/32", "dev", "lo", ns=name)
        yield name


class Relay:
    """Accepts TCP on 127.0.0.1:<port> inside a namespace and pipes to a root-ns address.

    Lets a process in a node namespace reach the test's etcd on the machine's
    loopback. The listener is created inside the namespace by a short-lived thread;
    outgoing sockets are created by threads in the test's own namespace.
    """

    def __init__(self, ns_name: str, target: tuple[str, int]) -> None:
        self.target = target
        self._stop = threading.Event()

        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", target[1]))
            s.listen(64)
            return s

        self._listener = netns.run_in(ns_path(ns_name), make)
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                conn.close()
                continue
            conn.settimeout(None)
            upstream.settimeout(None)
            for s in (conn, upstream):  # no Nagle: etcd requests are small and chatty
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(2)


def in_ns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` inside the named namespace (a fresh thread)."""
    return netns.run_in(ns_path(name), fn)


def env_without_cni() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}


# --- driving the installed plugin as a runtime does -----------------------------------

LIB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Node:
    """A node namespace with a relay to the test's etcd, the installed plugin and,
    optionally, its CNI service. Each call execs the executable with env + stdin."""

    def __init__(
        self,
        etcd_port: int,
        bin_dir: str,
        work_dir: str,
        name: str = "",
        ns: str = "",
    ) -> None:
        """``ns``: use this existing namespace (etcd already reachable in it), no relay."""
        self.bin_dir = bin_dir
        self.work_dir = work_dir
        self.etcd_endpoint = f"http://127.0.0.1:{etcd_port}"
        self.socket = os.path.join(work_dir, f"cni-{secrets.token_hex(3)}.sock")
        self._stack = contextlib.ExitStack()
        try:
            if ns:
                self.ns = ns
            else:
                self.ns = self._stack.enter_context(node_namespace())
                relay = Relay(self.ns, ("127.0.0.1", etcd_port))
                self._stack.callback(relay.close)
            self.name = name or self.ns
        except BaseException:
            self._stack.close()
            raise
        self.service: subprocess.Popen[bytes] | None = None
        self.service_log = os.path.join(work_dir, f"service-{self.ns}.log")

    def start_service(self) -> None:
        env = {**env_without_cni(), "PYTHONPATH": LIB_DIR}
        log = open(self.service_log, "ab")  # noqa: SIM115 (the process owns it)
        self.service = subprocess.Popen(
            [
                *("ip", "netns", "exec", self.ns, sys.executable, "-m", "cni.service"),
                *("--socket", self.socket, "--log-level", "info", "--workers", "10"),
            ],
            env=env,
            stdout=log,
            stderr=log,
        )
        log.close()
        self._stack.callback(self.stop_service)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket):
            if self.service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"service did not start; see {self.service_log}")
            time.sleep(0.05)

    def stop_service(self) -> None:
        if self.service is not None and self.service.poll() is None:
            self.service.terminate()
            try:
                self.service.wait(10)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait()
        self.service = None

    def conf(self, **overrides: object) -> dict:
        base: dict = {
            "cniVersion": "1.1.0",
            "name": "tabby-test",
            "type": "tabby",
            "nodename": self.name,
            "etcd_endpoints": self.etcd_endpoint,
            "etcd_timeout_seconds": 3,
            "mtu": 1400,
            "cni_service_socket": self.socket,
            "ipam": {"type": "tabby-ipam"},
            "log_level": "debug",
        }
        base.update(overrides)
        return base

    def run(
        self,
        command: str,
        conf: dict | str | None,
        *,
        container_id: str = "",
        netns_path: str = "",
        ifname: str = "eth0",
        cni_args: str = "",
        exe: str = "tabby",
        env: dict[str, str] | None = None,
        cni_path: str = "",
    ) -> tuple[int, dict | None, str]:
        """(exit code, parsed stdout or None, stderr)."""
        full_env = {
            **env_without_cni(),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns_path,
            "CNI_IFNAME": ifname,
            "CNI_ARGS": cni_args,
            "CNI_PATH": cni_path or self.bin_dir,
        }
        if env is not None:
            full_env.update(env)
        full_env = {k: v for k, v in full_env.items() if v is not None}
        stdin = conf if isinstance(conf, str) else json.dumps(conf or {})
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns, os.path.join(self.bin_dir, exe)],
            input=stdin.encode(),
            env=full_env,
            capture_output=True,
            timeout=120,
        )
        out = done.stdout.decode().strip()
        return done.returncode, (json.loads(out) if out else None), done.stderr.decode()

    def close(self) -> None:
        self._stack.close()
