"""IPAMClient behaviour: every scenario runs against a real etcd and the memory store.

etcd is the integration that matters; the memory store (same CAS semantics) keeps
the logic quick to iterate on and tells a logic bug from a transport bug.
"""

from __future__ import annotations

import ipaddress
import json

import pytest

from datastore.api import Unavailable
from datastore.etcd import EtcdStore
from datastore.etcd_fixture import EtcdServer
from datastore.keys import IPAM_AFFINITIES, IPAM_BLOCKS, affinity_key, block_key, handle_key
from ipam.block import AllocationBlock
from ipam.client import AutoAssignRequest, IPAMClient
from ipam.errors import (
    AddressInUse,
    CorruptRecord,
    InvalidRequest,
    IPAMError,
    NoSuitablePool,
    NotInPool,
    PoolExhausted,
)
from ipam.testing import RacingStore, put_ipam_config, put_pool, wipe

pytest_plugins = ["datastore.etcd_fixture", "ipam.testing"]  # etcd_server, kv


def _req(handle: str, node: str = "node-a", **kw) -> AutoAssignRequest:
    return AutoAssignRequest(handle=handle, node=node, **kw)


def _block(kv, cidr: str) -> AllocationBlock:
    got = kv.get(block_key(cidr))
    assert got is not None, f"block {cidr} missing"
    return AllocationBlock.from_json(got.value)


def test_first_assign_claims_a_block_and_returns_address_with_block_prefix(kv):
    put_pool(kv, "default", "10.65.0.0/16", 26)
    res = IPAMClient(kv).auto_assign(_req("net.c1", attrs={"pod": "p1"}))
    assert res.ipv4 == [ipaddress.IPv4Interface("10.65.0.0/26")]
    assert res.ipv6 == []
    blk = _block(kv, "10.65.0.0/26")
    assert blk.affinity == "host:node-a"
    assert blk.in_use == 1
    assert blk.attributes[0].secondary == {"pod": "p1"}
    assert json.loads(kv.get(affinity_key("node-a", "10.65.0.0/26")).value) == {
        "state": "confirmed"
    }
    assert json.loads(kv.get(handle_key("net.c1")).value) == {
        "handleID": "net.c1",
        "block": {"10.65.0.0/26": 1},
    }


def test_100_assigns_give_100_distinct_addresses_in_affine_blocks(kv):
    put_pool(kv, "default", "10.65.0.0/16", 26)
    c = IPAMClient(kv)
    ips = [c.auto_assign(_req(f"net.c{i}")).ipv4[0] for i in range(100)]
    assert len({ip.ip for ip in ips}) == 100
    # 100 addresses need two /26 blocks, both the node's own.
    blocks = {ip.network for ip in ips}
    assert blocks == {
        ipaddress.ip_network("10.65.0.0/26"),
        ipaddress.ip_network("10.65.0.64/26"),
    }
    for b in blocks:
        assert _block(kv, str(b)).affinity == "host:node-a"


def test_dual_stack_assign_gives_both_families(kv):
    put_pool(kv, "v4", "10.65.0.0/16", 26)
    put_pool(kv, "v6", "fd00:65::/48", 122)
    res = IPAMClient(kv).auto_assign(_req("net.c1", num_ipv4=1, num_ipv6=2))
    assert [str(i) for i in res.ipv4] == ["10.65.0.0/26"]
    assert [str(i) for i in res.ipv6] == ["fd00:65::/122", "fd00:65::1/122"]


def test_second_node_gets_its_own_block(kv):
    put_pool(kv, "default", "10.65.0.0/16", 26)
    c = IPAMClient(kv)
    a = c.auto_assign(_req("net.a", node="node-a")).ipv4[0]
    b = c.auto_assign(_req("net.b", node="node-b")).ipv4[0]
    assert a.network != b.network
    assert _block(kv, str(b.network)).affinity == "host:node-b"


