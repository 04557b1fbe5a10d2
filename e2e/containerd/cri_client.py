"""A small CRI client (what kubelet would be) over our runtime.v1 stubs.

Debian ships no crictl; the e2e test drives containerd's CRI plugin through this
to make containerd call the CNI plugin exactly as it does under Kubernetes.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import grpc

from e2e.containerd import cri_pb2, cri_pb2_grpc

log = logging.getLogger(__name__)

# RunPodSandbox runs the CNI ADD (and possibly an image unpack): generous, bounded.
DEFAULT_TIMEOUT_S = 60.0


@dataclasses.dataclass(frozen=True)
class PodSpec:
    """What kubelet tells the runtime about a pod, as far as networking cares."""

    name: str
    namespace: str
    uid: str
    hostname: str
    log_directory: str
    cgroup_parent: str = ""
    labels: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SandboxStatus:
    """The parts of PodSandboxStatus a network test checks."""

    id: str
    ready: bool
    ip: str
    additional_ips: tuple[str, ...]
    netns_path: str
    pid: int


class CRIClient:
    """RuntimeService calls on one containerd socket; closes its channel on exit."""

    def __init__(self, socket_path: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._channel = grpc.insecure_channel(f"unix://{socket_path}")
        self._stub = cri_pb2_grpc.RuntimeServiceStub(self._channel)
        self._timeout = timeout_s

    def __enter__(self) -> CRIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def version(self) -> cri_pb2.VersionResponse:
        return self._stub.Version(cri_pb2.VersionRequest(version="v1"), timeout=self._timeout)

    def run_pod_sandbox(self, pod: PodSpec) -> str:
        """Create and start the sandbox (containerd runs CNI ADD); returns its id."""
        config = cri_pb2.PodSandboxConfig(
            metadata=cri_pb2.PodSandboxMetadata(
                name=pod.name, namespace=pod.namespace, uid=pod.uid, attempt=0
            ),
            hostname=pod.hostname,
            log_directory=pod.log_directory,
            labels=pod.labels,
            linux=cri_pb2.LinuxPodSandboxConfig(
                cgroup_parent=pod.cgroup_parent,
                security_context=cri_pb2.LinuxSandboxSecurityContext(
                    namespace_options=cri_pb2.NamespaceOption(
                        network=cri_pb2.POD, pid=cri_pb2.CONTAINER, ipc=cri_pb2.POD
                    )
                ),
            ),
        )
        resp = self._stub.RunPodSandbox(
            cri_pb2.RunPodSandboxRequest(config=config), timeout=self._timeout
        )
        log.info(
            "cri run_pod_sandbox pod=%s/%s id=%s", pod.namespace, pod.name, resp.pod_sandbox_id
        )
        return resp.pod_sandbox_id

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """Stop the sandbox; containerd tears the network down (CNI DEL)."""
        self._stub.StopPodSandbox(
            cri_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self._timeout
        )
        log.info("cri stop_pod_sandbox id=%s", sandbox_id)

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self._stub.RemovePodSandbox(
            cri_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self._timeout
        )
        log.info("cri remove_pod_sandbox id=%s", sandbox_id)

    def pod_sandbox_status(self, sandbox_id: str) -> SandboxStatus:
        """Status with the network IPs and, from the verbose info, netns path and pid."""
        resp = self._stub.PodSandboxStatus(
            cri_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True),
            timeout=self._timeout,
        )
        info = json.loads(resp.info["info"]) if "info" in resp.info else {}
        st = resp.status
        return SandboxStatus(
            id=st.id,
            ready=st.state == cri_pb2.SANDBOX_READY,
            ip=st.network.ip,
            additional_ips=tuple(p.ip for p in st.network.additional_ips),
            netns_path=_netns_path(info),
            pid=int(info.get("pid", 0)),
        )

    def list_pod_sandboxes(self) -> dict[str, bool]:
        """Every sandbox the runtime knows: id -> ready (a failed run leaves NOTREADY)."""
        resp = self._stub.ListPodSandbox(cri_pb2.ListPodSandboxRequest(), timeout=self._timeout)
        return {item.id: item.state == cri_pb2.SANDBOX_READY for item in resp.items}

    def list_pod_sandbox_ids(self) -> list[str]:
        return list(self.list_pod_sandboxes())


def _netns_path(info: dict) -> str:
    """The network namespace path from the runtime spec containerd reports."""
    namespaces = info.get("runtimeSpec", {}).get("linux", {}).get("namespaces", [])
    for ns in namespaces:
        if ns.get("type") == "network":
            return ns.get("path", "")
    return ""
