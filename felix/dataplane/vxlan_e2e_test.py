"""Two nodes in different subnets, joined by a router, each with a pod: pods talk via VXLAN.

Everything is namespaces created here: router, node-a, node-b, pod-a, pod-b. The
managers run exactly as the daemon drives them (build_managers, on_update, apply).
"""

import contextlib
import shutil
import subprocess
import time

import pytest

from felix.dataplane import DataplaneConfig, Kernel, RouteManager, build_managers
from felix.netlink.testns import have_root_netns_tools, ip, temp_netns
from proto import calc_pb2

pytestmark = pytest.mark.skipif(
    have_root_netns_tools() is not None, reason=str(have_root_netns_tools())
)

UPLINK_MTU = 1400
NODES = {
    # name: (underlay subnet /24 third octet, block, pod IP, tunnel IP, vtep MAC)
    "node-a": (1, "10.65.0.0/26", "10.65.0.5", "10.65.0.1", "66:00:00:00:00:0a"),
    "node-b": (2, "10.65.1.0/26", "10.65.1.5", "10.65.1.1", "66:00:00:00:00:0b"),
}


def node_ip(name):
    return f"10.{NODES[name][0]}.0.2"


def stream_for(me: str) -> list[calc_pb2.ToDataplane]:
    """What the calc graph would send node ``me`` (VTEPs before the routes using them)."""
    msgs = []
    for name, (_, _block, _pod_ip, tun_ip, mac) in NODES.items():
        msgs.append(
            calc_pb2.ToDataplane(
                vtep_update=calc_pb2.VXLANTunnelEndpointUpdate(
                    node=name, mac=mac, ipv4_addr=tun_ip, parent_device_ip=node_ip(name)
                )
            )
        )
    for name, (_, block, pod_ip, _tun, _mac) in NODES.items():
        if name == me:
            msgs.append(_route(block, calc_pb2.LOCAL_BLOCK, dst_node=name))
            msgs.append(
                _route(f"{pod_ip}/32", calc_pb2.LOCAL_WORKLOAD, dst_node=name,
                       workload_interface=f"cali{name[-1]}pod")
            )  # fmt: skip
            msgs.append(
                calc_pb2.ToDataplane(
                    workload_endpoint_update=calc_pb2.WorkloadEndpointUpdate(
                        id=calc_pb2.WorkloadEndpointID(
                            orchestrator_id="k8s", workload_id=f"default/pod-{name[-1]}",
                            endpoint_id="eth0",
                        ),
                        endpoint=calc_pb2.WorkloadEndpoint(
                            state="active", name=f"cali{name[-1]}pod", ipv4_nets=[f"{pod_ip}/32"],
                            node=name,
                        ),
                    )
                )
            )  # fmt: skip
        else:
            msgs.append(
                _route(block, calc_pb2.REMOTE_BLOCK, dst_node=name, dst_node_ip=node_ip(name),
                       encap=calc_pb2.ENCAP_TYPE_VXLAN, same_subnet=False)
            )  # fmt: skip
    msgs.append(calc_pb2.ToDataplane(in_sync=calc_pb2.InSync()))
    for i, m in enumerate(msgs):
        m.sequence_number = i + 1
    return msgs


def _route(dst, rtype, **kw):
    return calc_pb2.ToDataplane(route_update=calc_pb2.RouteUpdate(dst=dst, type=rtype, **kw))