def test_borrows_from_another_nodes_block_when_pool_has_no_free_block(kv):
    put_pool(kv, "small", "10.66.0.0/29", 30)  # two blocks of 4
    c = IPAMClient(kv)
    c.auto_assign(_req("net.a", node="node-a"))
    c.auto_assign(_req("net.b", node="node-b"))
    # node-a fills its block, then must borrow from node-b's.
    got = c.auto_assign(_req("net.a2", node="node-a", num_ipv4=5)).ipv4
    assert len(got) == 5
    b_block = _block(kv, "10.66.0.4/30")
    assert b_block.affinity == "host:node-b"  # borrowing does not move affinity
    assert b_block.handle_counts()["net.a2"] == 2


def test_strict_affinity_forbids_borrowing(kv):
    put_pool(kv, "small", "10.66.0.0/29", 30)
    put_ipam_config(kv, strict_affinity=True)
    c = IPAMClient(kv)
    c.auto_assign(_req("net.b", node="node-b"))  # takes 10.66.0.0/30
    c.auto_assign(_req("net.a", node="node-a", num_ipv4=4))  # fills 10.66.0.4/30
    with pytest.raises(PoolExhausted, match=r"small \(10.66.0.0/29\)"):
        c.auto_assign(_req("net.a2", node="node-a"))
    # node-b's block still has room and nobody took it.
    assert _block(kv, "10.66.0.0/30").handle_counts() == {"net.b": 1}


def test_exhaustion_rolls_back_partial_assignment(kv):
    put_pool(kv, "small", "10.66.0.0/30", 30)
    c = IPAMClient(kv)
    with pytest.raises(PoolExhausted) as e:
        c.auto_assign(_req("net.big", num_ipv4=5))
    assert e.value.pools == ["small (10.66.0.0/30)"]
    assert _block(kv, "10.66.0.0/30").in_use == 0
    assert kv.get(handle_key("net.big")) is None
    assert c.ips_by_handle("net.big") == []


def test_v6_failure_gives_back_v4_addresses(kv):
    put_pool(kv, "v4", "10.65.0.0/16", 26)
    c = IPAMClient(kv)
    with pytest.raises(NoSuitablePool, match="no IPv6 pools exist"):
        c.auto_assign(_req("net.ds", num_ipv4=1, num_ipv6=1))
    assert _block(kv, "10.65.0.0/26").in_use == 0
    assert kv.get(handle_key("net.ds")) is None


def test_explicit_pool_by_name_and_cidr(kv):
    put_pool(kv, "a", "10.65.0.0/16", 26)
    put_pool(kv, "b", "10.70.0.0/16", 26)
    c = IPAMClient(kv)
    assert str(c.auto_assign(_req("net.1", ipv4_pools=["b"])).ipv4[0].ip) == "10.70.0.0"
    got = c.auto_assign(_req("net.2", ipv4_pools=["10.70.0.0/16"])).ipv4[0]
    assert str(got.ip) == "10.70.0.1"


def test_disabled_or_missing_requested_pool_is_a_clear_error(kv):
    put_pool(kv, "off", "10.65.0.0/16", 26, disabled=True)
    c = IPAMClient(kv)
    with pytest.raises(NoSuitablePool, match=r"requested pool off .* is disabled"):
        c.auto_assign(_req("net.1", ipv4_pools=["off"]))
    with pytest.raises(NoSuitablePool, match="requested pool nope does not exist"):
        c.auto_assign(_req("net.1", ipv4_pools=["nope"]))
    with pytest.raises(NoSuitablePool, match="pool off is disabled"):
        c.auto_assign(_req("net.1"))


