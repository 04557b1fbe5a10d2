"""The runtime-like driver wires pods with Debian's reference plugins as a runtime would."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

from e2e.pods import CniError, bridge_conflist, check_pod, create_pod, delete_pod, result_ips
from e2e.topology import Cluster, iter_cluster_netns

REFERENCE = "/usr/lib/cni"

pytestmark = pytest.mark.skipif(
    not os.path.exists(f"{REFERENCE}/bridge"),
    reason="Debian's containernetworking-plugins are not installed (/usr/lib/cni/bridge)",
)


def ping(src, dst: str) -> bool:
    return src.exec(["ping", "-c", "1", "-W", "1", dst], check=False, timeout=5).returncode == 0


@pytest.fixture()
def cluster():
    with Cluster.l2(2, with_etcd=False) as c:
        yield c


def node_conflist(node, index: int, **kw):
    return bridge_conflist(f"10.99.{index}.0/24", node.state_dir, **kw)


def test_reference_bridge_pods_get_addresses_and_reach_each_other(cluster):
    n0, n1 = cluster.nodes
    a = create_pod(n0, "a", "web", node_conflist(n0, 0, mtu=1400), REFERENCE)
    b = create_pod(n0, "b", "web", node_conflist(n0, 0, mtu=1400), REFERENCE)
    c = create_pod(n1, "c", "web", node_conflist(n1, 1, mtu=1400), REFERENCE)
    assert a.ip.startswith("10.99.0.") and b.ip.startswith("10.99.0.") and a.ip != b.ip
    assert c.ip.startswith("10.99.1.")
    # The address is really on the pod's interface, and tuning (2nd in the chain) got the
    # bridge result as prevResult: it set the MTU on that interface.
    link = json.loads(a.exec(["ip", "-j", "addr", "show", "eth0"]).stdout)[0]
    assert link["mtu"] == 1400
    assert a.ip in [x["local"] for x in link["addr_info"]]
    # The plugin ran in the node's namespace: the bridge is there, not on the host.
    assert "cni0" in n0.iproute("link", "show", "cni0").stdout
    assert ping(a, b.ip) and ping(b, a.ip)
    # No route between the nodes' pod ranges yet: cross-node traffic fails ...
    assert not ping(a, c.ip)
    # ... until direct routes are added by hand (what mode 1 has Felix do).
    n0.iproute("route", "add", "10.99.1.0/24", "via", n1.ip)
    n1.iproute("route", "add", "10.99.0.0/24", "via", n0.ip)
    assert ping(a, c.ip) and ping(c, b.ip)
    check_pod(a)


def test_delete_pod_releases_the_address_and_removes_sandbox_and_veth(cluster):
    n0 = cluster.nodes[0]
    conf = node_conflist(n0, 0)
    pod = create_pod(n0, "gone", "default", conf, REFERENCE)
    leases = n0.state_dir / "host-local" / "e2e-bridge"
    assert (leases / pod.ip).exists()
    veths_before = n0.iproute("-o", "link", "show", "type", "veth").stdout.count("master cni0")
    assert veths_before == 1
    delete_pod(pod)
    assert not (leases / pod.ip).exists()
    assert pod.netns not in list(iter_cluster_netns(cluster))
    assert n0.iproute("-o", "link", "show", "type", "veth").stdout.count("master cni0") == 0
    delete_pod(pod)  # a second delete is a no-op


def test_exhausted_range_is_a_cni_error_and_leaves_no_sandbox(cluster):
    n0 = cluster.nodes[0]
    conf = bridge_conflist("10.98.0.0/30", n0.state_dir)  # one usable host beside the gateway
    first = create_pod(n0, "first", "default", conf, REFERENCE)
    before = set(iter_cluster_netns(cluster))
    with pytest.raises(CniError) as info:
        create_pod(n0, "second", "default", conf, REFERENCE)
    err = info.value
    assert err.plugin == "bridge" and err.command == "ADD"
    assert "no IP addresses available" in str(err)
    assert set(iter_cluster_netns(cluster)) == before
    assert ping(first, "10.98.0.1")  # the first pod is untouched
    # Once the first pod is deleted its address is free for the next one.
    delete_pod(first)
    assert create_pod(n0, "second", "default", conf, REFERENCE).ip == first.ip


def test_missing_plugin_names_the_plugin_and_the_path(cluster):
    conf = {"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "no-such-plugin"}]}
    with pytest.raises(CniError, match=r"no-such-plugin.*failed to find plugin in path"):
        create_pod(cluster.nodes[0], "p", "default", conf, REFERENCE)


def test_teardown_deletes_remaining_pods_through_the_plugin(tmp_path):
    # Leases outside the cluster's tmp dir, so we can see DEL released them at teardown.
    with Cluster.l2(1, with_etcd=False) as cluster:
        n0 = cluster.nodes[0]
        pod = create_pod(
            n0, "left", "default", bridge_conflist("10.99.0.0/24", tmp_path), REFERENCE
        )
        lease = tmp_path / "host-local" / "e2e-bridge" / pod.ip
        assert lease.exists()
    assert pod.deleted
    assert not lease.exists()
    assert list(iter_cluster_netns(cluster)) == []


RECORDER = textwrap.dedent(
    """\
    import json, os, sys
    conf = json.load(sys.stdin)
    netns = os.readlink("/proc/self/ns/net")
    with open(conf["log"], "a") as f:
        f.write(json.dumps({
            "type": conf["type"], "tag": conf["tag"], "cmd": os.environ["CNI_COMMAND"],
            "name": conf["name"], "cniVersion": conf["cniVersion"],
            "prev": conf.get("prevResult"), "args": os.environ["CNI_ARGS"],
            "ifname": os.environ["CNI_IFNAME"], "netns": os.environ["CNI_NETNS"],
            "path": os.environ["CNI_PATH"], "my_netns": netns,
        }) + "\\n")
    if os.environ["CNI_COMMAND"] == "ADD":
        prev = conf.get("prevResult") or {"cniVersion": conf["cniVersion"], "ips": []}
        prev.setdefault("tags", []).append(conf["tag"])
        print(json.dumps(prev))
    """
)


def test_chain_order_env_and_prev_result_follow_the_spec(cluster, tmp_path):
    """A recording plugin sees exactly what a runtime gives each plugin."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    plugin = bindir / "recorder"
    plugin.write_text(f"#!{os.path.realpath(sys.executable)}\n{RECORDER}")
    plugin.chmod(0o755)
    record = tmp_path / "calls.jsonl"
    conf = {
        "cniVersion": "1.0.0",
        "name": "rec-net",
        "plugins": [
            {"type": "recorder", "tag": "one", "log": str(record)},
            {"type": "recorder", "tag": "two", "log": str(record)},
        ],
    }
    n1 = cluster.nodes[1]
    pod = create_pod(n1, "web-0", "shop", conf, ["/nonexistent", str(bindir)], ifname="net1")
    assert pod.result["tags"] == ["one", "two"]
    delete_pod(pod)
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(c["cmd"], c["tag"]) for c in calls] == [
        ("ADD", "one"),
        ("ADD", "two"),
        ("DEL", "two"),
        ("DEL", "one"),
    ]
    assert calls[0]["prev"] is None
    assert calls[1]["prev"]["tags"] == ["one"]
    assert calls[2]["prev"]["tags"] == ["one", "two"]  # DEL gets the cached final result
    for c in calls:
        assert c["name"] == "rec-net" and c["cniVersion"] == "1.0.0"
        assert "K8S_POD_NAMESPACE=shop" in c["args"] and "K8S_POD_NAME=web-0" in c["args"]
        assert c["ifname"] == "net1"
        assert c["netns"] == f"/var/run/netns/{pod.netns}"
        assert c["path"] == f"/nonexistent:{bindir}"
    node_ns_id = n1.exec(["readlink", "/proc/self/ns/net"]).stdout.strip()
    assert {c["my_netns"] for c in calls} == {node_ns_id}


def test_result_ips_skip_host_side_interfaces():
    result = {
        "interfaces": [
            {"name": "veth1", "mac": "aa"},
            {"name": "eth0", "mac": "bb", "sandbox": "/var/run/netns/x"},
        ],
        "ips": [
            {"address": "10.0.0.1/24", "interface": 0},
            {"address": "10.0.0.5/24", "interface": 1},
            {"address": "fd00::5/64", "interface": 1},
        ],
    }
    assert [str(i) for i in result_ips(result, "/var/run/netns/x")] == [
        "10.0.0.5/24",
        "fd00::5/64",
    ]
