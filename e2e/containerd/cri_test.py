"""containerd's CRI plugin as the CNI client: pod sandboxes get and give back IPs.

First with Debian's reference plugins (bridge + host-local), which proves the
harness; then with Tabby's own plugin against a real etcd. containerd runs inside a
throw-away network namespace standing in for the node, so bridges and veths live and
die with it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import pathlib
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import grpc
import pytest

from e2e.containerd.containerd_fixture import Containerd, node_netns
from e2e.containerd.cri_client import CRIClient, PodSpec, SandboxStatus

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
