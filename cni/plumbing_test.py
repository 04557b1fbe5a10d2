"""Pod plumbing against the real kernel, in namespaces the tests create."""

from __future__ import annotations

import ipaddress
import pathlib
import re
import subprocess

import pytest

from cni import names, plumbing, testutil
from cni.testutil import ip, ns_path

pytestmark = testutil.needs_root

V4 = ipaddress.IPv4Interface("10.77.3.5/26")
V6 = ipaddress.IPv6Interface("fd77::3:5/122")


@pytest.fixture
def node():
    with testutil.node_namespace() as name:
        yield name


@pytest.fixture
def pod():
    with testutil.namespace() as name:
        yield name


def _setup(node, pod, v4, v6, mtu=1400):
    host = names.host_veth_name(f"test.{pod}")
    return testutil.in_ns(node, lambda: plumbing.setup(ns_path(pod), host, "eth0", mtu, v4, v6))


def test_host_veth_name_is_cali_plus_11_hex_of_sha1():
    # sha1("default.nginx") starts with 0f03e1ad3e7... (checked with hashlib by hand)
    import hashlib

    name = names.host_veth_name("default.nginx")
    assert name == "cali" + hashlib.sha1(b"default.nginx").hexdigest()[:11]
    assert len(name) == 15
    assert names.host_veth_name("x", prefix="tap").startswith("tap")
    assert len(names.host_veth_name("x", prefix="tap")) == 15


def test_ipv4_pod_gets_32_gateway_route_and_host_route(node, pod):
    link = _setup(node, pod, [V4], [])
    assert link.host_ifname.startswith("cali") and link.pod_ifname == "eth0"
    pod_addrs = ip("-4", "addr", "show", "dev", "eth0", ns=pod)
    assert "10.77.3.5/32" in pod_addrs and "mtu 1400" in pod_addrs
    pod_routes = ip("-4", "route", ns=pod)
    assert "default via 169.254.1.1 dev eth0" in pod_routes
    assert re.search(r"^169\.254\.1\.1 dev eth0 .*scope link", pod_routes, re.M)
    host_routes = ip("-4", "route", ns=node)
    assert re.search(
        rf"^10\.77\.3\.5 dev {link.host_ifname} proto 80 scope link", host_routes, re.M
    ), host_routes  # Felix's protocol: Felix adopts the route rather than fighting it
    # No address on the host end, proxy ARP on.
    assert "inet " not in ip("-4", "addr", "show", "dev", link.host_ifname, ns=node)
    sysctl = testutil.in_ns(
        node,
        lambda: (
            pathlib.Path(f"/proc/sys/net/ipv4/conf/{link.host_ifname}/proxy_arp")
            .read_text()
            .strip()
        ),
    )
    assert sysctl == "1"
    # The pod reaches its gateway (answered by the node).
    done = subprocess.run(
        ["ip", "netns", "exec", pod, "ping", "-c", "1", "-W", "2", "169.254.1.1"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dual_stack_pod_gets_128_and_default_via_host_link_local(node, pod):
    link = _setup(node, pod, [V4], [V6])
    assert link.ipv6_gateway.startswith("fe80:")
    assert "fd77::3:5/128" in ip("-6", "addr", "show", "dev", "eth0", ns=pod)
    assert f"default via {link.ipv6_gateway} dev eth0" in ip("-6", "route", ns=pod)
    assert f"fd77::3:5 dev {link.host_ifname}" in ip("-6", "route", ns=node)
    problems = testutil.in_ns(
        node, lambda: plumbing.check(ns_path(pod), link.host_ifname, "eth0", [V4, V6])
    )
    assert problems == []


def test_check_reports_a_removed_pod_route(node, pod):
    link = _setup(node, pod, [V4], [])
    ip("route", "del", "default", ns=pod)
    problems = testutil.in_ns(
        node, lambda: plumbing.check(ns_path(pod), link.host_ifname, "eth0", [V4])
    )
    assert problems == ["default route via 169.254.1.1 missing in the pod"]


def test_check_reports_a_down_interface_a_wrong_mac_and_a_missing_one(node, pod):
    link = _setup(node, pod, [V4], [])
    ip("link", "set", "eth0", "down", ns=pod)  # the kernel drops the pod's routes with it
    problems = testutil.in_ns(
        node,
        lambda: plumbing.check(ns_path(pod), link.host_ifname, "eth0", [V4], "02:00:00:00:00:99"),
    )
    assert problems[:2] == [
        "interface eth0 is down",
        f"interface eth0 has MAC {link.pod_mac}, expected 02:00:00:00:00:99",
    ]
    assert "default route via 169.254.1.1 missing in the pod" in problems
    ip("link", "del", "eth0", ns=pod)
    problems = testutil.in_ns(
        node, lambda: plumbing.check(ns_path(pod), link.host_ifname, "eth0", [V4])
    )
    assert problems == [f"interface eth0 is missing in {ns_path(pod)}"]


def test_check_reports_a_removed_host_route(node, pod):
    link = _setup(node, pod, [V4], [])
    ip("route", "del", "10.77.3.5/32", ns=node)
    problems = testutil.in_ns(
        node, lambda: plumbing.check(ns_path(pod), link.host_ifname, "eth0", [V4])
    )
    assert problems == [f"host route 10.77.3.5/32 dev {link.host_ifname} missing"]


def test_teardown_removes_veth_and_is_idempotent_without_netns(node, pod):
    link = _setup(node, pod, [V4], [])
    testutil.in_ns(node, lambda: plumbing.teardown(ns_path(pod), link.host_ifname, "eth0"))
    assert link.host_ifname not in ip("link", ns=node)
    assert "eth0" not in ip("link", ns=pod)
    assert "10.77.3.5" not in ip("-4", "route", ns=node)
    # Twice, and with the namespace gone: still fine.
    testutil.in_ns(node, lambda: plumbing.teardown(ns_path(pod), link.host_ifname, "eth0"))
    testutil.in_ns(node, lambda: plumbing.teardown("", link.host_ifname, "eth0"))


def test_setup_fails_cleanly_when_pod_ifname_taken(node, pod):
    ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0p", ns=pod)
    with pytest.raises(plumbing.PlumbingError, match="eth0 already exists"):
        _setup(node, pod, [V4], [])
    assert "cali" not in ip("link", ns=node)


def test_setup_into_missing_netns_names_the_path(node):
    with pytest.raises(plumbing.PlumbingError, match="tcn-nonexistent"):
        testutil.in_ns(
            node,
            lambda: plumbing.setup(
                "/var/run/netns/tcn-nonexistent", "calitest0", "eth0", 1500, [V4], []
            ),
        )


def test_mtu_from_config_then_file_then_default(tmp_path):
    f = tmp_path / "mtu"
    assert plumbing.resolve_mtu(1234, str(f)) == 1234
    assert plumbing.resolve_mtu(0, str(f)) == 1500
    f.write_text("1450\n")
    assert plumbing.resolve_mtu(0, str(f)) == 1450
    f.write_text("garbage")
    assert plumbing.resolve_mtu(0, str(f)) == 1500
