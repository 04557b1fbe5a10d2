"""tabbyctl bgp peers / bgp rib / node status against two real tabby-bgpd processes."""

from __future__ import annotations

import json
import pathlib
import subprocess
import time

import pytest

from datastore.etcd_fixture import free_port
from scripts.install import install


def wait_for(what: str, probe, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    prefix = tmp_path_factory.mktemp("prefix")
    install(prefix)
    return prefix


@pytest.fixture(scope="module")
def speakers(prefix: pathlib.Path, tmp_path_factory: pytest.TempPathFactory):
    """Speaker A (AS 65001, 127.0.0.1) and B (AS 65002, 127.0.0.2) peering over loopback."""
    d = tmp_path_factory.mktemp("bgpd")
    ports = {"a": free_port("127.0.0.1"), "b": free_port("127.0.0.2")}
    layout = {
        "a": ("127.0.0.1", 65001, "127.0.0.2", 65002, "b", ["10.1.0.0/24", "10.1.1.0/24"]),
        "b": ("127.0.0.2", 65002, "127.0.0.1", 65001, "a", ["10.2.0.0/24"]),
    }
    procs = []
    try:
        for name, (addr, asn, peer, peer_as, other, originate) in layout.items():
            conf = d / f"{name}.yaml"
            conf.write_text(
                f"localAS: {asn}\nrouterID: {addr}\nlistenAddress: {addr}\n"
                f"listenPort: {ports[name]}\nholdTime: 9\nconnectRetryTime: 1\n"
                f"adminSocket: {d / name}.sock\n"
                f"peers:\n  - {{address: {peer}, asNumber: {peer_as}, port: {ports[other]}}}\n"
                f"originate: {json.dumps(originate)}\n"
            )
            log = open(d / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
            procs.append(
                subprocess.Popen(
                    [str(prefix / "bin" / "tabby-bgpd"), "--config", str(conf)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        yield d
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def tabbyctl(prefix: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(prefix / "bin" / "tabbyctl"), "--timeout", "3", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_bgp_peers_shows_the_established_session_with_prefix_counts(prefix, speakers):
    sock = str(speakers / "a.sock")

    def established():
        out = tabbyctl(prefix, "bgp", "peers", "--bgp-socket", sock, "-o", "json")
        peers = json.loads(out.stdout) if out.returncode == 0 else []
        return [p for p in peers if p.get("state") == "Established" and p.get("prefixesReceived")]

    (peer,) = wait_for("A's session with B established with routes", established)
    assert peer["address"] == "127.0.0.2"
    assert peer["asNumber"] == 65002
    assert int(peer["prefixesReceived"]) == 1
    assert int(peer["prefixesAdvertised"]) == 2
    table = tabbyctl(prefix, "bgp", "peers", "--bgp-socket", sock)
    header, row = table.stdout.splitlines()[:2]
    assert header.split()[:2] == ["PEER", "ADDRESS"]
    assert row.split()[0] == "127.0.0.2" and " up " in f" {row} "


def test_bgp_rib_lists_learned_and_local_routes_with_attributes(prefix, speakers):
    sock = str(speakers / "a.sock")

    def rib():
        out = tabbyctl(prefix, "bgp", "rib", "--bgp-socket", sock, "-o", "json")
        entries = json.loads(out.stdout) if out.returncode == 0 else []
        return {e["prefix"]: e for e in entries} if len(entries) >= 3 else None

    entries = wait_for("A's Loc-RIB with 3 routes", rib)
    learned = entries["10.2.0.0/24"]
    assert learned["nextHop"] == "127.0.0.2"
    assert learned["asPath"] == [65002]
    assert learned["fromPeer"] == "127.0.0.2"
    assert learned["best"] is True
    assert entries["10.1.0.0/24"]["fromPeer"] == ""  # originated here
    table = tabbyctl(prefix, "bgp", "rib", "--bgp-socket", sock).stdout
    assert any(line.startswith("* 10.2.0.0/24") and "65002" in line for line in table.splitlines())


def test_node_status_reads_like_calicoctl(prefix, speakers):
    sock = str(speakers / "b.sock")
    wait_for(
        "B established",
        lambda: "Established" in tabbyctl(prefix, "node", "status", "--bgp-socket", sock).stdout,
    )
    out = tabbyctl(prefix, "node", "status", "--bgp-socket", sock).stdout
    assert out.startswith("Tabby process is running.")
    assert "IPv4 BGP status" in out and "127.0.0.1" in out
    assert "No IPv6 peers found." in out


def test_node_status_without_a_daemon_says_so_and_fails(prefix, tmp_path):
    out = tabbyctl(prefix, "node", "status", "--bgp-socket", str(tmp_path / "none.sock"))
    assert out.returncode == 1
    assert out.stdout.startswith("Tabby process is not running.")
    assert "not reachable" in out.stderr
