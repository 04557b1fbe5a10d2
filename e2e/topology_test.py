"""The clusters come up as described and leave nothing behind, whatever happens inside."""

from __future__ import annotations

import ipaddress
import os
import subprocess

import pytest

from e2e.topology import (
    Cluster,
    TopologyError,
    etcd_healthy,
    iter_cluster_netns,
    list_netns,
    pid_alive,
    sweep_stale,
)


def ping(src, dst: str) -> bool:
    return src.exec(["ping", "-c", "1", "-W", "1", dst], check=False, timeout=5).returncode == 0


def assert_nothing_left(cluster: Cluster, pids: list[int]) -> None:
    assert list(iter_cluster_netns(cluster)) == []
    assert [p for p in pids if pid_alive(p)] == []
    assert cluster._tmp is not None
    assert not cluster._tmp.exists()


def test_l2_nodes_share_one_subnet_and_reach_each_other_and_etcd():
    with Cluster.l2(3) as cluster:
        nodes = cluster.nodes
        assert [n.name for n in nodes] == ["node-0", "node-1", "node-2"]
        subnet = cluster.subnets[0]
        assert all(ipaddress.IPv4Address(n.ip) in subnet for n in nodes)
        assert len({n.ip for n in nodes}) == 3
        assert all(len(ns) <= 15 for ns in cluster.namespaces)
        # The segment's gateway is every node's default route (proxy ARP needs one).
        assert cluster.router is not None and cluster.router.ip == str(subnet[1])
        assert f"default via {subnet[1]}" in nodes[0].iproute("route").stdout
        for a in nodes:
            for b in nodes:
                if a is not b:
                    assert ping(a, b.ip), f"{a.name} cannot ping {b.name} ({b.ip})"
            assert etcd_healthy(a, cluster.etcd_endpoint), f"etcd unreachable from {a.name}"
            assert a.exec(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"
            assert "UP" in a.iproute("link", "show", "lo").stdout
        # Nothing of the cluster lives in the host's namespace.
        host_links = os.popen("ip -o link show").read()
        assert cluster.id not in host_links


def test_l3_subnets_joined_by_router_with_default_routes():
    with Cluster.l3((2, 1)) as cluster:
        a0, a1, b0 = cluster.nodes
        assert cluster.router is not None
        assert a0.subnet_index == a1.subnet_index == 0
        assert b0.subnet_index == 1
        assert ipaddress.IPv4Address(b0.ip) in cluster.subnets[1]
        assert cluster.subnets[0] != cluster.subnets[1]
        assert str(b0.gateway) == str(cluster.subnets[1][1])
        assert f"default via {b0.gateway}" in b0.iproute("route").stdout
        assert ping(a0, b0.ip) and ping(b0, a1.ip)
        # A node in the far subnet reaches etcd (which sits in subnet 0) via the router.
        assert etcd_healthy(b0, cluster.etcd_endpoint)
        ttl = b0.exec(["ping", "-c", "1", "-W", "1", a0.ip]).stdout
        assert "ttl=63" in ttl, "cross-subnet traffic should be routed (one hop)"


def test_teardown_removes_namespaces_processes_and_tmp():
    cluster = Cluster.l2(2)
    with cluster:
        pids = [d.pid for d in cluster.daemons]
        sleeper = cluster.nodes[0].spawn(["sleep", "600"])
        pids.append(sleeper.pid)
        assert len(list(iter_cluster_netns(cluster))) == 5  # switch, router, 2 nodes, etcd
        assert cluster.tmp.exists()
    assert_nothing_left(cluster, pids)


def test_teardown_after_exception_inside_and_logs_are_printed(capsys):
    cluster = Cluster.l2(1)
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), cluster:
        d = cluster.nodes[0].spawn(["sh", "-c", "echo hello-from-daemon; exec sleep 600"])
        d.wait_for_log("hello-from-daemon")
        pids = [x.pid for x in cluster.daemons]
        raise RuntimeError("boom")
    assert_nothing_left(cluster, pids)
    assert "hello-from-daemon" in capsys.readouterr().err


def test_teardown_after_keyboard_interrupt_and_stray_process_in_node():
    cluster = Cluster.l2(1, with_etcd=False)
    with pytest.raises(KeyboardInterrupt), cluster:
        # A process not tracked by spawn (e.g. a plugin's leftover) still dies with the node.
        cluster.nodes[0].exec(["sh", "-c", "sleep 600 >/dev/null 2>&1 &"])
        raise KeyboardInterrupt
    assert list(iter_cluster_netns(cluster)) == []
    assert not cluster._tmp.exists()


def test_half_built_cluster_is_removed_when_etcd_cannot_start():
    before = set(list_netns())
    cluster = Cluster.l3((1, 1), etcd_binary="/bin/false")
    with pytest.raises(TopologyError, match="etcd exited"), cluster:
        pytest.fail("the body must not run when the build failed")
    assert list(iter_cluster_netns(cluster)) == []
    assert not cluster._tmp.exists()
    assert not (set(list_netns()) - before) & set(cluster.namespaces)


def test_cluster_without_etcd_says_so():
    with Cluster.l2(1, with_etcd=False) as cluster, pytest.raises(TopologyError, match="etcd"):
        _ = cluster.etcd_endpoint


def test_bad_shapes_are_rejected_before_anything_is_built():
    with pytest.raises(ValueError, match="router"):
        Cluster([1, 1], with_router=False)
    with pytest.raises(ValueError, match="non-negative"):
        Cluster.l3((1, -1))


def test_sweep_removes_clusters_whose_owner_died_and_teardown_tolerates_it():
    with Cluster.l2(1, with_etcd=False) as cluster:
        sleeper = cluster.nodes[0].spawn(["sleep", "600"])
        dead = subprocess.Popen(["true"])
        dead.wait()
        (cluster.tmp / "owner.pid").write_text(f"{dead.pid}\n")
        removed = sweep_stale()
        assert set(cluster.namespaces) <= set(removed)
        assert list(iter_cluster_netns(cluster)) == []
        assert not pid_alive(sleeper.pid)
    # Teardown found everything already gone and did not complain.
    assert not cluster._tmp.exists()


def test_sweep_leaves_live_clusters_alone():
    with Cluster.l2(1, with_etcd=False) as cluster:
        sweep_stale()
        assert sorted(iter_cluster_netns(cluster)) == sorted(cluster.namespaces)


def test_l2_without_gateway_has_no_router_and_no_default_route():
    with Cluster.l2(1, gateway=False, with_etcd=False) as cluster:
        assert cluster.router is None
        assert "default" not in cluster.nodes[0].iproute("route").stdout
