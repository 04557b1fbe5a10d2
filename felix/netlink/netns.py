"""Run work inside a network namespace without moving the caller's thread.

A netns is entered with setns(2) in a dedicated thread that lives as long as the
runner; sockets opened there stay bound to that namespace wherever they are used
later, and /proc/sys/net opened there shows that namespace's sysctls.
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(netns: str) -> str:
    """A name from `ip netns` (/run/netns/NAME), or a path such as /proc/PID/ns/net."""
    return netns if "/" in netns else f"/run/netns/{netns}"


def setns_current_thread(netns: str) -> None:
    """Move the calling OS thread (only) into ``netns``."""
    fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsRunner:
    """A worker thread parked in one network namespace (or the current one for None)."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self._q: queue.SimpleQueue[tuple[Callable[[], Any], Future] | None] = queue.SimpleQueue()
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._loop, name=f"netns-{netns or 'host'}", daemon=True
        )
        self._thread.start()
        self._ready.result()  # raises if the namespace could not be entered

    def _loop(self) -> None:
        try:
            if self.netns is not None:
                setns_current_thread(self.netns)
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        while (item := self._q.get()) is not None:
            fn, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call fn(*args, **kwargs) in the namespace and return its result."""
        if self.netns is None and threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        fut: Future[T] = Future()
        self._q.put((lambda: fn(*args, **kwargs), fut))
        return fut.result()

    def close(self) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join(timeout=5)
