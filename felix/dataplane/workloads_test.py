"""Workload interface manager and the IPIP manager against the real kernel."""

import pytest

from felix.dataplane import DataplaneConfig, IPIPManager, Kernel, WorkloadInterfaceManager
from felix.dataplane.tunnels import kernel_has_ipip
from felix.netlink.testns import have_root_netns_tools, ip, temp_netns
from proto import calc_pb2

pytestmark = pytest.mark.skipif(
    have_root_netns_tools() is not None, reason=str(have_root_netns_tools())
)


@pytest.fixture
def node():
    with temp_netns("tfw") as ns:
        ip("link", "add", "eth0", "type", "veth", "peer", "name", "peer0", netns=ns)
        ip("addr", "add", "10.9.0.1/24", "dev", "eth0", netns=ns)
        ip("link", "set", "eth0", "up", netns=ns)
        kernel = Kernel(ns)
        try:
            yield ns, kernel
        finally:
            kernel.close()


def wep(name, iface, node="node-a"):
    return calc_pb2.ToDataplane(
        workload_endpoint_update=calc_pb2.WorkloadEndpointUpdate(
            id=calc_pb2.WorkloadEndpointID(
                orchestrator_id="k8s", workload_id=f"default/{name}", endpoint_id="eth0"
            ),
            endpoint=calc_pb2.WorkloadEndpoint(state="active", name=iface, node=node),
        )
    )


def veth(ns, host_if):
    ip("link", "add", host_if, "type", "veth", "peer", "name", f"w{host_if[4:]}", netns=ns)


def test_workload_interface_gets_proxy_arp_forwarding_and_is_brought_up(node):
    ns, kernel = node
    kernel.set_sysctl("net/ipv4/ip_forward", "0")
    veth(ns, "cali1234")
    mgr = WorkloadInterfaceManager(DataplaneConfig(hostname="node-a", netns=ns), kernel)
    mgr.on_update(wep("pod-1", "cali1234"))
    mgr.on_update(wep("pod-elsewhere", "cali9999", node="node-b"))  # not ours: ignored
    mgr.apply()
    assert kernel.get_sysctl("net/ipv4/ip_forward") == "1"
    assert kernel.get_sysctl("net/ipv4/conf/cali1234/proxy_arp") == "1"
    assert kernel.get_sysctl("net/ipv4/conf/cali1234/forwarding") == "1"
    assert kernel.get_sysctl("net/ipv4/neigh/cali1234/proxy_delay") == "0"
    assert kernel.get_sysctl("net/ipv6/conf/cali1234/forwarding") == "1"
    assert kernel.get_sysctl("net/ipv6/conf/cali1234/accept_ra") == "0"
    assert ",UP" in ip("link", "show", "cali1234", netns=ns)
    assert mgr.waiting == set()


def test_interface_created_after_the_endpoint_is_configured_on_a_later_apply(node):
    ns, kernel = node
    mgr = WorkloadInterfaceManager(DataplaneConfig(hostname="node-a", netns=ns), kernel)
    mgr.on_update(wep("pod-2", "cali5678"))
    mgr.apply()
    assert mgr.waiting == {"cali5678"}
    veth(ns, "cali5678")
    mgr.apply()
    assert mgr.waiting == set()
    assert kernel.get_sysctl("net/ipv4/conf/cali5678/proxy_arp") == "1"


def test_orphan_interface_routes_removed_only_after_in_sync_and_others_kept(node):
    ns, kernel = node
    for name in ("caliold1", "caliold2", "cali1234"):
        veth(ns, name)
        ip("link", "set", name, "up", netns=ns)
    ip("route", "add", "10.65.0.9/32", "dev", "caliold1", "proto", "80", netns=ns)
    ip("route", "add", "10.65.0.8/32", "dev", "caliold1", "proto", "static", netns=ns)
    ip("route", "add", "10.65.0.6/32", "dev", "caliold2", "proto", "80", netns=ns)
    ip("route", "add", "10.65.0.7/32", "dev", "cali1234", "proto", "80", netns=ns)
    ip("route", "add", "10.70.0.0/24", "via", "10.9.0.5", "proto", "static", netns=ns)
    mgr = WorkloadInterfaceManager(DataplaneConfig(hostname="node-a", netns=ns), kernel)
    mgr.on_update(wep("pod-1", "cali1234"))
    mgr.apply()
    assert "dev caliold1" in ip("route", "show", netns=ns)  # not before InSync
    mgr.on_update(calc_pb2.ToDataplane(in_sync=calc_pb2.InSync()))
    mgr.apply()
    routes = ip("route", "show", netns=ns)
    assert "caliold1" not in routes and "caliold2" not in routes
    assert "10.65.0.7 dev cali1234" in routes
    assert "10.70.0.0/24 via 10.9.0.5" in routes


def test_ipip_manager_brings_up_tunl0_or_skips_where_kernel_lacks_ipip(node):
    ns, kernel = node
    if not kernel_has_ipip(kernel):
        pytest.skip("kernel lacks ipip (no tunl0 and no ipip module): IPIP cannot be tested here")
    mgr = IPIPManager(DataplaneConfig(hostname="node-a", netns=ns, ipip_enabled=True), kernel)
    mgr.on_update(
        calc_pb2.ToDataplane(
            config_update=calc_pb2.ConfigUpdate(config={"IpInIpTunnelAddr": "10.65.0.1"})
        )
    )
    mgr.apply()
    text = ip("addr", "show", "tunl0", netns=ns)
    assert "10.65.0.1/32" in text and "mtu 1480" in text


def test_ipip_manager_fails_clearly_when_kernel_lacks_ipip(node):
    ns, kernel = node
    if kernel_has_ipip(kernel):
        pytest.skip("kernel has ipip: the missing-module error path cannot be provoked")
    mgr = IPIPManager(DataplaneConfig(hostname="node-a", netns=ns, ipip_enabled=True), kernel)
    with pytest.raises(RuntimeError, match="kernel lacks ipip"):
        mgr.apply()
