"""containerd's CRI plugin as the CNI client: pod sandboxes get and give back IPs.

First with Debian's reference plugins (bridge + host-local), which proves the
harness; then with Tabby's own plugin against a real etcd. containerd runs inside a
throw-away network namespace standing in for the node, so bridges and veths live and
die with it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import pathlib
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest

from datastore import keys
from datastore.api import KVStore
from datastore.etcd import EtcdStore
from datastore.etcd_fixture import EtcdServer
from datastore.resources import ResourceStore
from e2e.containerd.containerd_fixture import Containerd, netns_path, node_netns
from e2e.containerd.cri_client import CRIClient, PodSpec, SandboxStatus
from ipam import report
from model.resources import IPPool, IPPoolSpec, Node, ObjectMeta
from scripts import install as install_script

pytest_plugins = ["e2e.containerd.containerd_fixture"]

log = logging.getLogger(__name__)

REFERENCE_PLUGINS = pathlib.Path("/usr/lib/cni")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containerd e2e needs root")


# --- helpers ---------------------------------------------------------------------------


def pod_spec(tmp: pathlib.Path, cgroup_parent: str, name: str = "") -> PodSpec:
    name = name or f"pod-{secrets.token_hex(3)}"
    return PodSpec(
        name=name,
        namespace="default",
        uid=str(uuid.uuid4()),
        hostname=name,
        log_directory=str(tmp / "logs" / name),
        cgroup_parent=cgroup_parent,
    )


def addresses_in_netns(path: str, ifname: str = "eth0") -> list[str]:
    """IPv4/IPv6 addresses on ``ifname`` inside the network namespace at ``path``."""
    out = subprocess.run(
        ["nsenter", f"--net={path}", "ip", "-j", "addr", "show", "dev", ifname],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return [a["local"] for link in json.loads(out) for a in link.get("addr_info", [])]


def copy_plugins(bin_dir: pathlib.Path, names: list[str]) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(REFERENCE_PLUGINS / name, bin_dir / name)


def bridge_conflist(subnet: str, data_dir: pathlib.Path, network: str) -> dict:
    """bridge + host-local on a private subnet; no masquerade, so no iptables rules."""
    return {
        "cniVersion": "0.4.0",
        "name": network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "tcdbr0",
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "dataDir": str(data_dir),
                },
            }
        ],
    }


class RefNode:
    """A node netns running containerd whose only network is the reference bridge."""

    def __init__(self, ctd: Containerd, tmp: pathlib.Path, subnet: str, ipam_dir: pathlib.Path):
        self.ctd = ctd
        self.tmp = tmp
        self.subnet = ipaddress.ip_network(subnet)
        self.ipam_dir = ipam_dir

    def reserved_ips(self) -> dict[str, str]:
        """host-local's on-disk store: one file per reserved IP, holding the container id."""
        if not self.ipam_dir.is_dir():
            return {}
        return {
            p.name: p.read_text().splitlines()[0] for p in self.ipam_dir.iterdir() if _is_ip(p.name)
        }


def _reserved(ipam_dir: pathlib.Path) -> list[str]:
    return [p.name for p in ipam_dir.iterdir() if _is_ip(p.name)] if ipam_dir.is_dir() else []


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@pytest.fixture
def ref_node(tmp_path: pathlib.Path, pause_image_tar: pathlib.Path) -> Iterator[RefNode]:
    network = f"tcd-{secrets.token_hex(3)}"
    subnet = f"10.222.{secrets.randbelow(250) + 1}.0/24"
    bin_dir, conf_dir, data_dir = tmp_path / "bin", tmp_path / "net.d", tmp_path / "ipam"
    copy_plugins(bin_dir, ["bridge", "host-local", "loopback"])
    conf_dir.mkdir()
    (conf_dir / "10-bridge.conflist").write_text(
        json.dumps(bridge_conflist(subnet, data_dir, network))
    )
    with node_netns() as ns, Containerd(bin_dir, conf_dir, pause_image_tar, netns=ns) as ctd:
        yield RefNode(ctd, tmp_path, subnet, data_dir / network)


