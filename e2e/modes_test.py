"""End-to-end modes: real services on namespace nodes, pods through the real plugin.

Each test turns itself on when the executables it needs are in
``scripts.install.ENTRYPOINTS`` (they land as the other packages are merged) and says
exactly which are missing until then.
"""

from __future__ import annotations

import ipaddress
import json
import pathlib
from collections.abc import Iterator

import pytest

from e2e.connectivity import capture, find_routes, reachability_matrix, route_get, routes
from e2e.nodes import (
    POD_CIDR,
    REFERENCE_PLUGINS,
    VXLAN_DEVICE,
    VXLAN_POD_MTU,
    install_prefix,
    start_tabby_node,
)
from e2e.pods import Pod, create_pod
from e2e.topology import Cluster, Node
from scripts import install as installer

BLOCK_PREFIX = 26  # Calico's default IPAM block size
MODE1_NEEDS = (
    "tabby-node",
    "tabby-felix",
    "tabby",
    "tabby-ipam",
    "tabby-cni-service",
    "tabby-install-cni",
)


def missing_executables(needed: tuple[str, ...]) -> list[str]:
    return [name for name in needed if name not in installer.ENTRYPOINTS]


def requires(*needed: str) -> pytest.MarkDecorator:
    """Skip, naming what is missing, until every executable is in ENTRYPOINTS."""
    missing = missing_executables(needed)
    return pytest.mark.skipif(
        bool(missing),
        reason=f"needs {', '.join(missing)} in scripts.install.ENTRYPOINTS "
        "(not merged into this branch yet)",
    )


@pytest.fixture()
def prefix() -> Iterator[pathlib.Path]:
    with install_prefix() as path:
        yield path


def block_of(ip: str) -> str:
    return str(ipaddress.ip_network(f"{ip}/{BLOCK_PREFIX}", strict=False))


@requires(*MODE1_NEEDS)
def test_direct_routing_l2(prefix: pathlib.Path) -> None:
    """Mode 1: no BGP; Felix programs ``<remote block> via <node IP>`` on one L2 segment."""
    bin_dir = prefix / "bin"
    with Cluster.l2(3) as cluster:
        pods: list[Pod] = []
        for node in cluster.nodes:
            conflist = start_tabby_node(cluster, node, bin_dir)
            cni_path = [str(node.state_dir / "cni-bin"), REFERENCE_PLUGINS]
            for k in range(2):
                pods.append(create_pod(node, f"{node.name}-p{k}", "default", conflist, cni_path))
        assert all(ipaddress.ip_address(p.ip) in ipaddress.ip_network(POD_CIDR) for p in pods)

        matrix = reachability_matrix(pods, deadline=20)
        print(matrix)
        matrix.assert_all_ok()

        for node in cluster.nodes:
            table = routes(node)
            print(node.name, json.dumps(table))
            for pod in pods:
                decision = route_get(node, pod.ip)
                if pod.node is node:
                    # Local pods: a /32 on the pod's cali interface, no gateway.
                    assert decision["dev"].startswith("cali"), decision
                    assert "gateway" not in decision, decision
                else:
                    # Remote pods: their block via the owning node's address, on eth0.
                    assert pod.node is not None
                    assert decision.get("gateway") == pod.node.ip, decision
                    assert decision["dev"] == "eth0", decision
                    block = [r for r in table if r.get("dst") == block_of(pod.ip)]
                    assert block and block[0].get("gateway") == pod.node.ip, (
                        f"{node.name}: no route {block_of(pod.ip)} via {pod.node.ip}"
                    )


# --- nodes through tabby-node, mode 4 (cross-subnet VXLAN) -----------------------------


def tunnel_address(node: Node) -> str:
    """The node's VXLAN tunnel address, as Felix put it on the device."""
    out = node.exec(["ip", "-j", "-4", "addr", "show", "dev", VXLAN_DEVICE]).stdout
    addrs = [a["local"] for link in json.loads(out) for a in link.get("addr_info", [])]
    assert len(addrs) == 1, f"{node.name}: {VXLAN_DEVICE} addresses {addrs}"
    return addrs[0]


def ping(src: Pod, dst: Pod, count: int = 3) -> None:
    src.exec(["ping", "-c", str(count), "-i", "0.2", "-W", "1", dst.ip], timeout=15)


