"""End-to-end BGP modes: tabby-bgpd in cluster mode on namespace nodes, real Felix
programming what BGP selected, pods through the real plugin, BIRD 2 as the gateway.

* mode 2: full mesh on one L2 segment (3 nodes);
* mode 3: route reflectors (6 nodes, 2 reflectors, mesh off);
* mode 5: gateways: BIRD 2 with a dynamic neighbour range on the router of an L3
  topology, every node peering with it; and the standalone route publisher instead.
Plus: restarting tabby-bgpd does not drop pod traffic (graceful restart), and a node
removed from the cluster has its routes withdrawn everywhere.

Each test skips, naming what is missing, until its executables are installed.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from e2e import bgp_support as bs
from e2e.connectivity import reachability_matrix
from e2e.nodes import install_prefix
from e2e.pods import Pod, create_pod
from e2e.topology import Cluster, Node
from scripts import install as installer

pytestmark = pytest.mark.timeout(120)

MISSING = [n for n in bs.NEEDS if n not in installer.ENTRYPOINTS]
needs_all = pytest.mark.skipif(
    bool(MISSING), reason=f"needs {', '.join(MISSING)} in scripts.install.ENTRYPOINTS"
)
needs_bird = pytest.mark.skipif(
    shutil.which("bird") is None or shutil.which("birdc") is None,
    reason="needs BIRD 2 (Debian package bird2)",
)


@pytest.fixture(scope="module")
def bin_dir() -> Iterator[pathlib.Path]:
    """A fresh ``make install`` prefix for the module, removed afterwards."""
    with install_prefix() as path:
        yield path / "bin"


def pods_per_node(nodes: list[Node], confs: dict[str, str], per_node: int = 1) -> list[Pod]:
    pods = []
    for node in nodes:
        for k in range(per_node):
            pods.append(
                create_pod(
                    node, f"{node.name}-p{k}", "default", confs[node.name], bs.cni_path(node)
                )
            )
    return pods


def remote_blocks(pods: list[Pod], node: Node) -> dict[str, str]:
    """Blocks of pods on other nodes -> the owning node's address."""
    out = {}
    for p in pods:
        assert p.node is not None
        if p.node is not node:
            out[bs.block_of(p.ip)] = p.node.ip
    return out


# ---- mode 2 ----------------------------------------------------------------------------


@needs_all
def test_mode2_full_mesh_blocks_learned_by_bgp_programmed_by_felix(bin_dir: pathlib.Path):
    with Cluster.l2(3) as cluster:
        n0 = cluster.nodes[0]
        for node in cluster.nodes:
            bs.register(cluster, node, bin_dir)
        bs.apply(n0, bin_dir, bs.bgp_configuration(mesh=True))
        confs = {node.name: bs.start_services(cluster, node, bin_dir) for node in cluster.nodes}
        pods = pods_per_node(cluster.nodes, confs)

        for node in cluster.nodes:
            others = [n.ip for n in cluster.nodes if n is not node]
            bs.wait_until(
                f"{node.name} mesh up",
                lambda node=node, others=others: bs.established(node, bin_dir, others),
            )
            want = remote_blocks(pods, node)

            def learned(node=node, want=want) -> bool:
                rib = bs.bgp_rib(node, bin_dir)
                return all(
                    rib.get(b, {}).get("nextHop") == ip and rib[b].get("fromPeer") == ip
                    for b, ip in want.items()
                )

            bs.wait_until(f"{node.name} learns every remote block over BGP", learned)
            for block, ip in want.items():
                bs.wait_until(
                    f"{node.name}: {block} via {ip} proto 80",
                    lambda b=block, ip=ip, node=node: bs.felix_route_via(node, b, ip),
                )
            status = bs.node_status(node, bin_dir)
            print(node.name, status)
            assert status.count("Established") == 2, status
            assert "mesh" in status, status

        matrix = reachability_matrix(pods, deadline=20)
        print(matrix)
        matrix.assert_all_ok()

        # A node removed from the cluster: its block leaves every RIB and kernel table.
        gone = cluster.nodes[2]
        gone_blocks = {bs.block_of(p.ip) for p in pods if p.node is gone}
        bs.tabbyctl(n0, bin_dir, "delete", "node", gone.name)
        for node in cluster.nodes[:2]:
            for block in gone_blocks:
                bs.wait_until(
                    f"{node.name}: {block} withdrawn",
                    lambda b=block, node=node: (
                        b not in bs.bgp_rib(node, bin_dir) and bs.kernel_route(node, b) is None
                    ),
                )
            assert gone.ip not in bs.bgp_peers(node, bin_dir)


