"""Test helpers: throw-away network namespaces and a loopback relay into them.

Only tests import this. Every namespace gets the ``tcn-`` prefix plus random hex so
concurrent helpers never collide, and every helper cleans up on failure too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import threading
from collections.abc import Iterator

from cni import netns

PREFIX = "tcn-"


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_ns(name: str, fn):  # type: ignore[no-untyped-def]
    """Run ``fn`` inside the named namespace (a fresh thread)."""
    return netns.run_in(ns_path(name), fn)


def env_without_cni() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