def sh(netns, *cmd, timeout=20):
    return subprocess.run(
        ["ip", "netns", "exec", netns, *cmd], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def topo(tmp_path):
    with contextlib.ExitStack() as stack:
        router = stack.enter_context(temp_netns("tfr"))
        nodes, pods = {}, {}
        for name in NODES:
            nodes[name] = stack.enter_context(temp_netns("tfn"))
            pods[name] = stack.enter_context(temp_netns("tfp"))
        ip("netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for name, (octet, _b, pod_ip, _t, _m) in NODES.items():
            n, p = nodes[name], pods[name]
            r_if = f"r{octet}"
            ip(
                "link",
                "add",
                r_if,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                n,
                netns=router,
            )
            ip("addr", "add", f"10.{octet}.0.1/24", "dev", r_if, netns=router)
            ip("link", "set", r_if, "up", "mtu", str(UPLINK_MTU), netns=router)
            ip("addr", "add", f"{node_ip(name)}/24", "dev", "eth0", netns=n)
            ip("link", "set", "eth0", "up", "mtu", str(UPLINK_MTU), netns=n)
            ip("route", "add", "default", "via", f"10.{octet}.0.1", netns=n)
            # The CNI plugin's part: veth into the pod, pod IP, default via 169.254.1.1.
            host_if = f"cali{name[-1]}pod"
            ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", p, netns=n)
            ip("addr", "add", f"{pod_ip}/32", "dev", "eth0", netns=p)
            ip("link", "set", "eth0", "up", netns=p)
            ip("route", "add", "169.254.1.1", "dev", "eth0", "scope", "link", netns=p)
            ip("route", "add", "default", "via", "169.254.1.1", "dev", "eth0", netns=p)
        yield router, nodes, pods, tmp_path


def test_pods_on_nodes_in_different_subnets_reach_each_other_over_vxlan(topo):
    router, nodes, pods, tmp_path = topo
    kernels, route_mgrs = [], []
    try:
        for name, ns in nodes.items():
            cfg = DataplaneConfig(
                hostname=name, netns=ns, mtu_file=str(tmp_path / name / "mtu"),
                learned_routes_grace=0.0,
            )  # fmt: skip
            kernel = Kernel(ns)
            kernels.append(kernel)
            managers = build_managers(cfg, kernel)
            route_mgrs.append(next(m for m in managers if isinstance(m, RouteManager)))
            for msg in stream_for(name):
                for m in managers:
                    m.on_update(msg)
            for m in managers:
                m.apply()
            assert not route_mgrs[-1].pending
            assert kernel.get_sysctl("net/ipv4/conf/" + f"cali{name[-1]}pod/proxy_arp") == "1"

        # MTU: smallest uplink (1400) minus VXLAN overhead, on the device and published.
        for name, ns in nodes.items():
            assert (tmp_path / name / "mtu").read_text().strip() == str(UPLINK_MTU - 50)
            assert f"mtu {UPLINK_MTU - 50}" in ip("link", "show", "vxlan.tabby", netns=ns)
            ip("link", "set", "eth0", "mtu", str(UPLINK_MTU - 50), netns=pods[name])
        dev = ip("-d", "link", "show", "vxlan.tabby", netns=nodes["node-a"])
        assert "vxlan id 4096" in dev and "dstport 4789" in dev and "nolearning" in dev
        assert "10.65.1.1 lladdr 66:00:00:00:00:0b PERMANENT" in ip(
            "neigh", "show", "dev", "vxlan.tabby", netns=nodes["node-a"]
        )

        tcpdump = None
        if shutil.which("tcpdump"):
            tcpdump = subprocess.Popen(
                ["ip", "netns", "exec", router, "timeout", "15", "tcpdump", "-n", "-i", "r1",
                 "-c", "2", "udp", "port", "4789"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            time.sleep(1.0)  # let tcpdump attach before traffic
        ping = sh(pods["node-a"], "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.65.1.5")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        # Full-size packets fit without fragmentation at the published MTU.
        big = sh(pods["node-a"], "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do",
                 "-s", str(UPLINK_MTU - 50 - 28), "10.65.1.5")  # fmt: skip
        assert big.returncode == 0, big.stdout + big.stderr
        if tcpdump is not None:
            out, err = tcpdump.communicate(timeout=20)
            assert "VXLAN" in out or ".4789" in out, out + err
        stats = ip("-s", "link", "show", "vxlan.tabby", netns=nodes["node-b"])
        assert "RX:" in stats
    finally:
        for k in kernels:
            k.close()


def test_vxlan_device_and_neighbours_are_removed_with_their_vteps(tmp_path):
    with temp_netns("tfn") as ns:
        ip("link", "add", "eth0", "type", "veth", "peer", "name", "peer0", netns=ns)
        ip("addr", "add", "10.1.0.2/24", "dev", "eth0", netns=ns)
        ip("link", "set", "eth0", "up", netns=ns)
        kernel = Kernel(ns)
        try:
            cfg = DataplaneConfig(hostname="node-a", netns=ns, mtu_file=str(tmp_path / "mtu"))
            [_, vx, _] = build_managers(cfg, kernel)
            for msg in stream_for("node-a")[:2]:
                vx.on_update(msg)
            vx.apply()
            assert "10.65.1.1 lladdr" in ip("neigh", "show", "dev", "vxlan.tabby", netns=ns)
            vx.on_update(calc_pb2.ToDataplane(vtep_remove=calc_pb2.VXLANTunnelEndpointRemove(
                node="node-b")))  # fmt: skip
            vx.apply()
            assert ip("neigh", "show", "dev", "vxlan.tabby", netns=ns).strip() == ""
            fdb = subprocess.run(["bridge", "-n", ns, "fdb", "show", "dev", "vxlan.tabby"],
                                 capture_output=True, text=True).stdout  # fmt: skip
            assert "66:00:00:00:00:0b" not in fdb
            vx.on_update(calc_pb2.ToDataplane(vtep_remove=calc_pb2.VXLANTunnelEndpointRemove(
                node="node-a")))  # fmt: skip
            vx.apply()
            assert "vxlan.tabby" not in ip("link", "show", netns=ns)
        finally:
            kernel.close()