def test_node_selector_chooses_pool(kv):
    put_pool(kv, "rack1", "10.65.0.0/16", 26, node_selector="rack == 'r1'")
    put_pool(kv, "rack2", "10.66.0.0/16", 26, node_selector="rack == 'r2'")
    c = IPAMClient(kv)
    got = c.auto_assign(_req("net.1", node_labels={"rack": "r2"})).ipv4[0]
    assert got.ip in ipaddress.ip_network("10.66.0.0/16")
    with pytest.raises(NoSuitablePool, match="nodeSelector"):
        c.auto_assign(_req("net.2", node_labels={"rack": "r9"}))


def test_release_by_handle_twice_is_idempotent(kv):
    put_pool(kv, "default", "10.65.0.0/16", 26)
    c = IPAMClient(kv)
    got = c.auto_assign(_req("net.c1", num_ipv4=2)).ipv4
    assert sorted(c.release_by_handle("net.c1")) == sorted(str(i.ip) for i in got)
    assert c.release_by_handle("net.c1") == []
    assert c.release_by_handle("never-existed") == []
    assert kv.get(handle_key("net.c1")) is None
    blk = _block(kv, "10.65.0.0/26")
    assert blk.in_use == 0
    assert blk.affinity == "host:node-a"  # empty blocks stay affine (as Calico)


def test_released_address_is_reused_last(kv):
    put_pool(kv, "default", "10.65.0.0/16", 26)
    c = IPAMClient(kv)
    first = c.auto_assign(_req("net.1")).ipv4[0]
    c.release_by_handle("net.1")
    assert c.auto_assign(_req("net.2")).ipv4[0] != first


def test_release_ips_reports_unallocated(kv):
    put_pool(kv, "default", "10.65.0.0/16", 26)
    c = IPAMClient(kv)
    ip = str(c.auto_assign(_req("net.1", num_ipv4=2)).ipv4[0].ip)
    assert c.release_ips([ip, "10.65.0.9", "192.0.2.1"]) == ["10.65.0.9", "192.0.2.1"]
    # The handle keeps the one address left, and its count says so.
    assert c.ips_by_handle("net.1") == ["10.65.0.1"]
    assert json.loads(kv.get(handle_key("net.1")).value)["block"] == {"10.65.0.0/26": 1}
    assert c.release_ips(["10.65.0.1"]) == []
    assert kv.get(handle_key("net.1")) is None


def test_assign_fixed_ip_then_in_use(kv):
    put_pool(kv, "default", "10.65.0.0/16", 26)
    c = IPAMClient(kv)
    c.assign_ip("10.65.3.7", "net.fixed", "node-a", {"pod": "x"})
    assert c.ips_by_handle("net.fixed") == ["10.65.3.7"]
    assert _block(kv, "10.65.3.0/26").affinity == "host:node-a"
    with pytest.raises(AddressInUse, match=r"10.65.3.7 .*handle=net.fixed"):
        c.assign_ip("10.65.3.7", "net.other", "node-a")
    assert kv.get(handle_key("net.other")) is None  # failed assign leaves no count
    with pytest.raises(NotInPool, match=r"192\.0\.2\.1"):
        c.assign_ip("192.0.2.1", "net.x", "node-a")
    with pytest.raises(InvalidRequest, match="not an IP address"):
        c.assign_ip("bogus", "net.x", "node-a")


def test_auto_assign_skips_fixed_address(kv):
    put_pool(kv, "default", "10.65.0.0/16", 26)
    c = IPAMClient(kv)
    c.assign_ip("10.65.0.0", "net.fixed", "node-a")
    assert str(c.auto_assign(_req("net.2")).ipv4[0].ip) == "10.65.0.1"


def test_cas_conflict_on_block_is_retried_and_loses_nothing(kv):
    put_pool(kv, "default", "10.65.0.0/16", 26)
    IPAMClient(kv).auto_assign(_req("net.warm"))  # node-a owns 10.65.0.0/26
    other = IPAMClient(kv)

    def second_writer() -> None:
        other.auto_assign(_req("net.rival"))

    racing = RacingStore(kv, IPAM_BLOCKS, second_writer)
    mine = IPAMClient(racing).auto_assign(_req("net.mine")).ipv4[0]
    assert racing.fired == 1
    rival = IPAMClient(kv).ips_by_handle("net.rival")
    assert rival and str(mine.ip) not in rival
    blk = _block(kv, "10.65.0.0/26")
    assert blk.handle_counts() == {"net.warm": 1, "net.rival": 1, "net.mine": 1}
    assert json.loads(kv.get(handle_key("net.mine")).value)["block"] == {"10.65.0.0/26": 1}