# ---- mode 3 ----------------------------------------------------------------------------


@needs_all
def test_mode3_route_reflectors_every_node_learns_every_block(bin_dir: pathlib.Path):
    with Cluster.l2(6) as cluster:
        n0 = cluster.nodes[0]
        rrs, clients = cluster.nodes[:2], cluster.nodes[2:]
        for node in cluster.nodes:
            bs.register(cluster, node, bin_dir)
        docs = [bs.bgp_configuration(mesh=False)]
        for rr in rrs:
            docs.append(
                bs.node_yaml(rr, labels={"route-reflector": "true"}, rr_cluster_id="224.0.0.1")
            )
        # Clients peer with every reflector; reflectors peer with each other. Felix's
        # calc applies a BGPPeer on the nodeSelector side only (Calico's confd also
        # configures the peerSelector side), so the reflectors get their clients from a
        # BGPPeer of their own; a reflector peers with a node without a cluster id as
        # its route-reflector client.
        docs.append(
            bs.bgp_peer(
                "rrs-to-clients",
                nodeSelector="has(route-reflector)",
                peerSelector="!has(route-reflector)",
            )
        )
        docs.append(
            bs.bgp_peer(
                "to-rrs", nodeSelector="!has(route-reflector)", peerSelector="has(route-reflector)"
            )
        )
        docs.append(
            bs.bgp_peer(
                "rr-mesh", nodeSelector="has(route-reflector)", peerSelector="has(route-reflector)"
            )
        )
        bs.apply(n0, bin_dir, *docs)
        confs = {node.name: bs.start_services(cluster, node, bin_dir) for node in cluster.nodes}
        pods = pods_per_node(cluster.nodes, confs)

        rr_ips = [rr.ip for rr in rrs]
        for rr in rrs:
            want = [n.ip for n in cluster.nodes if n is not rr]
            bs.wait_until(
                f"{rr.name} peers with all",
                lambda rr=rr, w=want: bs.established(rr, bin_dir, w),
                40,
            )
        for node in clients:
            bs.wait_until(
                f"{node.name} up with both RRs",
                lambda node=node: bs.established(node, bin_dir, rr_ips),
                40,
            )
            peers = bs.bgp_peers(node, bin_dir)
            # No mesh: a client peers with the reflectors only.
            assert sorted(peers) == sorted(rr_ips), peers
        for node in cluster.nodes:
            want = remote_blocks(pods, node)

            def learned(node=node, want=want) -> bool:
                rib = bs.bgp_rib(node, bin_dir)
                return all(rib.get(b, {}).get("nextHop") == ip for b, ip in want.items())

            bs.wait_until(f"{node.name} learns all {len(want)} remote blocks", learned, 30)
            for block, ip in want.items():
                bs.wait_until(
                    f"{node.name}: {block} via {ip} proto 80",
                    lambda b=block, ip=ip, node=node: bs.felix_route_via(node, b, ip),
                )
        # Client to client goes through a reflector: the owner is still the next hop.
        c0 = clients[0]
        rib = bs.bgp_rib(c0, bin_dir)
        far = next(p for p in pods if p.node is clients[1])
        entry = rib[bs.block_of(far.ip)]
        assert entry["nextHop"] == clients[1].ip and entry["fromPeer"] in rr_ips, entry

        sample = [p for p in pods if p.node in (rrs[0], clients[0], clients[-1])]
        matrix = reachability_matrix(sample, deadline=20)
        print(matrix)
        matrix.assert_all_ok()


# ---- mode 5 ----------------------------------------------------------------------------


def _gateway_cluster_setup(cluster: Cluster, bin_dir: pathlib.Path) -> bs.Bird:
    assert cluster.router is not None
    fabric = "172.31.0.0/16"
    for node in cluster.nodes:
        bs.register(cluster, node, bin_dir)
    return bs.Bird(
        cluster.router,
        bs.bird_gateway_conf(cluster.router.ip, 65000, fabric, bs.CLUSTER_AS),
    )