# --- reference plugins: proves the harness ---------------------------------------------


def test_reference_bridge_sandbox_gets_ip_and_removal_releases_it(ref_node: RefNode) -> None:
    with CRIClient(ref_node.ctd.socket) as cri:
        pod = pod_spec(ref_node.tmp, ref_node.ctd.cgroup_parent)
        sandbox_id = cri.run_pod_sandbox(pod)
        status: SandboxStatus = cri.pod_sandbox_status(sandbox_id)

        assert status.ready
        assert ipaddress.ip_address(status.ip) in ref_node.subnet
        assert status.netns_path, "containerd reported no netns path for the sandbox"
        assert status.ip in addresses_in_netns(status.netns_path)
        # host-local recorded the reservation under the sandbox id containerd passed.
        assert ref_node.reserved_ips() == {status.ip: sandbox_id}

        cri.stop_pod_sandbox(sandbox_id)
        assert ref_node.reserved_ips() == {}, "StopPodSandbox did not release the IP"
        cri.stop_pod_sandbox(sandbox_id)  # kubelet stops more than once: idempotent
        cri.remove_pod_sandbox(sandbox_id)

        assert sandbox_id not in cri.list_pod_sandbox_ids()
        assert not os.path.exists(status.netns_path)


def test_reference_two_sandboxes_get_distinct_ips(ref_node: RefNode) -> None:
    with CRIClient(ref_node.ctd.socket) as cri:
        ids = [
            cri.run_pod_sandbox(pod_spec(ref_node.tmp, ref_node.ctd.cgroup_parent))
            for _ in range(2)
        ]
        ips = [cri.pod_sandbox_status(i).ip for i in ids]
        assert len(set(ips)) == 2
        assert ref_node.reserved_ips() == dict(zip(ips, ids, strict=True))
        for i in ids:
            cri.stop_pod_sandbox(i)
            cri.remove_pod_sandbox(i)
        assert ref_node.reserved_ips() == {}


def test_missing_ipam_plugin_fails_run_with_its_name_and_leaks_nothing(
    tmp_path: pathlib.Path, pause_image_tar: pathlib.Path
) -> None:
    network = f"tcd-{secrets.token_hex(3)}"
    bin_dir, conf_dir, data_dir = tmp_path / "bin", tmp_path / "net.d", tmp_path / "ipam"
    copy_plugins(bin_dir, ["bridge", "loopback"])  # host-local missing
    conf_dir.mkdir()
    (conf_dir / "10-bridge.conflist").write_text(
        json.dumps(bridge_conflist("10.222.250.0/24", data_dir, network))
    )
    with (
        node_netns() as ns,
        Containerd(bin_dir, conf_dir, pause_image_tar, netns=ns) as ctd,
        CRIClient(ctd.socket) as cri,
    ):
        with pytest.raises(grpc.RpcError) as err:
            cri.run_pod_sandbox(pod_spec(tmp_path, ctd.cgroup_parent))
        assert "host-local" in str(err.value.details())
        # containerd keeps a NOTREADY record for kubelet to clean up; none is ready.
        sandboxes = cri.list_pod_sandboxes()
        assert True not in sandboxes.values()
        assert _reserved(data_dir / network) == []
        # DEL needs the IPAM plugin too; once the operator installs it, kubelet's
        # retried stop + remove clean the failed sandbox up.
        copy_plugins(bin_dir, ["host-local"])
        for sandbox_id in sandboxes:
            cri.stop_pod_sandbox(sandbox_id)
            cri.remove_pod_sandbox(sandbox_id)
        assert cri.list_pod_sandboxes() == {}
        assert _reserved(data_dir / network) == []


# --- Tabby's plugin --------------------------------------------------------------------

TABBY_MISSING = (
    ""
    if "tabby" in install_script.ENTRYPOINTS
    else "tabby is not in scripts.install.ENTRYPOINTS: the CNI plugin has not landed"
)


