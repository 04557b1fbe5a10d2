"""Shared pieces of the interop tests: tabby-bgpd config and the namespace fixture."""

from __future__ import annotations

import contextlib
import secrets

import pytest

from bgp.interop.harness import Tabby, lan, stop_all, workdir

TABBY_AS = 65001
BIRD_AS = 65002


def tabby_conf(
    net,
    peers: str,
    extra: str = "",
    originate: str | None = None,
    node: int = 0,
    asn: int = TABBY_AS,
) -> str:
    """tabby-bgpd on node ``node`` (0: the hub) with hold time 3 s."""
    if originate is None:
        originate = """
  - {prefix: 10.1.0.0/24, communities: ["65001:42"], med: 10}
  - {prefix: "fd00:1::/64"}"""
    return f"""
localAS: {asn}
routerID: {net.v4(node)}
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


@contextlib.contextmanager
def _env(nodes: int):
    started: list = []
    with workdir() as d, lan(nodes) as net:
        try:
            yield net, d, started
        finally:
            try:
                stop_all(started)
            finally:
                for log in sorted(d.glob("*.log")):  # shown by pytest only when a test fails
                    print(f"===== {log.name}\n{log.read_text(errors='replace')[-6000:]}")


@pytest.fixture(name="env")
def env_fixture():
    """(net, workdir, started) on 4 nodes; everything in ``started`` is stopped at the end."""
    with _env(4) as env:
        yield env


@pytest.fixture(name="env6")
def env6_fixture():
    """Like ``env`` with 6 nodes (the hub and five peers)."""
    with _env(6) as env:
        yield env


def bird_conf(
    net,
    i: int,
    *,
    asn: int = BIRD_AS,
    k: int | None = None,
    v6: bool = True,
    extra: str = "",
    export_filter: str = "bgp_community.add((65002,7)); bgp_med = 50;",
    password: str | None = None,
) -> str:
    """BIRD on node ``i`` peering with tabby on node 0; static routes 10.20.<k>.0/24 and
    fd00:20:<k>::/64 exported with a community and MED."""
    k = i if k is None else k
    ibgp = asn == TABBY_AS
    common = f"""
  hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 2;
  {"direct;" if ibgp else ""}
  {f'password "{password}";' if password else ""}
  {extra}
"""
    flt = f"if source != RTS_STATIC then reject; {export_filter} accept;"
    gw = "gateway direct;" if ibgp else ""
    conf = f"""
router id {net.v4(i)};
log stderr all;
protocol device {{ scan time 2; }}
protocol static s4 {{ ipv4; route 10.20.{k}.0/24 blackhole; }}
protocol static s6 {{ ipv6; route fd00:20:{k}::/64 blackhole; }}
protocol bgp t4 {{
  local {net.v4(i)} as {asn};
  neighbor {net.v4(0)} as {TABBY_AS};
  {common}
  ipv4 {{ {gw} import all; export filter {{ {flt} }}; }};
}}
"""
    if v6:
        conf += f"""
protocol bgp t6 {{
  local {net.v6(i)} as {asn};
  neighbor {net.v6(0)} as {TABBY_AS};
  {common}
  ipv6 {{ {gw} import all; export filter {{ {flt} }}; }};
}}
"""
    return conf


def loopback_net() -> str:
    """A random 127.x.y. prefix: loopback tests of several helpers never share addresses."""
    return f"127.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}."