def _bird_learns_blocks(bird: bs.Bird, pods: list[Pod], timeout: float = 30) -> None:
    for p in pods:
        assert p.node is not None
        block = bs.block_of(p.ip)
        bs.wait_until(
            f"BIRD has {block} via {p.node.ip}",
            lambda b=block, ip=p.node.ip: bird.next_hops(b) == {ip},
            timeout,
        )


@needs_all
@needs_bird
def test_mode5_gateway_bird_dynamic_range_learns_every_block_and_survives_restart(
    bin_dir: pathlib.Path,
):
    with Cluster.l3((2, 1)) as cluster:
        assert cluster.router is not None
        n0 = cluster.nodes[0]
        bird = _gateway_cluster_setup(cluster, bin_dir)
        bs.apply(
            n0,
            bin_dir,
            bs.bgp_configuration(mesh=False),
            bs.bgp_peer("gateway", peerIP=cluster.router.ip, asNumber=65000),
        )
        confs = {node.name: bs.start_services(cluster, node, bin_dir) for node in cluster.nodes}
        pods = pods_per_node(cluster.nodes, confs)
        for node in cluster.nodes:
            bs.wait_until(
                f"{node.name} peers with the gateway",
                lambda node=node: bs.established(node, bin_dir, [cluster.router.ip]),
            )
            assert bs.bgp_peers(node, bin_dir)[cluster.router.ip]["type"] == "global"
        _bird_learns_blocks(bird, pods)
        print(bird.cli("show", "protocols"))

        # Across subnets the only route is the gateway's, learned over BGP.
        matrix = reachability_matrix(pods, deadline=20)
        print(matrix)
        matrix.assert_all_ok()

        # Kill tabby-bgpd on the node alone in its subnet and start it again: BIRD keeps
        # its routes as stale (graceful restart), so pings across do not stop.
        lonely = cluster.nodes[2]
        target = next(p for p in pods if p.node is lonely)
        source = next(p for p in pods if p.node is n0)
        daemon = next(d for d in cluster.daemons if d.name == f"{lonely.name}-bgpd")
        ping = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                source.netns,
                "ping",
                "-c",
                "60",
                "-i",
                "0.1",
                "-W",
                "1",
                target.ip,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            time.sleep(0.5)
            daemon.popen.send_signal(signal.SIGKILL)
            daemon.popen.wait(5)
            time.sleep(1.0)
            assert bird.next_hops(bs.block_of(target.ip)) == {lonely.ip}, "route dropped"
            bs.start_bgpd(lonely, bin_dir)
            bs.wait_until(
                "restarted bgpd re-peers",
                lambda: bs.established(lonely, bin_dir, [cluster.router.ip]),
            )
            out, _ = ping.communicate(timeout=30)
        finally:
            if ping.poll() is None:
                ping.kill()
                ping.wait()
        print(out)
        assert " 0% packet loss" in out, out
        _bird_learns_blocks(bird, [target])


@needs_all
@needs_bird
def test_mode5_route_publisher_advertises_every_block_to_the_gateway(bin_dir: pathlib.Path):
    with Cluster.l3((2, 1)) as cluster:
        assert cluster.router is not None and cluster.etcd is not None
        n0 = cluster.nodes[0]
        bird = _gateway_cluster_setup(cluster, bin_dir)
        bs.apply(n0, bin_dir, bs.bgp_configuration(mesh=False))
        # No node speaks BGP; one publisher (in the etcd namespace) speaks for all.
        confs = {
            node.name: bs.start_services(cluster, node, bin_dir, bgpd=False)
            for node in cluster.nodes
        }
        pods = pods_per_node(cluster.nodes, confs)
        conf = cluster.tmp / "publisher.yaml"
        conf.write_text(
            f"localAS: {bs.CLUSTER_AS}\n"
            f"routerID: {cluster.etcd.ip}\n"
            "listenPort: 0\n"
            "connectRetryTime: 1\n"
            f"peers: [{{address: {cluster.router.ip}, asNumber: 65000}}]\n"
        )
        cluster.etcd.spawn(
            [
                str(bin_dir / "tabby-bgpd"),
                "--publish-from-datastore",
                f"--etcd-endpoints={cluster.etcd_endpoint}",
                f"--config={conf}",
            ],
            name="publisher",
        )
        _bird_learns_blocks(bird, pods)
        matrix = reachability_matrix(pods, deadline=20)
        print(matrix)
        matrix.assert_all_ok()
        # A node removed from the cluster: the publisher withdraws its blocks.
        gone = cluster.nodes[2]
        bs.tabbyctl(n0, bin_dir, "delete", "node", gone.name)
        for p in pods:
            if p.node is gone:
                block = bs.block_of(p.ip)
                bs.wait_until(f"BIRD lost {block}", lambda b=block: not bird.next_hops(b))


