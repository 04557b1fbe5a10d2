"""Route table manager against the real kernel in a namespace this test creates."""

import errno

import pytest

from felix.dataplane.config import DataplaneConfig
from felix.dataplane.routes import RouteApplyError, RouteManager
from felix.netlink.programmer import RouteProgrammer
from felix.netlink.testns import have_root_netns_tools, ip, temp_netns
from proto import calc_pb2, felix_services_pb2

pytestmark = pytest.mark.skipif(
    have_root_netns_tools() is not None, reason=str(have_root_netns_tools())
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def ns():
    """Node namespace: eth0 10.9.0.1/24 (veth to a peer end), a workload veth cali0001."""
    with temp_netns() as name:
        ip("link", "add", "eth0", "type", "veth", "peer", "name", "peer0", netns=name)
        ip("link", "add", "cali0001", "type", "veth", "peer", "name", "wl0001", netns=name)
        for dev in ("eth0", "peer0", "cali0001", "wl0001"):
            ip("link", "set", dev, "up", netns=name)
        ip("addr", "add", "10.9.0.1/24", "dev", "eth0", netns=name)
        yield name


@pytest.fixture
def prog(ns):
    p = RouteProgrammer(ns)
    try:
        yield p
    finally:
        p.close()


def cfg(ns, **kw):
    kw.setdefault("learned_routes_grace", 0.0)
    return DataplaneConfig(hostname="node-a", netns=ns, **kw)


def route_update(seq, dst, rtype, **kw):
    return calc_pb2.ToDataplane(
        sequence_number=seq, route_update=calc_pb2.RouteUpdate(dst=dst, type=rtype, **kw)
    )


def snapshot():
    """A typical initial snapshot: a pod, our block, a remote block on-link, one not."""
    return [
        route_update(
            1, "10.65.0.5/32", calc_pb2.LOCAL_WORKLOAD, workload_interface="cali0001",
            dst_node="node-a",
        ),
        route_update(2, "10.65.0.0/26", calc_pb2.LOCAL_BLOCK, dst_node="node-a"),
        route_update(
            3, "10.65.1.0/26", calc_pb2.REMOTE_BLOCK, dst_node="node-b", dst_node_ip="10.9.0.2",
            same_subnet=True,
        ),
        route_update(
            4, "10.65.2.0/26", calc_pb2.REMOTE_BLOCK, dst_node="node-c", dst_node_ip="10.20.0.2",
            same_subnet=False,
        ),
        calc_pb2.ToDataplane(sequence_number=5, in_sync=calc_pb2.InSync()),
    ]  # fmt: skip


def ours(ns):
    return ip("route", "show", "proto", "80", netns=ns)


def feed(mgr, msgs):
    for m in msgs:
        mgr.on_update(m)


def test_snapshot_programs_each_route_kind(ns, prog):
    mgr = RouteManager(cfg(ns), prog)
    feed(mgr, snapshot())
    mgr.apply()
    text = ours(ns)
    assert "10.65.0.5 dev cali0001 scope link" in text
    assert "blackhole 10.65.0.0/26" in text
    assert "10.65.1.0/26 via 10.9.0.2 dev eth0" in text
    assert "10.65.2.0" not in text  # not on-link: left to BGP


def test_route_remove_deletes_and_foreign_route_in_same_space_is_untouched(ns, prog):
    ip("route", "add", "10.65.0.7/32", "dev", "cali0001", "proto", "static", netns=ns)
    ip("route", "add", "10.65.1.0/26", "via", "10.9.0.3", "metric", "50", netns=ns)
    mgr = RouteManager(cfg(ns), prog)
    feed(mgr, snapshot())
    mgr.apply()
    mgr.on_update(calc_pb2.ToDataplane(route_remove=calc_pb2.RouteRemove(dst="10.65.0.5/32")))
    mgr.on_update(calc_pb2.ToDataplane(route_remove=calc_pb2.RouteRemove(dst="10.65.1.0/26")))
    mgr.request_resync()
    mgr.apply()
    text = ours(ns)
    assert "10.65.0.5" not in text and "10.65.1.0/26" not in text
    all_routes = ip("route", "show", netns=ns)
    assert "10.65.0.7 dev cali0001 proto static" in all_routes
    assert "10.65.1.0/26 via 10.9.0.3 dev eth0 metric 50" in all_routes


def test_restart_with_unchanged_state_sends_zero_route_messages(ns, prog):
    first = RouteManager(cfg(ns), prog)
    feed(first, snapshot())
    first.apply()
    before = ours(ns)
    with RouteProgrammer(ns) as fresh:
        again = RouteManager(cfg(ns), fresh)
        feed(again, snapshot())
        again.apply()
        again.request_resync()
        again.apply()
        assert fresh.messages_sent == 0
    assert ours(ns) == before


def test_route_deleted_by_hand_is_restored_by_next_periodic_resync(ns, prog):
    clock = Clock()
    mgr = RouteManager(cfg(ns, resync_interval=30.0), prog, clock=clock)
    feed(mgr, snapshot())
    mgr.apply()
    ip("route", "del", "10.65.1.0/26", "proto", "80", netns=ns)
    clock.t += 10
    mgr.apply()  # incremental: nothing dirty, no dump yet
    assert "10.65.1.0/26" not in ours(ns)
    clock.t += 25
    mgr.apply()
    assert "10.65.1.0/26 via 10.9.0.2" in ours(ns)


def test_nothing_is_deleted_before_in_sync(ns, prog):
    ip("route", "add", "10.66.0.0/26", "via", "10.9.0.7", "proto", "80", netns=ns)
    mgr = RouteManager(cfg(ns), prog)
    feed(mgr, snapshot()[:-1])
    mgr.apply()
    assert "10.66.0.0/26" in ours(ns)
    mgr.on_update(calc_pb2.ToDataplane(in_sync=calc_pb2.InSync()))
    mgr.apply()
    assert "10.66.0.0/26" not in ours(ns)


def test_workload_route_waits_for_its_interface(ns, prog):
    mgr = RouteManager(cfg(ns), prog)
    feed(
        mgr,
        [route_update(1, "10.65.0.9/32", calc_pb2.LOCAL_WORKLOAD, workload_interface="cali0009")],
    )
    mgr.apply()
    assert mgr.pending == {"10.65.0.9/32"}
    ip("link", "add", "cali0009", "type", "veth", "peer", "name", "wl0009", netns=ns)
    ip("link", "set", "cali0009", "up", netns=ns)
    mgr.apply()
    assert "10.65.0.9 dev cali0009" in ours(ns)
    assert not mgr.pending


def test_pod_route_the_cni_plugin_already_wrote_is_adopted_without_an_error(ns, prog):
    # The CNI plugin writes <pod>/32 dev caliX (protocol 80) before Felix hears of the
    # new endpoint; Felix programming the same route must not fail with EEXIST.
    mgr = RouteManager(cfg(ns), prog)
    feed(mgr, snapshot())
    mgr.apply()
    ip("route", "add", "10.65.0.6/32", "dev", "cali0001", "proto", "80", "scope", "link",
       netns=ns)  # fmt: skip
    feed(mgr, [route_update(6, "10.65.0.6/32", calc_pb2.LOCAL_WORKLOAD,
                            workload_interface="cali0001", dst_node="node-a")])  # fmt: skip
    mgr.apply()  # an exclusive add would raise RouteApplyError (EEXIST) here
    assert ours(ns).count("10.65.0.6 dev cali0001") == 1


def test_kernel_error_names_its_route_and_the_others_still_apply(ns, prog):
    mgr = RouteManager(cfg(ns), prog)
    msgs = snapshot()
    # Claimed on-link by the graph, but 10.30.0.2 is on no link: the kernel refuses it.
    msgs.insert(0, route_update(
        0, "10.65.3.0/26", calc_pb2.REMOTE_BLOCK, dst_node="node-d", dst_node_ip="10.30.0.2",
        same_subnet=True,
    ))  # fmt: skip
    feed(mgr, msgs)
    with pytest.raises(RouteApplyError) as exc_info:
        mgr.apply()
    [err] = exc_info.value.errors
    assert err.op.route.dst == "10.65.3.0/26" and err.errno == errno.ENETUNREACH
    assert "10.65.3.0/26" in str(exc_info.value)
    text = ours(ns)
    assert "blackhole 10.65.0.0/26" in text and "10.65.1.0/26 via 10.9.0.2" in text
    # The failed route stays dirty: once fixed (node now on-link) the retry programs it.
    ip("addr", "add", "10.30.0.1/24", "dev", "eth0", netns=ns)
    mgr.apply()
    assert "10.65.3.0/26 via 10.30.0.2" in ours(ns)


def learned(dst, *hops):
    return felix_services_pb2.LearnedRouteMessage(
        update=felix_services_pb2.LearnedRoute(dst=dst, next_hops=list(hops), peer="10.9.0.254")
    )


def test_learned_routes_ecmp_priority_and_end_of_rib(ns, prog):
    mgr = RouteManager(cfg(ns), prog)
    feed(mgr, snapshot())
    mgr.on_learned(learned("10.65.2.0/26", "10.9.0.20"))  # graph leaves it to BGP
    mgr.on_learned(learned("10.80.0.0/24", "10.9.0.21", "10.9.0.22"))  # ECMP
    mgr.on_learned(learned("10.65.0.0/26", "10.9.0.23"))  # our own block: graph wins
    mgr.apply()
    text = ours(ns)
    assert "10.65.2.0/26 via 10.9.0.20" in text
    assert "nexthop via 10.9.0.21" in text and "nexthop via 10.9.0.22" in text
    assert "blackhole 10.65.0.0/26" in text
    mgr.on_learned(felix_services_pb2.LearnedRouteMessage(withdraw="10.65.2.0/26"))
    mgr.apply()
    assert "10.65.2.0/26" not in ours(ns)
    # BGP daemon reconnects and only re-announces one route before end_of_rib.
    mgr.on_learned_reset()
    mgr.on_learned(learned("10.65.0.0/26", "10.9.0.23"))
    mgr.apply()
    assert "10.80.0.0/24" in ours(ns)  # kept until end_of_rib
    mgr.on_learned(felix_services_pb2.LearnedRouteMessage(end_of_rib=True))
    mgr.apply()
    assert "10.80.0.0/24" not in ours(ns)
    assert "blackhole 10.65.0.0/26" in ours(ns)


def test_vxlan_route_uses_vtep_tunnel_ip_onlink_and_follows_vtep(ns, prog):
    ip("link", "add", "vxlan.tabby", "type", "vxlan", "id", "4096", "dstport", "4789", "nolearning",
       netns=ns)  # fmt: skip
    ip("link", "set", "vxlan.tabby", "up", netns=ns)
    mgr = RouteManager(cfg(ns), prog)
    vtep = calc_pb2.VXLANTunnelEndpointUpdate(
        node="node-c", mac="66:00:00:00:00:0c", ipv4_addr="10.65.2.1", parent_device_ip="10.20.0.2"
    )
    feed(mgr, [
        calc_pb2.ToDataplane(vtep_update=vtep),
        route_update(2, "10.65.2.0/26", calc_pb2.REMOTE_BLOCK, dst_node="node-c",
                     dst_node_ip="10.20.0.2", encap=calc_pb2.ENCAP_TYPE_VXLAN),
        calc_pb2.ToDataplane(in_sync=calc_pb2.InSync()),
    ])  # fmt: skip
    mgr.apply()
    assert "10.65.2.0/26 via 10.65.2.1 dev vxlan.tabby onlink" in ours(ns)
    mgr.on_update(
        calc_pb2.ToDataplane(vtep_remove=calc_pb2.VXLANTunnelEndpointRemove(node="node-c"))
    )
    mgr.apply()
    assert mgr.pending == {"10.65.2.0/26"}
    # The tunnel's neighbour entries go with the VTEP: a route left behind would
    # swallow the traffic silently, so it goes too, and comes back with the VTEP.
    assert "10.65.2.0/26" not in ours(ns)
    mgr.on_update(calc_pb2.ToDataplane(vtep_update=vtep))
    mgr.apply()
    assert "10.65.2.0/26 via 10.65.2.1 dev vxlan.tabby onlink" in ours(ns)
    assert not mgr.pending


def test_route_waiting_for_its_vtep_is_not_deleted_before_in_sync(ns, prog):
    ip("link", "add", "vxlan.tabby", "type", "vxlan", "id", "4096", "dstport", "4789", "nolearning",
       netns=ns)  # fmt: skip
    ip("link", "set", "vxlan.tabby", "up", netns=ns)
    ip("route", "add", "10.65.2.0/26", "via", "10.65.2.1", "dev", "vxlan.tabby", "onlink",
       "proto", "80", netns=ns)  # fmt: skip
    mgr = RouteManager(cfg(ns), prog)
    feed(mgr, [route_update(1, "10.65.2.0/26", calc_pb2.REMOTE_BLOCK, dst_node="node-c",
                            dst_node_ip="10.20.0.2", encap=calc_pb2.ENCAP_TYPE_VXLAN)])  # fmt: skip
    mgr.apply()
    assert "10.65.2.0/26 via 10.65.2.1" in ours(ns)  # the snapshot may not be complete yet


def test_ipv6_workload_and_block_routes_are_stable_across_restart(ns, prog):
    msgs = [
        route_update(1, "fd00:65::5/128", calc_pb2.LOCAL_WORKLOAD, workload_interface="cali0001"),
        route_update(2, "fd00:65::/122", calc_pb2.LOCAL_BLOCK),
        calc_pb2.ToDataplane(in_sync=calc_pb2.InSync()),
    ]
    mgr = RouteManager(cfg(ns), prog)
    feed(mgr, msgs)
    mgr.apply()
    text = ip("-6", "route", "show", "proto", "80", netns=ns)
    assert "fd00:65::5 dev cali0001" in text and "blackhole fd00:65::/122" in text
    with RouteProgrammer(ns) as fresh:
        again = RouteManager(cfg(ns), fresh)
        feed(again, msgs)
        again.apply()
        assert fresh.messages_sent == 0  # kernel's IPv6 metric 1024 is what we asked for
