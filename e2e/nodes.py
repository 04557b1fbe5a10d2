"""Starting Tabby on a namespace node the way the DaemonSet does: ``tabby-node`` with
its services under a private run dir, then ``tabby-install-cni``. Shared by the mode
tests and ``make demo``."""

from __future__ import annotations

import pathlib

from e2e.topology import Cluster, Node

POD_CIDR = "10.244.0.0/16"
REFERENCE_PLUGINS = "/usr/lib/cni"  # portmap, chained after tabby by tabby-install-cni

VXLAN_DEVICE = "vxlan.tabby"  # felix.dataplane.DataplaneConfig.vxlan_device
VXLAN_POD_MTU = 1450  # 1500 underlay minus 50 bytes of VXLAN overhead


def start_tabby_node(
    cluster: Cluster,
    node: Node,
    bin_dir: pathlib.Path,
    *,
    vxlan_mode: str = "Never",
    mtu: int = 1500,
    services: str = "felix,cni",
    extra_args: tuple[str, ...] = (),
) -> str:
    """Start ``tabby-node`` in ``node`` (by default Felix and the CNI service; add
    ``bgpd`` for BGP in cluster mode) under its own run dir, wait until it registered,
    has its tunnel address settled and serves CNI, and install the CNI conf. Returns the
    path of the node's conflist."""
    state = node.state_dir
    run_dir = state / "run"
    endpoint = cluster.etcd_endpoint
    daemon = node.spawn(
        [
            str(bin_dir / "tabby-node"),
            f"--nodename={node.name}",
            f"--etcd-endpoints={endpoint}",
            f"--ip={node.address}",
            f"--default-ipv4-pool={POD_CIDR}",
            f"--default-ipv4-pool-vxlan={vxlan_mode}",
            f"--run-dir={run_dir}",
            f"--services={services}",
            *extra_args,
        ],
        name=f"{node.name}-tabby-node",
    )
    daemon.wait_for_log(rf"vxlan tunnel node={node.name} ", timeout=30)
    daemon.wait_for_log(r"ready socket=", timeout=30)
    node.exec(
        [
            str(bin_dir / "tabby-install-cni"),
            f"--bin-dir={state / 'cni-bin'}",
            f"--conf-dir={state / 'net.d'}",
            f"--etcd-endpoints={endpoint}",
            f"--nodename={node.name}",
            f"--service-socket={run_dir / 'cni.sock'}",
            f"--mtu={mtu}",
        ]
    )
    return str(state / "net.d" / "10-tabby.conflist")
