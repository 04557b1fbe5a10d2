"""Helpers for the BGP mode tests: start a node's services with tabby-bgpd in cluster
mode, apply resources with tabbyctl, read a node's BGP state, run BIRD 2 on the router.

Every daemon runs inside a namespace the cluster made, with its sockets under the
node's state dir (namespaces share the host's filesystem).
"""

from __future__ import annotations

import ipaddress
import json
import pathlib
import time
from collections.abc import Callable
from typing import Any

from e2e.topology import Cluster, Daemon, Netns, Node

POD_CIDR = "10.244.0.0/16"
BLOCK_PREFIX = 26
CLUSTER_AS = 64512
ROUTE_PROTOCOL = "80"  # Felix's default device_route_protocol
REFERENCE_PLUGINS = "/usr/lib/cni"
NEEDS = (
    "tabby-node",
    "tabby-felix",
    "tabby-bgpd",
    "tabbyctl",
    "tabby",
    "tabby-ipam",
    "tabby-cni-service",
    "tabby-install-cni",
)


def bgpd_argv(
    bin_dir: pathlib.Path, felix_sock: pathlib.Path, admin_sock: pathlib.Path
) -> list[str]:
    """The command line tabby-node should use for the BGP daemon (cluster mode)."""
    return [
        str(bin_dir / "tabby-bgpd"),
        f"--felix-socket={felix_sock}",
        f"--admin-socket={admin_sock}",
    ]


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def block_of(ip: str) -> str:
    return str(ipaddress.ip_network(f"{ip}/{BLOCK_PREFIX}", strict=False))


def tabbyctl(
    node: Node, bin_dir: pathlib.Path, *args: str, input: str | None = None, check: bool = True
):
    endpoint = node.cluster.etcd_endpoint
    return node.exec(
        [str(bin_dir / "tabbyctl"), f"--etcd-endpoints={endpoint}", *args],
        input=input,
        check=check,
    )


def apply(node: Node, bin_dir: pathlib.Path, *docs: str) -> None:
    """``tabbyctl apply`` the resources (JSON documents), as one list."""
    text = json.dumps([json.loads(d) for d in docs])
    tabbyctl(node, bin_dir, "apply", "-f", "-", input=text)


def register(cluster: Cluster, node: Node, bin_dir: pathlib.Path) -> None:
    node.exec(
        [
            str(bin_dir / "tabby-node"),
            "--register-only",
            f"--nodename={node.name}",
            f"--etcd-endpoints={cluster.etcd_endpoint}",
            f"--ip={node.address}",
            f"--default-ipv4-pool={POD_CIDR}",
            "--default-ipv4-pool-vxlan=Never",
        ]
    )


def node_yaml(node: Node, *, labels: dict[str, str] | None = None, rr_cluster_id: str = "") -> str:
    """A Node resource as tabby-node registers it, plus labels / a reflector cluster id."""
    doc: dict[str, Any] = {
        "apiVersion": "tabby.dev/v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": labels or {}},
        "spec": {"bgp": {"ipv4Address": str(node.address)}},
    }
    if rr_cluster_id:
        doc["spec"]["bgp"]["routeReflectorClusterID"] = rr_cluster_id
    return json.dumps(doc)


def bgp_configuration(mesh: bool, as_number: int = CLUSTER_AS) -> str:
    return json.dumps(
        {
            "apiVersion": "tabby.dev/v1",
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"asNumber": as_number, "nodeToNodeMeshEnabled": mesh},
        }
    )


