"""Shared pieces of the interop tests: tabby-bgpd config and the namespace fixture."""

from __future__ import annotations

import secrets
import socket

import pytest

from bgp.interop.harness import Tabby, lan, workdir

TABBY_AS = 65001
BIRD_AS = 65002


def tabby_conf(net, peers: str, extra: str = "", originate: str | None = None) -> str:
    if originate is None:
        originate = """
  - {prefix: 10.1.0.0/24, communities: ["65001:42"], med: 10}
  - {prefix: "fd00:1::/64"}"""
    return f"""
localAS: {TABBY_AS}
routerID: {net.v4(0)}
listenAddress: "::"
listenPort: 179
holdTime: 3
connectRetryTime: 1
originate:{originate}
peers:{peers}
{extra}
"""


def peer_lines(net, idx, asn=BIRD_AS, v6=True, extra="") -> str:
    out = ""
    for i in idx:
        out += f"\n  - {{address: {net.v4(i)}, asNumber: {asn}{extra}}}"
        if v6:
            out += f'\n  - {{address: "{net.v6(i)}", asNumber: {asn}{extra}}}'
    return out


def both_up(tabby: Tabby, net, i: int) -> bool:
    return tabby.established(net.v4(i)) and tabby.established(net.v6(i))


@pytest.fixture(name="env")
def env_fixture():
    """(net, workdir, started) with everything started stopped at the end."""
    started: list = []
    with workdir() as d, lan(4) as net:
        try:
            yield net, d, started
        finally:
            for proc in reversed(started):
                proc.stop()
            for log in sorted(d.glob("*.log")):  # shown by pytest only when a test fails
                print(f"===== {log.name}\n{log.read_text(errors='replace')[-6000:]}")


def loopback_net() -> str:
    """A random 127.x.y. prefix: loopback tests of several helpers never share addresses."""
    return f"127.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}."


def free_port(addr: str) -> int:
    """A TCP port free on ``addr`` right now (the daemon binds it a moment later)."""
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]
