"""The codec against a real peer: gobgpd (Debian package) on loopback.

GoBGP connects to a listener of ours; we decode its OPEN and UPDATEs and check the
routes it advertises, then send UPDATEs built by ``pack_updates`` and ask GoBGP (its
CLI) what it received. Skips, saying why, when gobgpd is not installed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgp.wire import (
    AsPathSegment,
    FourOctetAs,
    Keepalive,
    MessageReader,
    Multiprotocol,
    Open,
    PathAttributes,
    Prefix,
    Update,
    encode_message,
    end_of_rib,
    pack_updates,
)
from bgp.wire.types import AS_SEQUENCE
from datastore.etcd_fixture import free_port

pytestmark = pytest.mark.skipif(
    shutil.which("gobgpd") is None or shutil.which("gobgp") is None,
    reason="gobgpd/gobgp not installed (Debian package gobgpd)",
)

LOCAL_AS = 65001
GOBGP_AS = 65002


def gobgp(api_port: int, *args: str) -> str:
    cmd = ["gobgp", "-u", "127.0.0.1", "-p", str(api_port), *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=10).stdout


@contextlib.contextmanager
def gobgpd(bgp_port: int) -> Iterator[int]:
    api_port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="tbw-gobgp-"))
    conf = tmp / "gobgpd.toml"
    conf.write_text(
        f"""
[global.config]
  as = {GOBGP_AS}
  router-id = "192.0.2.2"
  port = -1
[[neighbors]]
  [neighbors.config]
    neighbor-address = "127.0.0.1"
    peer-as = {LOCAL_AS}
  [neighbors.transport.config]
    remote-port = {bgp_port}
  [neighbors.timers.config]
    connect-retry = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"""
    )
    log = open(tmp / "gobgpd.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        # Killed with this test process even if it is killed first (no stray gobgpd).
        [
            "setpriv",
            "--pdeathsig",
            "KILL",
            "--",
            "gobgpd",
            "-f",
            str(conf),
            "--api-hosts",
            f"127.0.0.1:{api_port}",
            "--pprof-disable",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                gobgp(api_port, "global")
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield api_port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_exchange_with_gobgpd_both_directions() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(20)
    port = listener.getsockname()[1]
    try:
        with gobgpd(port) as api:
            gobgp(
                api, "global", "rib", "-a", "ipv4", "add", "10.1.0.0/24", "community", "65002:100"
            )
            gobgp(api, "global", "rib", "-a", "ipv6", "add", "2001:db8:1::/48")
            conn, _ = listener.accept()
            conn.settimeout(1)
            with conn:
                ours = Open.for_speaker(LOCAL_AS, "192.0.2.1", hold_time=30)
                reader = MessageReader(local_open=ours)
                conn.sendall(encode_message(ours) + encode_message(Keepalive()))
                routes: dict[str, Update] = {}
                theirs = None
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and len(routes) < 2:
                    try:
                        data = conn.recv(65536)
                    except TimeoutError:
                        continue
                    assert data, "gobgpd closed the session"
                    for m in reader.feed(data):
                        if isinstance(m, Open):
                            theirs = m
                        elif isinstance(m, Update):
                            for p in m.nlri:
                                routes[str(p)] = m
                assert theirs is not None and theirs.asn == GOBGP_AS
                assert theirs.find(FourOctetAs) == FourOctetAs(GOBGP_AS)
                assert Multiprotocol(2, 1) in theirs.capabilities
                assert reader.ctx is not None and reader.ctx.families == {(1, 1), (2, 1)}
                v4 = routes["10.1.0.0/24"]
                assert v4.attributes is not None and not v4.errors
                assert v4.attributes.as_path == (AsPathSegment(AS_SEQUENCE, (GOBGP_AS,)),)
                assert v4.attributes.communities == ((65002 << 16) | 100,)
                v6 = routes["2001:db8:1::/48"]
                assert v6.mp_reach_family == (2, 1) and v6.attributes is not None

                # Now the other way: our packed UPDATEs must be accepted by GoBGP.
                nh = ipaddress.IPv4Address("192.0.2.1")  # an attribute only: no traffic is sent
                attrs = PathAttributes(
                    origin=0,
                    as_path=(AsPathSegment(AS_SEQUENCE, (LOCAL_AS, 4200000001)),),
                    next_hop=nh,
                    med=7,
                    large_communities=((LOCAL_AS, 1, 2),),
                )
                sent = [Prefix(f"10.{200 + i // 256}.{i % 256}.0/24") for i in range(300)]
                for raw in pack_updates(attrs, sent, reader.ctx):
                    conn.sendall(raw)
                conn.sendall(end_of_rib())
                deadline = time.monotonic() + 15
                got: set[str] = set()
                while time.monotonic() < deadline:
                    out = gobgp(api, "neighbor", "127.0.0.1", "adj-in", "-a", "ipv4", "-j")
                    got = _prefixes(out)
                    if len(got) >= len(sent):
                        break
                    time.sleep(0.3)
                assert got == {str(p) for p in sent}, out[:800]
                detail = gobgp(api, "global", "rib", "-a", "ipv4", "10.200.5.0/24", "-j")
                (path,) = json.loads(detail)["10.200.5.0/24"]
                by_type = {a["type"]: a for a in path["attrs"]}
                assert by_type[2]["as_paths"][0]["asns"] == [LOCAL_AS, 4200000001]
                assert by_type[3]["nexthop"] == "192.0.2.1"
                assert by_type[4]["metric"] == 7
                assert by_type[32]["value"] == [{"ASN": 65001, "LocalData1": 1, "LocalData2": 2}]
    finally:
        listener.close()


def _prefixes(out: str) -> set[str]:
    """``gobgp ... -j`` prints {prefix: [paths]}."""
    data = json.loads(out) if out.strip() else {}
    return set(data) if isinstance(data, dict) else set()