def bgp_peer(name: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "tabby.dev/v1",
            "kind": "BGPPeer",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def felix_sock(node: Node) -> pathlib.Path:
    return node.state_dir / "felix.sock"


def bgpd_sock(node: Node) -> pathlib.Path:
    return node.state_dir / "bgpd.sock"


def start_bgpd(node: Node, bin_dir: pathlib.Path) -> Daemon:
    # --connect-retry-time 1: peers that start a moment apart find each other quickly.
    argv = [*bgpd_argv(bin_dir, felix_sock(node), bgpd_sock(node)), "--connect-retry-time=1"]
    return node.spawn(argv, name=f"{node.name}-bgpd")


def start_services(
    cluster: Cluster, node: Node, bin_dir: pathlib.Path, *, bgpd: bool = True
) -> str:
    """Felix, the CNI service and (optionally) tabby-bgpd; returns the conflist path."""
    state = node.state_dir
    cni_sock = state / "cni.sock"
    node.spawn(
        [
            str(bin_dir / "tabby-felix"),
            f"--node-name={node.name}",
            f"--etcd-endpoints={cluster.etcd_endpoint}",
            f"--socket={felix_sock(node)}",
        ],
        name=f"{node.name}-felix",
    )
    if bgpd:
        start_bgpd(node, bin_dir)
    svc = node.spawn(
        [str(bin_dir / "tabby-cni-service"), f"--socket={cni_sock}"],
        name=f"{node.name}-cni-service",
    )
    svc.wait_for_log(r"ready socket=", timeout=30)
    node.exec(
        [
            str(bin_dir / "tabby-install-cni"),
            f"--bin-dir={state / 'cni-bin'}",
            f"--conf-dir={state / 'net.d'}",
            f"--etcd-endpoints={cluster.etcd_endpoint}",
            f"--nodename={node.name}",
            f"--service-socket={cni_sock}",
            "--mtu=1500",
        ]
    )
    return str(state / "net.d" / "10-tabby.conflist")


def cni_path(node: Node) -> list[str]:
    return [str(node.state_dir / "cni-bin"), REFERENCE_PLUGINS]


# ---- a node's BGP state, through tabbyctl and the admin socket ------------------------


def bgp_peers(node: Node, bin_dir: pathlib.Path) -> dict[str, dict[str, Any]]:
    proc = tabbyctl(
        node, bin_dir, "bgp", "peers", f"--bgp-socket={bgpd_sock(node)}", "-o", "json", check=False
    )
    if proc.returncode != 0:
        return {}
    return {p["address"]: p for p in json.loads(proc.stdout or "[]")}


def bgp_rib(node: Node, bin_dir: pathlib.Path) -> dict[str, dict[str, Any]]:
    """Best paths of the node's Loc-RIB by prefix."""
    proc = tabbyctl(
        node, bin_dir, "bgp", "rib", f"--bgp-socket={bgpd_sock(node)}", "-o", "json", check=False
    )
    if proc.returncode != 0:
        return {}
    return {e["prefix"]: e for e in json.loads(proc.stdout or "[]") if e.get("best")}


def established(node: Node, bin_dir: pathlib.Path, addresses: list[str]) -> bool:
    peers = bgp_peers(node, bin_dir)
    return all(peers.get(a, {}).get("state") == "Established" for a in addresses)


def node_status(node: Node, bin_dir: pathlib.Path) -> str:
    return tabbyctl(node, bin_dir, "node", "status", f"--bgp-socket={bgpd_sock(node)}").stdout


def kernel_route(ns: Netns, dst: str) -> dict[str, Any] | None:
    from e2e.connectivity import find_routes, routes

    found = find_routes(routes(ns), dst)
    return found[0] if found else None


def felix_route_via(ns: Netns, dst: str, gateway: str) -> bool:
    """``<dst> via <gateway> proto 80``: a route Felix owns, to the owning node."""
    r = kernel_route(ns, dst)
    return (
        r is not None and r.get("gateway") == gateway and str(r.get("protocol")) == ROUTE_PROTOCOL
    )


# ---- BIRD 2 on the router -------------------------------------------------------------


def bird_gateway_conf(router_id: str, local_as: int, fabric: str, peer_as: int) -> str:
    """A gateway with a dynamic neighbour range over the whole fabric: learns every pod
    route, installs it in the router's kernel table, and exports nothing back."""
    return f"""
router id {router_id};
protocol device {{ scan time 2; }}
protocol direct {{ ipv4; }}
protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}
protocol bgp nodes {{
  local as {local_as};
  neighbor range {fabric} as {peer_as};
  dynamic name "node";
  multihop;
  graceful restart on;
  hold time 9;
  ipv4 {{ import all; export none; }};
}}
"""


def bird_reflector_conf(router_id: str, local_as: int, fabric: str) -> str:
    """An iBGP gateway reflecting every node's routes to every node with itself as the
    next hop (each node peers with its own subnet's gateway address, so that next hop
    is on-link): nodes in other subnets are reached through it, and those routes exist
    on a node only because BGP put them there."""
    return f"""
router id {router_id};
protocol device {{ scan time 2; }}
protocol direct {{ ipv4; }}
protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}
protocol bgp nodes {{
  local as {local_as};
  neighbor range {fabric} as {local_as};
  dynamic name "node";
  rr client;
  graceful restart on;
  hold time 9;
  ipv4 {{ import all; export where source = RTS_BGP; next hop self; }};
}}
"""


class Bird:
    """BIRD 2 in a namespace (``bird -f``), with birdc on its own control socket."""

    def __init__(self, ns: Netns, conf: str) -> None:
        self.ns = ns
        workdir = ns.cluster.tmp / "bird"
        workdir.mkdir(exist_ok=True)
        self.conf = workdir / "bird.conf"
        self.conf.write_text(conf)
        self.sock = workdir / "bird.ctl"
        self.daemon = ns.spawn(
            ["bird", "-f", "-c", str(self.conf), "-s", str(self.sock)], name="router-bird"
        )
        wait_until("bird control socket", lambda: self.sock.exists(), 10)

    def cli(self, *args: str) -> str:
        return self.ns.exec(["birdc", "-s", str(self.sock), *args], check=False).stdout

    def routes(self) -> dict[str, list[str]]:
        """prefix -> the next hops BIRD has for it (``via`` addresses)."""
        out: dict[str, list[str]] = {}
        current = ""
        for line in self.cli("show", "route", "all").splitlines():
            parts = line.split()
            if parts and "/" in parts[0] and parts[0][0].isdigit():
                current = parts[0]
            if "via" in parts and current:
                out.setdefault(current, []).append(parts[parts.index("via") + 1])
            elif parts[:1] == ["BGP.next_hop:"] and current:
                out.setdefault(current, []).append(parts[1])
        return out

    def next_hops(self, prefix: str) -> set[str]:
        return set(self.routes().get(prefix, []))
