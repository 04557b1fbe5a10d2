"""Test helpers: throwaway network namespaces with unique names, always removed.

Other helpers run tests on the same machine at the same time, so every namespace
gets a random suffix and is deleted in a ``finally`` even when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator


def have_root_netns_tools() -> str | None:
    """None when namespace tests can run here; otherwise the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    return None


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """Run `ip [-n NETNS] ARGS...` and return stdout; raise with stderr on failure."""
    cmd = ["ip"] + (["-n", netns] if netns else []) + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def unique_name(prefix: str = "tfd") -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@contextlib.contextmanager
def temp_netns(prefix: str = "tfd") -> Iterator[str]:
    """A fresh namespace with lo up; deleted (with its links) on exit."""
    name = unique_name(prefix)
    ip("netns", "add", name)
    try:
        ip("link", "set", "lo", "up", netns=name)
        yield name
    finally:
        ip("netns", "del", name, check=False)
