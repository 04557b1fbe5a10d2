"""The kernel handles the managers share: one netns thread, one route socket, sysctls.

Everything here runs in the configured network namespace; the daemon's own threads
never change namespace.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from pyroute2 import IPRoute

from felix.netlink.netns import NetnsRunner
from felix.netlink.programmer import RouteProgrammer

log = logging.getLogger(__name__)
T = TypeVar("T")


class Kernel:
    def __init__(self, netns: str | None, sysctl_root: str = "/proc/sys") -> None:
        self.netns = netns
        self.sysctl_root = sysctl_root
        self.runner = NetnsRunner(netns)
        self.routes = RouteProgrammer(netns, runner=self.runner)

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn in the namespace's thread."""
        return self.runner.run(fn, *args)

    def with_ipr(self, fn: Callable[[IPRoute], T]) -> T:
        """fn(IPRoute) with a pyroute2 socket opened inside the namespace (cold path)."""

        def call() -> T:
            with IPRoute() as ipr:
                return fn(ipr)

        return self.runner.run(call)

    def set_sysctl(self, path: str, value: str) -> bool:
        """Write /proc/sys/<path> in the namespace if it differs; True when written."""
        full = os.path.join(self.sysctl_root, path)

        def write() -> bool:
            with open(full) as f:
                if f.read().strip() == value:
                    return False
            with open(full, "w") as f:
                f.write(value)
            return True

        written = self.runner.run(write)
        if written:
            log.debug("sysctl set path=%s value=%s", path, value)
        return written

    def get_sysctl(self, path: str) -> str:
        full = os.path.join(self.sysctl_root, path)

        def read() -> str:
            with open(full) as f:
                return f.read().strip()

        return self.runner.run(read)

    def close(self) -> None:
        self.routes.close()
        self.runner.close()