@requires(*MODE1_NEEDS)
def test_cross_subnet_vxlan_l3(prefix: pathlib.Path) -> None:
    """Mode 4: a CrossSubnet VXLAN pool across a router: encapsulated between the two
    subnets, plain within one; nodes run through tabby-node."""
    bin_dir = prefix / "bin"
    with Cluster.l3((2, 1)) as cluster:
        a0, a1, b0 = cluster.nodes
        assert cluster.router is not None and cluster.switch is not None
        pods: dict[str, Pod] = {}
        for node in cluster.nodes:  # one by one: the first creates the CrossSubnet pool
            conflist = start_tabby_node(
                cluster, node, bin_dir, vxlan_mode="CrossSubnet", mtu=VXLAN_POD_MTU
            )
            cni_path = [str(node.state_dir / "cni-bin"), REFERENCE_PLUGINS]
            pods[node.name] = create_pod(node, f"{node.name}-p0", "default", conflist, cni_path)
        pod_a0, pod_a1, pod_b0 = pods["node-0"], pods["node-1"], pods["node-2"]

        matrix = reachability_matrix(list(pods.values()), deadline=30)
        print(matrix)
        matrix.assert_all_ok()

        for node in cluster.nodes:  # the exec probe a DaemonSet would run
            run_dir = node.state_dir / "run"
            node.exec([str(bin_dir / "tabby-node"), "--health-check", f"--run-dir={run_dir}"])
            # Felix published the pod MTU for this node only, under its run dir.
            assert (run_dir / "mtu").read_text().strip() == str(VXLAN_POD_MTU)

        tunnels = {node.name: tunnel_address(node) for node in cluster.nodes}
        assert all(
            ipaddress.ip_address(t) in ipaddress.ip_network(POD_CIDR) for t in tunnels.values()
        )
        assert len(set(tunnels.values())) == 3, tunnels
        for node in cluster.nodes:
            table = routes(node)
            print(node.name, json.dumps(table))
            for pod in pods.values():
                owner = pod.node
                assert owner is not None
                decision = route_get(node, pod.ip)
                block = find_routes(table, block_of(pod.ip))
                if owner is node:
                    assert decision["dev"].startswith("cali"), decision
                elif owner.subnet_index == node.subnet_index:
                    # Same subnet: direct, via the owner's address on eth0.
                    assert (decision["dev"], decision.get("gateway")) == ("eth0", owner.ip)
                    assert block and block[0].get("gateway") == owner.ip, block
                else:
                    # Other subnet: into the tunnel, via the owner's VTEP address.
                    want = (VXLAN_DEVICE, tunnels[owner.name])
                    assert (decision["dev"], decision.get("gateway")) == want, decision
                    assert block and block[0].get("dev") == VXLAN_DEVICE, block
                    assert "onlink" in block[0].get("flags", []), block

        # Between subnets: the router sees VXLAN (node-0 -> node-2, inner pod ICMP) and
        # never the pods' own addresses in the clear.
        with (
            capture(cluster.router, "eth1", "udp port 4789", count=6, timeout=8) as vx,
            capture(
                cluster.router, "eth1", f"not udp port 4789 and host {pod_b0.ip}", 50, 5
            ) as clear,
        ):
            ping(pod_a0, pod_b0)
        print("router vxlan:", *vx.packets, sep="\n  ")
        request = (
            f"{a0.ip}.",
            f"> {b0.ip}.4789: VXLAN",
            f"{pod_a0.ip} > {pod_b0.ip}: ICMP echo request",
        )
        reply = (
            f"{b0.ip}.",
            f"> {a0.ip}.4789: VXLAN",
            f"{pod_b0.ip} > {pod_a0.ip}: ICMP echo reply",
        )
        for want in (request, reply):
            assert any(all(w in p for w in want) for p in vx.packets), (want, vx.packets)
        assert clear.packets == [], clear.packets

        # Within subnet A: node-0 -> node-1 pod traffic is plain on the segment (seen on
        # node-1's switch port), with no VXLAN between the two nodes at all.
        port = f"node{cluster.nodes.index(a1)}"
        pair = f"host {a0.ip} and host {a1.ip}"
        with (
            capture(cluster.switch, port, f"udp port 4789 and {pair}", 50, 5) as vx_a,
            capture(cluster.switch, port, f"icmp and host {pod_a1.ip}", 6, 5) as plain,
        ):
            ping(pod_a0, pod_a1)
        print("segment A plain:", *plain.packets, sep="\n  ")
        assert vx_a.packets == [], vx_a.packets
        assert any(f"{pod_a0.ip} > {pod_a1.ip}: ICMP echo request" in p for p in plain.packets), (
            plain.packets
        )