def test_lost_block_claim_race_tries_another_block(kv):
    put_pool(kv, "default", "10.65.0.0/16", 26)

    def other_node_claims() -> None:
        IPAMClient(kv).auto_assign(_req("net.b", node="node-b"))

    # Fires before node-a's first block write: the create of 10.65.0.0/26.
    racing = RacingStore(kv, IPAM_BLOCKS, other_node_claims)
    got = IPAMClient(racing).auto_assign(_req("net.a", node="node-a")).ipv4[0]
    assert str(got.network) == "10.65.0.64/26"
    assert _block(kv, "10.65.0.0/26").affinity == "host:node-b"
    # node-a's pending affinity for the lost block was cleaned up.
    keys = [k.key for k in kv.list(IPAM_AFFINITIES + "node-a/")[0]]
    assert keys == [affinity_key("node-a", "10.65.0.64/26")]


def test_pending_affinity_from_crashed_claim_is_finished(kv):
    put_pool(kv, "default", "10.65.0.0/16", 26)
    kv.create(affinity_key("node-a", "10.65.0.0/26"), b'{"state":"pending"}')
    got = IPAMClient(kv).auto_assign(_req("net.a")).ipv4[0]
    assert str(got) == "10.65.0.0/26"
    assert json.loads(kv.get(affinity_key("node-a", "10.65.0.0/26")).value)["state"] == (
        "confirmed"
    )


def test_release_node_affinities_frees_only_empty_blocks(kv):
    put_pool(kv, "small", "10.66.0.0/29", 30)
    c = IPAMClient(kv)
    c.auto_assign(_req("net.keep", num_ipv4=4))
    c.auto_assign(_req("net.gone", num_ipv4=1))
    c.release_by_handle("net.gone")
    assert c.release_node_affinities("node-a") == ["10.66.0.4/30"]
    assert kv.get(block_key("10.66.0.4/30")) is None
    assert kv.get(affinity_key("node-a", "10.66.0.4/30")) is None
    assert _block(kv, "10.66.0.0/30").in_use == 4
    # The freed block is claimable by another node.
    got = c.auto_assign(_req("net.b", node="node-b")).ipv4[0]
    assert str(got.network) == "10.66.0.4/30"


def test_invalid_requests_name_the_field(kv):
    c = IPAMClient(kv)
    with pytest.raises(InvalidRequest, match="handle"):
        c.auto_assign(_req(""))
    with pytest.raises(InvalidRequest, match="node"):
        c.auto_assign(AutoAssignRequest(handle="h", node=""))


def test_cas_conflict_on_handle_is_retried_and_loses_nothing(kv):
    put_pool(kv, "default", "10.65.0.0/16", 26)
    c = IPAMClient(kv)
    c.auto_assign(_req("net.shared"))  # the handle record exists now

    def second_writer() -> None:  # the same handle gains an address elsewhere meanwhile
        IPAMClient(kv).assign_ip("10.65.9.9", "net.shared", "node-a")

    racing = RacingStore(kv, handle_key("net.shared"), second_writer)
    got = IPAMClient(racing).auto_assign(_req("net.shared")).ipv4[0]
    assert racing.fired == 1
    assert sorted(c.ips_by_handle("net.shared")) == sorted(["10.65.0.0", str(got.ip), "10.65.9.9"])
    assert json.loads(kv.get(handle_key("net.shared")).value)["block"] == {
        "10.65.0.0/26": 2,
        "10.65.9.0/26": 1,
    }


