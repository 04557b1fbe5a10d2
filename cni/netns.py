"""Run work inside another network namespace without moving any shared thread.

A thread's network namespace is per OS thread. Each call here starts a fresh thread
that ``setns``es into the target, does the one job and exits, so the namespace of a
thread that does anything else (the service's pool, an event loop) never changes.
Sockets keep the namespace they were created in, which is what makes this work for
netlink and for listeners.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsGone(Exception):
    """The namespace path does not exist (any more), or is not a network namespace."""


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """ctypes ``setns(2)``: Python 3.11's os module does not have it yet."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def exists(path: str) -> bool:
    return bool(path) and os.path.exists(path)


def run_in(path: str, fn: Callable[[], T], timeout: float = 30.0) -> T:
    """Call ``fn()`` on a new thread inside the network namespace at ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise NetnsGone(f"network namespace {path} does not exist") from None
    box: dict[str, object] = {}

    def worker() -> None:
        try:
            try:
                setns(fd)
            except OSError as exc:
                raise NetnsGone(f"cannot enter network namespace {path}: {exc}") from None
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        # The thread ends here, and its namespace with it: nothing to restore.

    try:
        thread = threading.Thread(target=worker, name=f"netns:{os.path.basename(path)}")
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"work in network namespace {path} took over {timeout}s")
    finally:
        os.close(fd)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
