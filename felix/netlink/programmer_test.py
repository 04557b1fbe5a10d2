"""The route programmer against the real kernel, in namespaces these tests create."""

import errno
import os
import threading

import pytest

from felix.netlink.codec import NextHop, Route
from felix.netlink.constants import RTN_BLACKHOLE, RTNH_F_ONLINK
from felix.netlink.netns import NetnsRunner
from felix.netlink.programmer import ADD, DELETE, REPLACE, RouteOp, RouteProgrammer, ops
from felix.netlink.testns import have_root_netns_tools, ip, temp_netns

pytestmark = pytest.mark.skipif(
    have_root_netns_tools() is not None, reason=str(have_root_netns_tools())
)

PROTO = 80


@pytest.fixture
def ns():
    """A namespace with veth v0 (10.9.0.1/24) <-> v1, both up."""
    with temp_netns() as name:
        ip("link", "add", "v0", "type", "veth", "peer", "name", "v1", netns=name)
        ip("link", "set", "v0", "up", netns=name)
        ip("link", "set", "v1", "up", netns=name)
        ip("addr", "add", "10.9.0.1/24", "dev", "v0", netns=name)
        yield name


@pytest.fixture
def prog(ns):
    p = RouteProgrammer(ns)
    try:
        yield p
    finally:
        p.close()


def kernel_routes(ns: str) -> str:
    return ip("route", "show", "proto", str(PROTO), netns=ns)


def test_routes_of_every_kind_are_programmed_and_removed(ns, prog):
    links = prog.link_indexes()
    routes = [
        Route(dst="10.50.0.0/26", gateway="10.9.0.2", protocol=PROTO),
        Route(dst="10.52.0.0/26", type=RTN_BLACKHOLE, protocol=PROTO),
        Route(dst="10.53.0.5/32", oif=links["v1"], protocol=PROTO),
        Route(
            dst="10.54.0.0/24", multipath=(NextHop("10.9.0.3"), NextHop("10.9.0.4")), protocol=PROTO
        ),
        Route(
            dst="10.55.0.0/24",
            gateway="10.88.0.1",
            oif=links["v0"],
            flags=RTNH_F_ONLINK,
            protocol=PROTO,
        ),
    ]
    res = prog.apply(ops(ADD, routes))
    assert res.ok and res.applied == 5
    text = kernel_routes(ns)
    assert "10.50.0.0/26 via 10.9.0.2 dev v0" in text
    assert "blackhole 10.52.0.0/26" in text
    assert "10.53.0.5 dev v1" in text and "scope link" in text
    assert "nexthop via 10.9.0.3" in text and "nexthop via 10.9.0.4" in text
    assert "10.55.0.0/24 via 10.88.0.1 dev v0" in text and "onlink" in text
    dumped = prog.dump_routes(protocol=PROTO)
    assert all(any(r.satisfied_by(a) for a in dumped) for r in routes)

    res = prog.apply(ops(DELETE, routes))
    assert res.ok and res.applied == 5
    assert kernel_routes(ns) == ""


@pytest.mark.parametrize("ack_every", [True, False], ids=["ack-every", "ack-errors-only"])
def test_kernel_error_is_attributed_to_its_route_and_rest_of_batch_applies(ns, prog, ack_every):
    prog.ack_every = ack_every
    good = [Route(dst=f"10.60.{i}.0/24", gateway="10.9.0.2", protocol=PROTO) for i in range(50)]
    bad = Route(dst="10.61.0.0/24", gateway="10.77.0.2", protocol=PROTO)  # not on any link
    batch = [*good[:25], bad, *good[25:]]
    prog.batch_size = 16  # the bad route lands mid-batch, and batches split
    res = prog.apply(ops(ADD, batch))
    assert res.applied == 50
    assert len(res.errors) == 1
    err = res.errors[0]
    assert err.op.route == bad
    assert err.errno == errno.ENETUNREACH
    assert "10.61.0.0/24" in str(err)
    assert len(prog.dump_routes(protocol=PROTO)) == 50


