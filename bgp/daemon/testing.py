"""Helpers shared by the loopback speaker tests: a speaker from a few settings, and a
wait on a condition (never a fixed sleep: this machine is shared and slow at times)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bgp.daemon.config import parse_config
from bgp.daemon.speaker import Speaker


def speaker(asn: int, addr: str, peers: list[dict], **extra: Any) -> Speaker:
    """A speaker on ``addr`` (kernel-chosen port), hold time 9 s, connect retry 1 s."""
    doc = {
        "localAS": asn,
        "routerID": addr,
        "listenAddress": addr,
        "listenPort": 0,
        "holdTime": 9,
        "connectRetryTime": 1,
        "peers": peers,
    }
    doc.update(extra)
    return Speaker(parse_config(doc))


async def until(what: str, probe: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``probe`` until it returns something truthy (returned); fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = probe()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
