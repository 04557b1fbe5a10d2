"""tabbyctl as an operator runs it: the installed executable against a real etcd."""

from __future__ import annotations

import json
import pathlib
import subprocess
import time

import pytest
import yaml

from datastore.etcd_fixture import EtcdServer
from scripts.install import install

REPO = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="module")
def tabbyctl(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    prefix = tmp_path_factory.mktemp("prefix")
    install(prefix)
    return prefix / "bin" / "tabbyctl"


@pytest.fixture()
def etcd():
    with EtcdServer() as server:
        yield server


def run(tabbyctl: pathlib.Path, etcd: EtcdServer, *args: str, stdin: str | None = None):
    return subprocess.run(
        [str(tabbyctl), "--etcd-endpoints", etcd.endpoint, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_apply_then_get_round_trips_every_example(tabbyctl, etcd):
    for path in sorted(EXAMPLES.glob("*.yaml")):
        if "invalid" in path.name:
            continue
        applied = run(tabbyctl, etcd, "apply", "-f", str(path))
        assert applied.returncode == 0, applied.stderr
        assert "Successfully applied" in applied.stdout
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            got = run(tabbyctl, etcd, "get", doc["kind"], doc["metadata"]["name"], "-o", "yaml")
            assert got.returncode == 0, got.stderr
            back = yaml.safe_load(got.stdout)
            assert back["spec"].items() >= {k: v for k, v in doc.get("spec", {}).items()}.items(), (
                path.name
            )
            assert back["metadata"]["resourceVersion"]


def test_invalid_pool_is_refused_naming_the_field(tabbyctl, etcd):
    result = run(tabbyctl, etcd, "apply", "-f", str(EXAMPLES / "invalid-pool.yaml"))
    assert result.returncode != 0
    assert "spec.blockSize" in result.stderr
    listed = run(tabbyctl, etcd, "get", "ippools", "-o", "json")
    assert "invalid" not in listed.stdout


def test_create_twice_fails_and_apply_from_stdin_updates(tabbyctl, etcd):
    pool = {
        "apiVersion": "tabby.dev/v1",
        "kind": "IPPool",
        "metadata": {"name": "p1"},
        "spec": {"cidr": "10.70.0.0/16"},
    }
    text = yaml.safe_dump(pool)
    assert run(tabbyctl, etcd, "create", "-f", "-", stdin=text).returncode == 0
    again = run(tabbyctl, etcd, "create", "-f", "-", stdin=text)
    assert again.returncode == 1
    assert "exist" in again.stderr
    pool["spec"]["natOutgoing"] = True
    assert run(tabbyctl, etcd, "apply", "-f", "-", stdin=yaml.safe_dump(pool)).returncode == 0
    got = json.loads(run(tabbyctl, etcd, "get", "ippool", "p1", "-o", "json").stdout)
    assert got["spec"]["natOutgoing"] is True
    assert got["spec"]["blockSize"] == 26  # default filled by validation


def test_overlapping_pool_is_refused(tabbyctl, etcd):
    def pool(name: str, cidr: str) -> str:
        return yaml.safe_dump(
            {
                "apiVersion": "tabby.dev/v1",
                "kind": "IPPool",
                "metadata": {"name": name},
                "spec": {"cidr": cidr},
            }
        )

    assert run(tabbyctl, etcd, "apply", "-f", "-", stdin=pool("a", "10.80.0.0/16")).returncode == 0
    clash = run(tabbyctl, etcd, "apply", "-f", "-", stdin=pool("b", "10.80.4.0/24"))
    assert clash.returncode == 1
    assert "spec.cidr" in clash.stderr


def test_table_output_and_delete(tabbyctl, etcd):
    run(tabbyctl, etcd, "apply", "-f", str(EXAMPLES / "ippools.yaml"))
    table = run(tabbyctl, etcd, "get", "ippools", "-o", "wide")
    assert table.returncode == 0
    header = table.stdout.splitlines()[0].split()
    assert header[:3] == ["NAME", "CIDR", "SELECTOR"]
    assert "VXLANMODE" in header
    name = table.stdout.splitlines()[1].split()[0]
    assert run(tabbyctl, etcd, "delete", "ippool", name).returncode == 0
    missing = run(tabbyctl, etcd, "get", "ippool", name)
    assert missing.returncode == 1
    assert "not found" in missing.stderr


def test_unknown_kind_is_a_one_line_error(tabbyctl, etcd):
    result = run(tabbyctl, etcd, "get", "ippoolz")
    assert result.returncode == 1
    assert result.stderr.startswith("error: unknown resource kind 'ippoolz'")


def test_unreachable_etcd_fails_fast_with_a_clear_message(tabbyctl, etcd):
    etcd.stop()
    start = time.monotonic()
    result = run(tabbyctl, etcd, "get", "ippools")
    elapsed = time.monotonic() - start
    assert result.returncode == 1
    assert elapsed < 10
    assert "unreachable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_delete_node_gives_back_its_tunnel_address_and_empty_blocks(tabbyctl, etcd):
    from datastore.etcd import EtcdStore
    from ipam.client import AutoAssignRequest, IPAMClient

    docs = [
        {"apiVersion": "tabby.dev/v1", "kind": "IPPool", "metadata": {"name": "p"},
         "spec": {"cidr": "10.90.0.0/16", "vxlanMode": "Always"}},
        {"apiVersion": "tabby.dev/v1", "kind": "Node", "metadata": {"name": "gone"},
         "spec": {"bgp": {"ipv4Address": "10.0.0.9/24"}}},
        {"apiVersion": "tabby.dev/v1", "kind": "Node", "metadata": {"name": "busy"},
         "spec": {"bgp": {"ipv4Address": "10.0.0.8/24"}}},
    ]  # fmt: skip
    assert run(tabbyctl, etcd, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs)).returncode == 0
    ipam = IPAMClient(EtcdStore([etcd.endpoint]))
    tunnel = ipam.auto_assign(AutoAssignRequest(handle="vxlan-tunnel-addr-gone", node="gone"))
    ipam.auto_assign(AutoAssignRequest(handle="k8s-pod-network.c1", node="busy"))

    gone = run(tabbyctl, etcd, "delete", "node", "gone")
    assert gone.returncode == 0, gone.stderr
    assert f"Released tunnel address {tunnel.ipv4[0].ip} of node gone" in gone.stdout
    assert "Released 1 IPAM block(s) of node gone" in gone.stdout
    assert ipam.ips_by_handle("vxlan-tunnel-addr-gone") == []

    busy = run(tabbyctl, etcd, "delete", "node", "busy")
    assert busy.returncode == 0, busy.stderr
    assert "1 IPAM block(s) of node busy still hold pod addresses" in busy.stderr
    check = run(tabbyctl, etcd, "ipam", "check")
    assert check.returncode == 1  # the pod address of the gone node is reported
    assert "Found 1 blocks affine to nodes that no longer exist." in check.stdout