@needs_all
@needs_bird
def test_felix_keeps_learned_routes_while_bgpd_restarts_until_its_end_of_rib(
    bin_dir: pathlib.Path,
):
    """Graceful restart on the node itself: the learned route to another subnet's
    block stays in the kernel while tabby-bgpd is killed and restarted."""
    with Cluster.l3((1, 1)) as cluster:
        assert cluster.router is not None
        n0, n1 = cluster.nodes
        for node in cluster.nodes:
            bs.register(cluster, node, bin_dir)
        bird = bs.Bird(
            cluster.router,
            bs.bird_reflector_conf(cluster.router.ip, bs.CLUSTER_AS, "172.31.0.0/16"),
        )
        docs = [bs.bgp_configuration(mesh=False)]
        for node in cluster.nodes:
            # Each node peers with the gateway address of its own subnet.
            docs.append(
                bs.bgp_peer(
                    f"gw-{node.name}",
                    node=node.name,
                    peerIP=str(node.gateway),
                    asNumber=bs.CLUSTER_AS,
                )
            )
        bs.apply(n0, bin_dir, *docs)
        confs = {node.name: bs.start_services(cluster, node, bin_dir) for node in cluster.nodes}
        pods = pods_per_node(cluster.nodes, confs)
        far = next(p for p in pods if p.node is n1)
        block, gw = bs.block_of(far.ip), str(n0.gateway)
        bs.wait_until(
            f"{n0.name}: {block} via {gw} proto 80 (learned)",
            lambda: bs.felix_route_via(n0, block, gw),
        )
        matrix = reachability_matrix(pods, deadline=20)
        print(matrix)
        matrix.assert_all_ok()

        daemon = next(d for d in cluster.daemons if d.name == f"{n0.name}-bgpd")
        daemon.popen.send_signal(signal.SIGKILL)
        daemon.popen.wait(5)
        missing = 0
        deadline = time.monotonic() + 2.0  # down for a while: bird notices, felix waits
        while time.monotonic() < deadline:
            missing += not bs.felix_route_via(n0, block, gw)
            time.sleep(0.1)
        restarted = bs.start_bgpd(n0, bin_dir)
        # Sample through the whole comeback: process start, resubscribe, session, the
        # gateway's table, end-of-rib to Felix, and a while after it.
        deadline = time.monotonic() + 30
        settle: float | None = None
        while settle is None or time.monotonic() < settle:
            assert time.monotonic() < deadline, "restarted bgpd sent no end-of-rib"
            missing += not bs.felix_route_via(n0, block, gw)
            if settle is None and "learned routes end-of-rib sent" in restarted.log_text():
                settle = time.monotonic() + 2.0
            time.sleep(0.05)
        assert missing == 0, f"learned route missing in {missing} samples during the restart"
        # Felix's side of it: when the new stream's end-of-rib came, the route had been
        # re-announced already, so nothing stale was dropped (an early end-of-rib drops
        # it and the kernel route flaps until the gateway's table arrives).
        felix = next(d for d in cluster.daemons if d.name == f"{n0.name}-felix")
        syncs = re.findall(r"learned routes in sync stale_dropped=(\d+)", felix.log_text())
        assert len(syncs) >= 2 and syncs[-1] == "0", syncs
        assert bs.felix_route_via(n0, block, gw), "route gone after end-of-rib"
        assert bird.next_hops(bs.block_of(next(p for p in pods if p.node is n0).ip)) == {n0.ip}