def test_datastore_unavailable_on_block_write_passes_through_and_never_undercounts(kv):
    put_pool(kv, "default", "10.65.0.0/16", 26)
    IPAMClient(kv).auto_assign(_req("net.warm"))

    def etcd_goes_away() -> None:
        raise Unavailable("etcd at http://127.0.0.1:1 unreachable: connection refused")

    failing = RacingStore(kv, IPAM_BLOCKS, etcd_goes_away)
    with pytest.raises(Unavailable, match="unreachable"):
        IPAMClient(failing).auto_assign(_req("net.c1"))
    # The write may or may not have landed, so the handle keeps its count ...
    assert json.loads(kv.get(handle_key("net.c1")).value)["block"] == {"10.65.0.0/26": 1}
    assert _block(kv, "10.65.0.0/26").handle_counts() == {"net.warm": 1}
    # ... and the CNI DEL that follows (release by handle) clears it all.
    assert IPAMClient(kv).release_by_handle("net.c1") == []
    assert kv.get(handle_key("net.c1")) is None


def test_corrupt_block_is_an_error_naming_key_and_field(kv):
    put_pool(kv, "default", "10.65.0.0/16", 26)
    kv.create(affinity_key("node-a", "10.65.0.0/26"), b'{"state":"confirmed"}')
    kv.create(block_key("10.65.0.0/26"), b'{"cidr":"10.65.0.0/26","allocations":[]}')
    with pytest.raises(CorruptRecord, match=r"blocks/ipv4/10\.65\.0\.0-26: field allocations"):
        IPAMClient(kv).auto_assign(_req("net.c1"))


def test_strict_affinity_forbids_fixed_ip_in_another_nodes_block(kv):
    put_pool(kv, "default", "10.65.0.0/16", 26)
    put_ipam_config(kv, strict_affinity=True)
    c = IPAMClient(kv)
    c.auto_assign(_req("net.b", node="node-b"))  # node-b owns 10.65.0.0/26
    with pytest.raises(IPAMError, match="strict affinity forbids"):
        c.assign_ip("10.65.0.5", "net.a", "node-a")
    assert kv.get(handle_key("net.a")) is None


def test_auto_allocate_blocks_off_and_max_blocks_per_host(kv):
    put_pool(kv, "default", "10.65.0.0/16", 30)
    put_ipam_config(kv, maxBlocksPerHost=1)
    c = IPAMClient(kv)
    c.auto_assign(_req("net.1", num_ipv4=4))  # fills node-a's one block
    c.auto_assign(_req("net.b", node="node-b"))
    # No second block for node-a: it borrows from node-b's instead.
    got = c.auto_assign(_req("net.2")).ipv4[0]
    assert str(got.network) == "10.65.0.4/30"
    put_ipam_config(kv, strict_affinity=True, autoAllocateBlocks=False)
    with pytest.raises(PoolExhausted):
        c.auto_assign(_req("net.c", node="node-c"))


def test_unreachable_etcd_raises_unavailable_then_recovers():
    with EtcdServer() as etcd:
        store = EtcdStore([etcd.endpoint], timeout=1.0)
        try:
            put_pool(store, "default", "10.65.0.0/16", 26)
            c = IPAMClient(store)
            c.auto_assign(_req("net.1"))
            etcd.stop()
            with pytest.raises(Unavailable):
                c.auto_assign(_req("net.2"))
            etcd.start()
            got = c.auto_assign(_req("net.3")).ipv4[0]
            assert str(got.ip) == "10.65.0.1"
            assert c.ips_by_handle("net.2") == []
        finally:
            store.close()


