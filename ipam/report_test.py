"""ipam show / check / release data, on a real etcd and the memory store."""

from __future__ import annotations

import json

import pytest

from datastore.keys import affinity_key, block_key, handle_key
from ipam.client import AutoAssignRequest, IPAMClient
from ipam.errors import InvalidRequest
from ipam.report import CountMismatch, LeakedAllocation, OrphanBlock, check, release_ip, show
from ipam.testing import put_pool, put_resource

NET = "k8s-pod-network"


pytest_plugins = ["datastore.etcd_fixture", "ipam.testing"]  # etcd_server, kv


def _node(kv, name: str) -> None:
    put_resource(kv, "nodes", name, {"kind": "Node", "metadata": {"name": name}, "spec": {}})


def _wep(kv, name: str, container_id: str, node: str = "node-a") -> None:
    doc = {
        "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"node": node, "containerID": container_id, "pod": name},
    }
    put_resource(kv, "workloadendpoints", name, doc, namespace="default")


def _pod(c: IPAMClient, kv, cid: str, node: str = "node-a", wep: bool = True) -> str:
    ip = c.auto_assign(AutoAssignRequest(handle=f"{NET}.{cid}", node=node)).ipv4[0]
    if wep:
        _wep(kv, f"pod-{cid}", cid, node)
    return str(ip.ip)


def test_show_counts_per_pool_and_block(kv):
    put_pool(kv, "default", "10.65.0.0/24", 26)
    put_pool(kv, "spare", "10.66.0.0/24", 26, node_selector="never == 'x'")
    c = IPAMClient(kv)
    _pod(c, kv, "aa")
    _pod(c, kv, "bb")
    _pod(c, kv, "cc", node="node-b")
    out = show(kv, show_blocks=True)
    by_name = {p.name: p for p in out.pools}
    assert (by_name["default"].size, by_name["default"].in_use, by_name["default"].free) == (
        256,
        3,
        253,
    )
    assert by_name["default"].blocks == 2
    assert (by_name["spare"].in_use, by_name["spare"].blocks) == (0, 0)
    assert [(b.cidr, b.affinity, b.in_use, b.free) for b in out.blocks] == [
        ("10.65.0.0/26", "host:node-a", 2, 62),
        ("10.65.0.64/26", "host:node-b", 1, 63),
    ]
    assert show(kv).blocks == []


def test_check_is_clean_when_every_allocation_has_an_endpoint(kv):
    put_pool(kv, "default", "10.65.0.0/24", 26)
    _node(kv, "node-a")
    c = IPAMClient(kv)
    _pod(c, kv, "aa")
    _pod(c, kv, "sandbox.2")  # container IDs may contain dots (CNI_CONTAINERID allows them)
    c.assign_ip("10.65.0.9", "vxlan-tunnel-addr-node-a", "node-a")
    rep = check(kv)
    assert rep.ok, rep
    assert (rep.allocations_checked, rep.handles_checked, rep.blocks_checked) == (3, 3, 1)


def test_check_finds_leaked_handle_and_block_of_deleted_node(kv):
    put_pool(kv, "default", "10.65.0.0/24", 26)
    _node(kv, "node-a")
    c = IPAMClient(kv)
    _pod(c, kv, "live")
    leaked_ip = _pod(c, kv, "dead", wep=False)  # the pod is gone, its address is not
    _pod(c, kv, "gone", node="node-b")  # node-b was never (or is no longer) a Node
    rep = check(kv)
    assert not rep.ok
    assert rep.leaked_handles == [f"{NET}.dead"]
    assert LeakedAllocation(leaked_ip, f"{NET}.dead", "10.65.0.0/26") in rep.leaked_allocations
    assert rep.orphan_blocks == [OrphanBlock("10.65.0.64/26", "node-b", 1)]
    assert [(a.node, a.reason) for a in rep.orphan_affinities] == [
        ("node-b", "node does not exist")
    ]
    assert rep.count_mismatches == []


def test_check_finds_count_mismatch_left_by_a_crash(kv):
    put_pool(kv, "default", "10.65.0.0/24", 26)
    _node(kv, "node-a")
    c = IPAMClient(kv)
    _pod(c, kv, "aa")
    # A crash between "handle +1" and the block write leaves a count with no address.
    key = handle_key(f"{NET}.aa")
    cur = kv.get(key)
    kv.update(key, json.dumps({"handleID": f"{NET}.aa", "block": {"10.65.0.0/26": 2}}).encode(),
              cur.mod_revision)  # fmt: skip
    rep = check(kv)
    assert rep.count_mismatches == [CountMismatch(f"{NET}.aa", "10.65.0.0/26", 2, 1)]
    # release_by_handle still cleans it up completely.
    assert c.release_by_handle(f"{NET}.aa") == ["10.65.0.0"]
    assert kv.get(key) is None
    assert check(kv).ok


def test_check_reports_affinity_without_block(kv):
    _node(kv, "node-a")
    kv.create(affinity_key("node-a", "10.65.0.0/26"), b'{"state":"pending"}')
    rep = check(kv)
    assert [(a.cidr, a.state, a.reason) for a in rep.orphan_affinities] == [
        ("10.65.0.0/26", "pending", "block does not exist")
    ]


def test_release_ip_says_whose_it_was(kv):
    put_pool(kv, "default", "10.65.0.0/24", 26)
    c = IPAMClient(kv)
    ip = _pod(c, kv, "aa")
    res = release_ip(kv, ip)
    assert (res.released, res.handle) == (True, f"{NET}.aa")
    assert kv.get(handle_key(f"{NET}.aa")) is None
    assert kv.get(block_key("10.65.0.0/26")) is not None
    again = release_ip(kv, ip)
    assert (again.released, again.handle) == (False, None)
    with pytest.raises(InvalidRequest, match="not an IP address"):
        release_ip(kv, "10.65.0")
