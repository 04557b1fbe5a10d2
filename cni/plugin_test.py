"""The plugin driven as a runtime drives it: exec the installed executable with env + stdin.

Real etcd (the datastore fixture), the real kernel in namespaces these tests create
(a node namespace per node, a namespace per pod), the real CNI service process.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import subprocess

import pytest

from cni import testutil
from cni.testutil import ip, ns_path
from datastore import keys
from datastore.etcd import EtcdStore
from datastore.etcd_fixture import free_port
from ipam.testing import put_pool

pytest_plugins = ["datastore.etcd_fixture", "cni.testutil"]  # etcd_server, bin_dir
pytestmark = testutil.needs_root


@pytest.fixture(scope="module")
def kv(etcd_server):
    store = EtcdStore([etcd_server.endpoint], timeout=5)
    put_pool(store, "pool-a", "10.77.0.0/24", 26)
    put_pool(store, "pool-v6", "fd77::/120", 122)
    yield store
    store.close()


@pytest.fixture
def node(etcd_server, kv, bin_dir, tmp_path):
    n = testutil.Node(etcd_server.client_port, bin_dir, str(tmp_path))
    try:
        n.start_service()
        yield n
    finally:
        n.close()


@pytest.fixture
def pod():
    with testutil.namespace() as name:
        yield name


def cid() -> str:
    return secrets.token_hex(16)


def allocations(kv, network: str = "tabby-test") -> list[str]:
    items, _ = kv.list(keys.IPAM_HANDLES)
    return [i.key for i in items if i.key.startswith(f"{keys.IPAM_HANDLES}{network}.")]


def weps(kv) -> list[dict]:
    items, _ = kv.list(keys.resource_prefix("workloadendpoints"))
    return [json.loads(i.value) for i in items]


def ping(pod_ns: str, target: str = "169.254.1.1") -> bool:
    done = subprocess.run(
        ["ip", "netns", "exec", pod_ns, "ping", "-c", "1", "-W", "2", target],
        capture_output=True,
    )
    return done.returncode == 0


# --- VERSION and the error codes ---------------------------------------------------------


def test_version_lists_supported_versions(node):
    code, out, _ = node.run("VERSION", {"cniVersion": "1.0.0"})
    assert code == 0
    assert out == {"cniVersion": "1.0.0", "supportedVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]}
    code, out, _ = node.run("VERSION", "", exe="tabby-ipam")
    assert code == 0 and out["cniVersion"] == "1.1.0"


@pytest.mark.parametrize(
    ("env", "conf_change", "code", "msg"),
    [
        ({"CNI_COMMAND": None}, {}, 4, "CNI_COMMAND is not set"),
        ({"CNI_COMMAND": "BOUNCE"}, {}, 4, "CNI_COMMAND 'BOUNCE'"),
        ({"CNI_CONTAINERID": ""}, {}, 4, "CNI_CONTAINERID is not set"),
        ({"CNI_IFNAME": "eth0:bad"}, {}, 4, "CNI_IFNAME"),
        ({"CNI_ARGS": "K8S_POD_NAME"}, {}, 4, "CNI_ARGS"),
        ({}, {"cniVersion": "0.2.0"}, 1, "cniVersion 0.2.0 is not supported"),
        ({}, {"name": None}, 7, "field name is missing"),
        ({}, {"ipam": None}, 7, "field ipam is missing"),
        ({}, {"mtu": "big"}, 7, "field mtu"),
    ],
)
def test_add_errors_use_spec_codes_and_name_the_problem(node, pod, env, conf_change, code, msg):
    conf = {k: v for k, v in {**node.conf(), **conf_change}.items() if v is not None}
    rc, out, _ = node.run("ADD", conf, container_id=cid(), netns_path=ns_path(pod), env=env)
    assert rc == code
    assert out["code"] == code and msg in out["msg"], out
    assert set(out) <= {"cniVersion", "code", "msg", "details"}
    assert "cali" not in ip("link", ns=node.ns)


def test_undecodable_config_is_error_6(node, pod):
    rc, out, _ = node.run("ADD", "{not json", container_id=cid(), netns_path=ns_path(pod))
    assert rc == 6 and out["code"] == 6


def test_check_needs_0_4_0_and_a_prev_result(node, pod):
    rc, out, _ = node.run(
        "CHECK", node.conf(cniVersion="0.3.1"), container_id=cid(), netns_path=ns_path(pod)
    )
    assert rc == 1 and "CHECK needs cniVersion 0.4.0" in out["msg"]
    rc, out, _ = node.run("CHECK", node.conf(), container_id=cid(), netns_path=ns_path(pod))
    assert rc == 7 and "prevResult" in out["msg"]


def test_unreachable_datastore_is_11_on_add_and_50_on_status(node, pod):
    dead = f"http://127.0.0.1:{free_port()}"
    conf = node.conf(etcd_endpoints=dead, etcd_timeout_seconds=1)
    rc, out, _ = node.run("ADD", conf, container_id=cid(), netns_path=ns_path(pod))
    assert rc == 11 and out["code"] == 11 and "datastore unreachable" in out["msg"]
    assert "eth0" not in ip("link", ns=pod)
    rc, out, _ = node.run("STATUS", conf)
    assert rc == 50 and out["code"] == 50
    rc, out, _ = node.run("STATUS", node.conf())
    assert rc == 0 and out is None


# --- ADD / CHECK / DEL -----------------------------------------------------------------


def test_add_check_del_lifecycle(node, pod, kv):
    c = cid()
    rc, res, err = node.run("ADD", node.conf(), container_id=c, netns_path=ns_path(pod))
    assert rc == 0, (res, err)
    host, sandbox = res["interfaces"]
    assert re.fullmatch(r"cali[0-9a-f]{11}", host["name"]) and "sandbox" not in host
    assert sandbox == {
        "name": "eth0",
        "mac": sandbox["mac"],
        "mtu": 1400,
        "sandbox": ns_path(pod),
    }
    (ipc,) = res["ips"]
    assert ipc["interface"] == 1 and ipc["gateway"] == "169.254.1.1"
    assert ipc["address"].startswith("10.77.0.") and ipc["address"].endswith("/32")
    assert res["routes"] == [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]
    pod_ip = ipc["address"].split("/")[0]
    assert ping(pod)
    assert pod_ip in ip("-4", "route", "show", "dev", host["name"], ns=node.ns)
    (wep,) = [w for w in weps(kv) if w["spec"]["containerID"] == c]
    # Calico's naming: dashes inside each part doubled.
    assert wep["metadata"]["name"] == f"{node.name.replace('-', '--')}-cni-{c}-eth0"
    assert wep["spec"]["interfaceName"] == host["name"]
    assert wep["spec"]["ipNetworks"] == [ipc["address"]]
    assert wep["spec"]["mac"] == sandbox["mac"] and wep["spec"]["node"] == node.name

    check_conf = {**node.conf(), "prevResult": res}
    rc, out, err = node.run("CHECK", check_conf, container_id=c, netns_path=ns_path(pod))
    assert rc == 0 and out is None, (out, err)
    ip("route", "del", f"{pod_ip}/32", ns=node.ns)
    rc, out, _ = node.run("CHECK", check_conf, container_id=c, netns_path=ns_path(pod))
    assert rc == 105 and f"host route {pod_ip}/32" in out["msg"]

    rc, out, _ = node.run("DEL", node.conf(), container_id=c, netns_path=ns_path(pod))
    assert rc == 0 and out is None
    assert host["name"] not in ip("link", ns=node.ns)
    assert "eth0" not in ip("link", ns=pod)
    assert allocations(kv) == [] and not [w for w in weps(kv) if w["spec"]["containerID"] == c]
    # DEL twice, and with an empty CNI_NETNS: still success.
    rc, out, _ = node.run("DEL", node.conf(), container_id=c, netns_path=ns_path(pod))
    assert rc == 0
    rc, out, _ = node.run("DEL", node.conf(), container_id=c, netns_path="")
    assert rc == 0


def test_check_detects_a_removed_pod_route(node, pod, kv):
    c = cid()
    rc, res, _ = node.run("ADD", node.conf(), container_id=c, netns_path=ns_path(pod))
    assert rc == 0
    try:
        ip("route", "del", "default", ns=pod)
        check_conf = {**node.conf(), "prevResult": res}
        rc, out, _ = node.run("CHECK", check_conf, container_id=c, netns_path=ns_path(pod))
        assert rc == 105
        assert out["msg"] == "default route via 169.254.1.1 missing in the pod"
    finally:
        node.run("DEL", node.conf(), container_id=c, netns_path=ns_path(pod))


def test_del_with_empty_netns_after_netns_deleted_releases_everything(node, kv):
    c = cid()
    with testutil.namespace() as pod:
        rc, _, _ = node.run("ADD", node.conf(), container_id=c, netns_path=ns_path(pod))
        assert rc == 0
    # The runtime removed the namespace first (the veth went with it), then calls DEL.
    rc, _, _ = node.run("DEL", node.conf(), container_id=c, netns_path="")
    assert rc == 0
    assert allocations(kv) == []
    assert not [w for w in weps(kv) if w["spec"]["containerID"] == c]


def test_dual_stack_add(node, pod, kv):
    c = cid()
    conf = node.conf(ipam={"type": "tabby-ipam", "assign_ipv4": "true", "assign_ipv6": "true"})
    rc, res, err = node.run("ADD", conf, container_id=c, netns_path=ns_path(pod))
    assert rc == 0, (res, err)
    try:
        v4, v6 = res["ips"]
        assert v4["address"].startswith("10.77.0.")
        assert v6["address"].startswith("fd77::") and v6["address"].endswith("/128")
        assert v6["gateway"].startswith("fe80::")
        assert {"dst": "::/0", "gw": v6["gateway"]} in res["routes"]
        assert f"default via {v6['gateway']} dev eth0" in ip("-6", "route", ns=pod)
        rc, out, _ = node.run(
            "CHECK", {**conf, "prevResult": res}, container_id=c, netns_path=ns_path(pod)
        )
        assert rc == 0, out
    finally:
        node.run("DEL", conf, container_id=c, netns_path=ns_path(pod))
    assert allocations(kv) == []


def test_old_spec_versions_get_version_fields(node, pod, kv):
    c = cid()
    rc, res, _ = node.run(
        "ADD", node.conf(cniVersion="0.3.1"), container_id=c, netns_path=ns_path(pod)
    )
    try:
        assert rc == 0 and res["cniVersion"] == "0.3.1"
        assert res["ips"][0]["version"] == "4" and "mtu" not in res["interfaces"][1]
    finally:
        node.run("DEL", node.conf(cniVersion="0.3.1"), container_id=c, netns_path=ns_path(pod))


def test_failed_add_leaves_nothing_behind(node, pod, kv):
    ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer", ns=pod)
    c = cid()
    rc, out, _ = node.run("ADD", node.conf(), container_id=c, netns_path=ns_path(pod))
    assert rc == 102 and "eth0 already exists" in out["msg"]
    assert allocations(kv) == []
    assert not [w for w in weps(kv) if w["spec"]["containerID"] == c]
    assert "cali" not in ip("link", ns=node.ns)


def test_policy_wait_timeout_fails_add_and_rolls_back(node, pod, kv, tmp_path):
    c = cid()
    conf = node.conf(policy_setup_timeout_seconds=1, felix_socket=str(tmp_path / "nofelix.sock"))
    rc, out, _ = node.run("ADD", conf, container_id=c, netns_path=ns_path(pod))
    assert rc == 104 and "Felix" in out["msg"]
    assert allocations(kv) == [] and "cali" not in ip("link", ns=node.ns)
    assert not [w for w in weps(kv) if w["spec"]["containerID"] == c]


def test_add_without_service_runs_in_process(node, pod, kv):
    node.stop_service()
    c = cid()
    rc, res, err = node.run("ADD", node.conf(), container_id=c, netns_path=ns_path(pod))
    assert rc == 0, (res, err)
    assert ping(pod)
    rc, _, _ = node.run("DEL", node.conf(), container_id=c, netns_path=ns_path(pod))
    assert rc == 0 and allocations(kv) == []


def test_k8s_pod_template_annotations_pick_the_address(node, pod, kv):
    c = cid()
    name = f"{node.name.replace('-', '--')}-k8s-web--0-eth0"
    template = {
        "apiVersion": "tabby.dev/v1",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {"app": "web"},
            "annotations": {"cni.projectcalico.org/ipAddrs": '["10.77.0.200"]'},
        },
        "spec": {"node": node.name, "pod": "web-0"},
    }
    key = keys.resource_key("workloadendpoints", name, "shop")
    kv.create(key, json.dumps(template).encode())
    args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_UID={c[:8]}"
    try:
        rc, res, err = node.run(
            "ADD", node.conf(), container_id=c, netns_path=ns_path(pod), cni_args=args
        )
        assert rc == 0, (res, err)
        assert res["ips"][0]["address"] == "10.77.0.200/32"
        wep = json.loads(kv.get(key).value)
        assert wep["metadata"]["labels"]["app"] == "web"
        assert wep["spec"]["orchestrator"] == "k8s" and wep["spec"]["pod"] == "web-0"
        assert wep["spec"]["containerID"] == c
        # A late DEL for an older sandbox of the same pod must not touch this one.
        assert ping(pod)
        rc, _, _ = node.run("DEL", node.conf(), container_id=cid(), cni_args=args)
        assert rc == 0 and kv.get(key) is not None and ping(pod)
    finally:
        node.run("DEL", node.conf(), container_id=c, netns_path=ns_path(pod), cni_args=args)
    assert kv.get(key) is None and allocations(kv) == []


def test_gc_releases_attachments_not_in_valid_list(node, kv):
    with contextlib.ExitStack() as stack:
        pods = [stack.enter_context(testutil.namespace()) for _ in range(3)]
        ids = [cid() for _ in pods]
        for c, p in zip(ids, pods, strict=True):
            rc, _, err = node.run("ADD", node.conf(), container_id=c, netns_path=ns_path(p))
            assert rc == 0, err
        gc_conf = {
            **node.conf(),
            "cni.dev/valid-attachments": [{"containerID": ids[0], "ifname": "eth0"}],
        }
        rc, out, err = node.run("GC", gc_conf)
        assert rc == 0 and out is None, (out, err)
        assert allocations(kv) == [f"{keys.IPAM_HANDLES}tabby-test.{ids[0]}"]
        assert [w["spec"]["containerID"] for w in weps(kv)] == [ids[0]]
        assert ip("link", ns=node.ns).count("cali") == 1
        assert ping(pods[0])
        rc, out, _ = node.run("GC", {**node.conf(), "cni.dev/valid-attachments": []})
        assert rc == 0 and allocations(kv) == []


class _ReadyFelix:
    """The EndpointStatus service of proto/felix_services.proto on a unix socket.

    Felix's own implementation lives in felix/; this stand-in answers from a fixed
    verdict so the plugin's side of the contract (request shape, waiting, rollback)
    is tested here. The timeout path above runs with no server at all.
    """

    def __init__(self, path: str, ready: bool) -> None:
        from concurrent import futures

        import grpc

        from proto import felix_services_pb2, felix_services_pb2_grpc

        self.requests: list = []
        outer = self

        class Servicer(felix_services_pb2_grpc.EndpointStatusServicer):
            def WaitReady(self, request, context):
                outer.requests.append(request)
                return felix_services_pb2.EndpointReadyReply(
                    ready=ready, reason="" if ready else "policy not programmed"
                )

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        felix_services_pb2_grpc.add_EndpointStatusServicer_to_server(Servicer(), self.server)
        self.server.add_insecure_port(f"unix://{path}")
        self.server.start()

    def close(self) -> None:
        self.server.stop(None)


@pytest.mark.parametrize("ready", [True, False], ids=["ready", "not-ready"])
def test_policy_wait_asks_felix_for_the_endpoint(node, pod, kv, tmp_path, ready):
    sock = str(tmp_path / "felix.sock")
    felix = _ReadyFelix(sock, ready)
    c = cid()
    conf = node.conf(policy_setup_timeout_seconds=2, felix_socket=sock)
    try:
        rc, out, _ = node.run("ADD", conf, container_id=c, netns_path=ns_path(pod))
        (req,) = felix.requests
        assert (req.id.orchestrator_id, req.id.workload_id, req.id.endpoint_id) == (
            "cni",
            c,
            "eth0",
        )
        assert req.timeout_ms == 2000
        if ready:
            assert rc == 0 and ping(pod)
        else:
            assert rc == 104 and "policy not programmed" in out["msg"]
            assert allocations(kv) == [] and "cali" not in ip("link", ns=node.ns)
    finally:
        node.run("DEL", conf, container_id=c, netns_path=ns_path(pod))
        felix.close()
    assert allocations(kv) == []


def test_failed_k8s_add_puts_the_pod_template_back(node, pod, kv, tmp_path):
    name = f"{node.name.replace('-', '--')}-k8s-api-eth0"
    template = {
        "apiVersion": "tabby.dev/v1",
        "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": "api"}},
        "spec": {"node": node.name, "pod": "api"},
    }
    key = keys.resource_key("workloadendpoints", name, "shop")
    kv.create(key, json.dumps(template).encode())
    try:
        conf = node.conf(policy_setup_timeout_seconds=1, felix_socket=str(tmp_path / "no.sock"))
        rc, out, _ = node.run(
            "ADD",
            conf,
            container_id=cid(),
            netns_path=ns_path(pod),
            cni_args="K8S_POD_NAMESPACE=shop;K8S_POD_NAME=api",
        )
        assert rc == 104, out
        assert json.loads(kv.get(key).value) == template
        assert allocations(kv) == []
    finally:
        kv.delete(key)
