"""The matrix, route and capture helpers report what really happens on the wire."""

from __future__ import annotations

import time

import pytest

from e2e.connectivity import (
    capture,
    find_routes,
    packet_lines,
    reachability_matrix,
    route_get,
    routes,
)
from e2e.pods import bridge_conflist, create_pod
from e2e.topology import Cluster, TopologyError

REFERENCE = "/usr/lib/cni"


def test_matrix_shows_same_node_reachable_and_cross_node_not_until_routed():
    with Cluster.l2(2, with_etcd=False) as cluster:
        n0, n1 = cluster.nodes
        pods = [
            create_pod(
                n0, "a", "default", bridge_conflist("10.97.0.0/24", n0.state_dir), REFERENCE
            ),
            create_pod(
                n0, "b", "default", bridge_conflist("10.97.0.0/24", n0.state_dir), REFERENCE
            ),
            create_pod(
                n1, "c", "default", bridge_conflist("10.97.1.0/24", n1.state_dir), REFERENCE
            ),
        ]
        started = time.monotonic()
        before = reachability_matrix(pods, deadline=1.5)
        # The deadline is shared: 8 failing probes do not take 8 deadlines.
        assert time.monotonic() - started < 6
        print(before)
        assert not before.ok
        for proto in ("icmp", "tcp"):
            assert before.reachable(proto) == {("a", "b"), ("b", "a")}
        assert "tcp a->c" in "\n".join(before.failures())
        table = before.table().splitlines()
        assert table[2].split()[0] == "a" and "X/X" in table[2] and "ok/ok" in table[2]

        n0.iproute("route", "add", "10.97.1.0/24", "via", n1.ip)
        n1.iproute("route", "add", "10.97.0.0/24", "via", n0.ip)
        after = reachability_matrix(pods, deadline=5)
        print(after)
        after.assert_all_ok()
        assert after.results["tcp"][("c", "a")].detail == "a"  # the right pod answered


def test_matrix_failure_message_names_the_pairs():
    with Cluster.l2(2, with_etcd=False) as cluster:
        n0, n1 = cluster.nodes
        a = create_pod(n0, "a", "default", bridge_conflist("10.96.0.0/24", n0.state_dir), REFERENCE)
        c = create_pod(n1, "c", "default", bridge_conflist("10.96.1.0/24", n1.state_dir), REFERENCE)
        matrix = reachability_matrix([a, c], tcp=False, deadline=0.5)
        with pytest.raises(AssertionError, match=r"icmp a->c") as info:
            matrix.assert_all_ok()
        assert "reachability (icmp" in str(info.value)


def test_routes_parse_the_table_of_a_node():
    with Cluster.l3((1, 1), with_etcd=False) as cluster:
        node = cluster.nodes[1]
        table = routes(node)
        default = find_routes(table, "default")
        assert default and default[0]["gateway"] == str(node.gateway)
        assert default[0]["dev"] == "eth0"
        connected = find_routes(table, str(cluster.subnets[1]))
        assert connected and connected[0]["protocol"] == "kernel"
        far = route_get(node, cluster.nodes[0].ip)
        assert far["gateway"] == str(node.gateway) and far["dev"] == "eth0"


def _vxlan(node, index: int, peers) -> None:
    node.iproute("link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789",
                 "dev", "eth0", "nolearning")  # fmt: skip
    # No IPv6 on the overlay: its MLD/ND chatter would be VXLAN traffic of its own.
    node.sysctl("net.ipv6.conf.vx0.disable_ipv6", 1)
    node.iproute("addr", "add", f"192.168.77.{index + 1}/24", "dev", "vx0")
    node.iproute("link", "set", "vx0", "up")
    for peer in peers:
        node.exec(["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", peer.ip])


def test_capture_sees_vxlan_cross_the_router_and_nothing_when_there_is_none():
    with Cluster.l3((2, 1), with_etcd=False) as cluster:
        a0, a1, b0 = cluster.nodes
        for i, node in enumerate(cluster.nodes):
            _vxlan(node, i, [p for p in cluster.nodes if p is not node])
        router = cluster.router
        # Encapsulated traffic between subnets is seen on the router's far-side port.
        with capture(router, "eth1", f"udp port 4789 and host {b0.ip}", 2, 5) as cap:
            a0.exec(["ping", "-c", "2", "-i", "0.2", "-W", "1", "192.168.77.3"])
        assert len(cap.packets) == 2
        assert all("VXLAN" in p and "vni 42" in p for p in cap.packets)
        assert f"{a0.ip}." in cap.packets[0]
        # Plain traffic within a subnet: no VXLAN on a0's uplink towards a1.
        with capture(a0, "eth0", f"udp port 4789 and host {a1.ip}", 1, 1.5) as none:
            a0.exec(["ping", "-c", "2", "-i", "0.2", "-W", "1", a1.ip])
        assert none.packets == []


def test_capture_with_a_bad_filter_is_a_clear_error():
    with (
        Cluster.l2(1, with_etcd=False) as cluster,
        pytest.raises(TopologyError, match="did not start"),
    ):
        capture(cluster.nodes[0], "eth0", "udp port nonsense", 1, 1)


def test_packet_lines_join_inner_frames_to_their_packet():
    text = (
        "01:32:00.872055 IP 10.0.0.1.3 > 10.0.0.2.4789: VXLAN, flags [I] (0x08), vni 42\n"
        "ARP, Request who-has 192.168.77.3 tell 192.168.77.1, length 28\n"
        "01:32:00.873000 IP 10.0.0.2.3 > 10.0.0.1.4789: VXLAN, flags [I] (0x08), vni 42\n"
    )
    packets = packet_lines(text)
    assert len(packets) == 2
    assert packets[0].endswith("| ARP, Request who-has 192.168.77.3 tell 192.168.77.1, length 28")