def test_delete_of_a_route_already_gone_is_reported_but_not_logged_as_a_warning(ns, prog, caplog):
    """Two managers may remove the same route (an orphan veth's); the loser's ESRCH is
    the outcome it wanted, not something for an operator to chase."""
    gone = Route(dst="10.62.0.0/24", gateway="10.9.0.2", protocol=PROTO)
    unreachable = Route(dst="10.63.0.0/24", gateway="10.77.0.2", protocol=PROTO)
    with caplog.at_level("DEBUG", logger="felix.netlink.programmer"):
        res = prog.apply([RouteOp(DELETE, gone), RouteOp(ADD, unreachable)])
    assert sorted(e.errno for e in res.errors) == sorted([errno.ESRCH, errno.ENETUNREACH])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "10.63.0.0/24" in warnings[0], warnings


def test_add_never_overwrites_a_foreign_route_and_dump_filters_by_protocol(ns, prog):
    ip("route", "add", "10.70.0.0/24", "via", "10.9.0.9", "proto", "static", netns=ns)
    res = prog.apply([RouteOp(ADD, Route(dst="10.70.0.0/24", gateway="10.9.0.2", protocol=PROTO))])
    assert [e.errno for e in res.errors] == [errno.EEXIST]
    assert "via 10.9.0.9" in ip("route", "show", "10.70.0.0/24", netns=ns)
    assert prog.dump_routes(protocol=PROTO) == []
    # Delete with our protocol never removes the foreign route of the same prefix.
    res = prog.apply([RouteOp(DELETE, Route(dst="10.70.0.0/24", protocol=PROTO))])
    assert [e.errno for e in res.errors] == [errno.ESRCH]
    assert "via 10.9.0.9" in ip("route", "show", "10.70.0.0/24", netns=ns)


def test_replace_changes_our_route_in_place(ns, prog):
    r1 = Route(dst="10.71.0.0/24", gateway="10.9.0.2", protocol=PROTO)
    r2 = Route(dst="10.71.0.0/24", gateway="10.9.0.3", protocol=PROTO)
    assert prog.apply([RouteOp(ADD, r1)]).ok
    assert prog.apply([RouteOp(REPLACE, r2)]).ok
    [actual] = prog.dump_routes(protocol=PROTO)
    assert r2.satisfied_by(actual)


def test_socket_stays_in_its_namespace_and_caller_thread_does_not_move(ns):
    mine = os.readlink("/proc/thread-self/ns/net")
    with RouteProgrammer(ns) as p:
        links = p.link_indexes()
    assert "v0" in links and "v1" in links
    assert os.readlink("/proc/thread-self/ns/net") == mine
    runner = NetnsRunner(ns)
    try:
        inside = runner.run(os.readlink, "/proc/thread-self/ns/net")
        assert inside != mine
        assert runner.run(threading.current_thread) is not threading.current_thread()
    finally:
        runner.close()


def test_entering_a_missing_namespace_fails_with_its_name():
    with pytest.raises(OSError, match="tfd-does-not-exist"):
        RouteProgrammer("tfd-does-not-exist")


@pytest.mark.parametrize("ack_every", [True, False], ids=["ack-every", "ack-errors-only"])
def test_lost_acks_are_reported_as_unknown_never_as_applied(ns, ack_every):
    # With errors-only acks, only failures are answered: make every route fail so
    # their answers overflow a tiny receive buffer.
    gateway = "10.9.0.2" if ack_every else "10.99.0.2"
    with RouteProgrammer(ns, rcvbuf=4096, ack_every=ack_every) as prog:
        prog.batch_size = 5000  # far more answers than the receive buffer holds
        routes = [Route(dst=f"10.{100 + i // 256}.{i % 256}.0/24", protocol=PROTO,
                        gateway=gateway) for i in range(5000)]  # fmt: skip
        res = prog.apply(ops(ADD, routes))
    unknown = [e for e in res.errors if e.errno == errno.ENOBUFS]
    assert unknown, "the kernel should have dropped acks"
    assert all("state unknown" in str(e) for e in unknown)
    assert res.applied + len(res.errors) == 5000
    installed = len(ip("route", "show", "proto", str(PROTO), netns=ns).splitlines())
    assert res.applied <= installed  # nothing counted as applied that is not there
    if not ack_every:
        assert res.applied == 0