def test_release_node_affinities_keeps_block_that_gains_an_address_meanwhile(kv):
    put_pool(kv, "default", "10.65.0.0/16", 26)
    c = IPAMClient(kv)
    c.auto_assign(_req("net.1"))
    c.release_by_handle("net.1")

    def late_pod() -> None:  # a fixed address lands between the read and the delete
        IPAMClient(kv).assign_ip("10.65.0.7", "net.late", "node-b")

    racing = RacingStore(kv, block_key("10.65.0.0/26"), late_pod)
    assert IPAMClient(racing).release_node_affinities("node-a") == []
    assert racing.fired == 1
    assert c.ips_by_handle("net.late") == ["10.65.0.7"]
    state = json.loads(kv.get(affinity_key("node-a", "10.65.0.0/26")).value)["state"]
    assert state == "confirmed"


class _CountingStore:
    """Delegates to ``inner`` and records every read, so tests can see what is re-read."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.reads: list[str] = []

    def get(self, key):
        self.reads.append(f"get {key}")
        return self.inner.get(key)

    def list(self, prefix):
        self.reads.append(f"list {prefix}")
        return self.inner.list(prefix)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_assign_from_a_snapshot_reads_only_the_block_again(kv):
    put_pool(kv, "default", "10.66.0.0/16", 26)
    IPAMClient(kv).auto_assign(_req("net.warm"))  # the node owns a block now
    counting = _CountingStore(kv)
    client = IPAMClient(counting)
    snap, extra = client.snapshot("node-a", "net.c2", ["/no/such/key"])
    assert extra == [None]
    counting.reads.clear()
    res = client.auto_assign(_req("net.c2"), snap)
    assert res.ipv4 == [ipaddress.IPv4Interface("10.66.0.1/26")]
    # Config, pools, affinities and the (absent) handle came from the snapshot.
    assert counting.reads == [f"get {block_key('10.66.0.0/26')}"]
    assert json.loads(kv.get(handle_key("net.c2")).value)["block"] == {"10.66.0.0/26": 1}


def test_stale_snapshot_handle_costs_a_retry_never_a_lost_count(kv):
    put_pool(kv, "default", "10.67.0.0/16", 26)
    client = IPAMClient(kv)
    snap, _ = client.snapshot("node-a", "net.c3")
    assert snap.handles == {"net.c3": None}
    # Another writer gives the same handle an address after the snapshot was taken.
    client.assign_ip("10.67.0.9", "net.c3", "node-a")
    res = client.auto_assign(_req("net.c3"), snap)
    assert len(res.ipv4) == 1
    # Both addresses are counted (the stale affinity list may send the second to a
    # fresh block: harmless, the node owns both).
    counts = json.loads(kv.get(handle_key("net.c3")).value)["block"]
    assert sum(counts.values()) == 2
    assert sorted(client.release_by_handle("net.c3")) == sorted(["10.67.0.9", str(res.ipv4[0].ip)])
    assert kv.get(handle_key("net.c3")) is None


def test_snapshot_on_etcd_is_one_round_trip_and_assigns_like_without(etcd_server):
    """``EtcdStore.read_many``: config, pools, affinities, handle and extras in one txn."""
    store = EtcdStore([etcd_server.endpoint])
    try:
        wipe(store)
        put_pool(store, "snap", "10.68.0.0/16", 26)
        calls: list[str] = []
        original = store._request

        def counted(path: str, body: dict) -> dict:
            calls.append(path)
            return original(path, body)

        store._request = counted  # type: ignore[method-assign]
        client = IPAMClient(store)
        snap, (node,) = client.snapshot("node-f", "net.f1", ["/registry/nodes/node-f"])
        assert calls == ["/v3/kv/txn"] and node is None
        res = client.auto_assign(_req("net.f1", node="node-f"), snap)
        assert res.ipv4 == [ipaddress.IPv4Interface("10.68.0.0/26")]
        got = store.get(handle_key("net.f1"))
        assert got is not None and json.loads(got.value)["block"] == {"10.68.0.0/26": 1}
        assert client.release_by_handle("net.f1") == ["10.68.0.0"]
    finally:
        store.close()