class TabbyNode:
    """containerd in a node netns with Tabby's plugin installed as an operator would,
    talking to a real etcd (through a relay into the node netns)."""

    def __init__(
        self,
        ctd: Containerd,
        tmp: pathlib.Path,
        etcd: EtcdServer,
        kv: KVStore,
        pool_cidr: str,
        node: str,
        service_log: pathlib.Path | None,
    ) -> None:
        self.ctd = ctd
        self.tmp = tmp
        self.etcd = etcd
        self.kv = kv
        self.pool = ipaddress.ip_network(pool_cidr)
        self.node = node
        self.service_log = service_log


@contextlib.contextmanager
def cni_service(prefix: pathlib.Path, ns: str, socket: pathlib.Path) -> Iterator[None]:
    """The node's warm ``tabby-cni-service`` (what the DaemonSet runs), in the node netns."""
    log_path = socket.with_suffix(".log")
    with open(log_path, "ab") as logfile:
        proc = subprocess.Popen(
            [
                *("nsenter", f"--net={netns_path(ns)}", "--"),
                str(prefix / "bin" / "tabby-cni-service"),
                *("--socket", str(socket), "--log-level", "debug", "--workers", "4"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=logfile,
        )
    try:
        deadline = time.monotonic() + 20
        while not socket.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tabby-cni-service did not start: {log_path.read_text()}")
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(params=["in-process", "service"])
def tabby_node(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path, pause_image_tar: pathlib.Path
) -> Iterator[TabbyNode]:
    """One node; ``service``: the shim forwards to the warm service, ``in-process``:
    no service is listening, so the shim runs the handler itself."""
    if TABBY_MISSING:
        pytest.skip(TABBY_MISSING)
    from cni.testutil import Relay  # only once the CNI plugin has landed

    node = f"tcd-node-{secrets.token_hex(3)}"
    pool_cidr = f"10.223.{secrets.randbelow(250) + 1}.0/24"
    prefix, bin_dir, conf_dir = tmp_path / "prefix", tmp_path / "bin", tmp_path / "net.d"
    service_socket = tmp_path / "cni.sock"
    install_script.install(prefix)
    with contextlib.ExitStack() as stack:
        etcd = stack.enter_context(EtcdServer())
        kv = EtcdStore([etcd.endpoint], timeout=5)
        stack.callback(kv.close)
        resources = ResourceStore(kv)
        resources.create(Node(metadata=ObjectMeta(name=node)))
        resources.create(
            IPPool(metadata=ObjectMeta(name="e2e-pool"), spec=IPPoolSpec(cidr=pool_cidr))
        )
        subprocess.run(
            [
                str(prefix / "bin" / "tabby-install-cni"),
                *("--bin-dir", str(bin_dir), "--conf-dir", str(conf_dir)),
                *("--lib-dir", str(prefix / "lib" / "tabby")),
                *("--etcd-endpoints", etcd.endpoint, "--nodename", node),
                *("--mtu", "1400", "--log-level", "debug"),
                *("--service-socket", str(service_socket)),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        # The CRI plugin runs loopback (and the chained portmap) from the same bin_dir.
        copy_plugins(bin_dir, ["loopback", "portmap"])
        ns = stack.enter_context(node_netns())
        relay = Relay(ns, ("127.0.0.1", etcd.client_port))
        stack.callback(relay.close)
        if request.param == "service":
            stack.enter_context(cni_service(prefix, ns, service_socket))
        ctd = stack.enter_context(Containerd(bin_dir, conf_dir, pause_image_tar, netns=ns))
        service_log = service_socket.with_suffix(".log") if request.param == "service" else None
        yield TabbyNode(ctd, tmp_path, etcd, kv, pool_cidr, node, service_log)


def workload_endpoints(kv: KVStore) -> list[dict]:
    items, _ = kv.list(keys.resource_prefix("workloadendpoints"))
    return [json.loads(i.value) for i in items]


def test_tabby_sandbox_gets_pool_ip_and_wep_and_removal_releases_it(
    tabby_node: TabbyNode,
) -> None:
    with CRIClient(tabby_node.ctd.socket) as cri:
        pod = pod_spec(tabby_node.tmp, tabby_node.ctd.cgroup_parent)
        sandbox_id = cri.run_pod_sandbox(pod)
        status = cri.pod_sandbox_status(sandbox_id)

        assert status.ready
        assert ipaddress.ip_address(status.ip) in tabby_node.pool
        assert status.ip in addresses_in_netns(status.netns_path)
        weps = workload_endpoints(tabby_node.kv)
        assert len(weps) == 1, weps
        spec = weps[0]["spec"]
        assert weps[0]["metadata"]["namespace"] == pod.namespace
        assert spec["pod"] == pod.name
        assert spec["node"] == tabby_node.node
        assert spec["containerID"] == sandbox_id
        assert spec["ipNetworks"] == [f"{status.ip}/32"]
        if tabby_node.service_log is not None:  # the warm path, not the in-process fallback
            assert f"ADD done container={sandbox_id}" in tabby_node.service_log.read_text()
        in_use = report.check(tabby_node.kv)
        assert in_use.ok, in_use
        assert in_use.allocations_checked == 1

        cri.stop_pod_sandbox(sandbox_id)
        cri.stop_pod_sandbox(sandbox_id)  # kubelet stops more than once: idempotent
        cri.remove_pod_sandbox(sandbox_id)

        assert sandbox_id not in cri.list_pod_sandbox_ids()
        assert workload_endpoints(tabby_node.kv) == []
        after = report.check(tabby_node.kv)
        assert after.ok, after
        assert after.allocations_checked == 0, "the pod's IP is still allocated"
        assert after.handles_checked == 0, "the pod's IPAM handle is still stored"


def test_tabby_run_fails_while_etcd_is_down_and_kubelet_cleanup_then_leaks_nothing(
    tabby_node: TabbyNode,
) -> None:
    with CRIClient(tabby_node.ctd.socket) as cri:
        tabby_node.etcd.stop()
        try:
            with pytest.raises(grpc.RpcError) as err:
                cri.run_pod_sandbox(pod_spec(tabby_node.tmp, tabby_node.ctd.cgroup_parent))
        finally:
            tabby_node.etcd.start()
        log.info("run_pod_sandbox error=%s", err.value.details())
        assert 'plugin type="tabby" failed (add)' in err.value.details()
        assert "datastore unreachable" in err.value.details()
        sandboxes = cri.list_pod_sandboxes()
        assert True not in sandboxes.values()
        for sandbox_id in sandboxes:  # kubelet's cleanup of the failed sandbox
            cri.stop_pod_sandbox(sandbox_id)
            cri.remove_pod_sandbox(sandbox_id)
        assert cri.list_pod_sandboxes() == {}
    assert workload_endpoints(tabby_node.kv) == []
    after = report.check(tabby_node.kv)
    assert after.ok, after
    assert after.allocations_checked == 0


# --- the harness cleans up after itself ------------------------------------------------


def _mounts_under(path: pathlib.Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(f"{path}/")]


def test_fixture_cleans_up_after_containerd_dies_with_a_running_sandbox(
    ref_node: RefNode,
) -> None:
    """A crashed daemon leaves shim, sandbox process, mounts and cgroup behind; the
    fixture must remove exactly those (a shared machine accumulates them otherwise)."""
    ctd = ref_node.ctd
    with CRIClient(ctd.socket) as cri:
        status = cri.pod_sandbox_status(
            cri.run_pod_sandbox(pod_spec(ref_node.tmp, ctd.cgroup_parent))
        )
    shims = ctd.our_shims()
    state_dir = ctd.dir
    assert len(shims) == 1 and os.path.exists(f"/proc/{status.pid}")
    assert _mounts_under(state_dir)
    ctd.kill_daemon()

    ctd.close()

    for pid in (*shims, status.pid):
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid), f"pid {pid} survived"
    assert _mounts_under(state_dir) == []
    assert not state_dir.exists()
    assert not any(
        (root / ctd.cgroup_parent.lstrip("/")).exists()
        for root in pathlib.Path("/sys/fs/cgroup").iterdir()
    )


def _is_zombie(pid: int) -> bool:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
