"""A runtime-like CNI driver: pods are namespaces wired by a real plugin chain.

It does what containerd/libcni do for a pod sandbox, so a plugin tested here behaves
the same under a kubelet: for each plugin of a conflist, exec the plugin binary found
on ``CNI_PATH`` with ``CNI_COMMAND``/``CNI_CONTAINERID``/``CNI_NETNS``/``CNI_IFNAME``/
``CNI_PATH``/``CNI_ARGS`` in the environment and the plugin's config on stdin (with the
list's ``name`` and ``cniVersion`` injected, and the previous plugin's result as
``prevResult``). DEL runs the chain in reverse with the cached ADD result. Plugins run
inside the node's namespace (``ip netns exec <node>``), as they would on that node.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import pathlib
import secrets
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

from e2e.topology import Cluster, Netns, Node, TopologyError, run

log = logging.getLogger("tabby.e2e.pods")

PLUGIN_TIMEOUT = 60.0
TEARDOWN_TIMEOUT = 15.0


class CniError(RuntimeError):
    """A plugin failed: carries the spec's error code/msg/details and the plugin's stderr."""

    def __init__(
        self,
        plugin: str,
        command: str,
        msg: str,
        code: int | None = None,
        details: str = "",
        stderr: str = "",
        returncode: int | None = None,
    ) -> None:
        self.plugin = plugin
        self.command = command
        self.code = code
        self.msg = msg
        self.details = details
        self.stderr = stderr
        self.returncode = returncode
        text = f"CNI {command} failed in plugin {plugin!r}"
        if code is not None:
            text += f" (code {code})"
        text += f": {msg}"
        if details:
            text += f" ({details})"
        if stderr.strip():
            text += f"; stderr: {stderr.strip()[-500:]}"
        super().__init__(text)


@dataclasses.dataclass(eq=False)
class Pod(Netns):
    """A pod sandbox: its namespace, where it runs, and the cached ADD result."""

    namespace: str = "default"
    node: Node | None = None
    container_id: str = ""
    ifname: str = "eth0"
    conflist: dict[str, Any] = dataclasses.field(default_factory=dict)
    cni_path: tuple[str, ...] = ()
    result: dict[str, Any] = dataclasses.field(default_factory=dict)
    add_seconds: float = 0.0
    deleted: bool = False

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.netns}"

    @property
    def ips(self) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        """Addresses the result assigned to the pod's own interface."""
        return result_ips(self.result, self.netns_path)

    @property
    def ip(self) -> str:
        """The pod's first IPv4 address (what peers connect to)."""
        for addr in self.ips:
            if addr.version == 4:
                return str(addr.ip)
        raise TopologyError(f"pod {self.name}: no IPv4 address in CNI result {self.result}")

    @property
    def ipv6(self) -> str | None:
        for addr in self.ips:
            if addr.version == 6:
                return str(addr.ip)
        return None


def result_ips(
    result: Mapping[str, Any], sandbox: str
) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """IPs of a CNI result that belong to an interface inside ``sandbox``.

    Entries whose ``interface`` index points at a host-side interface (no sandbox) are
    skipped; entries without an index are taken as the pod's.
    """
    interfaces = result.get("interfaces") or []
    out: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = []
    for entry in result.get("ips") or []:
        idx = entry.get("interface")
        if idx is not None and 0 <= idx < len(interfaces):
            owner = interfaces[idx].get("sandbox")
            if owner and os.path.realpath(owner) != os.path.realpath(sandbox):
                continue
            if not owner:
                continue
        out.append(ipaddress.ip_interface(entry["address"]))
    return out


def load_conflist(conflist: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """A conflist as a dict (from a mapping or a ``.conflist`` file), checked for shape."""
    if isinstance(conflist, Mapping):
        data = json.loads(json.dumps(conflist))
    else:
        data = json.loads(pathlib.Path(conflist).read_text())
    for key in ("name", "cniVersion", "plugins"):
        if key not in data:
            raise ValueError(f"conflist lacks {key!r}")
    if not data["plugins"] or any("type" not in p for p in data["plugins"]):
        raise ValueError("conflist plugins must be a non-empty list, each with a 'type'")
    return data


def find_plugin(plugin_type: str, cni_path: Sequence[str]) -> str:
    """The executable for ``plugin_type`` on CNI_PATH, as a runtime looks it up."""
    for directory in cni_path:
        candidate = os.path.join(directory, plugin_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(plugin_type, "lookup", f"failed to find plugin in path {list(cni_path)}")


def cni_args(pod_namespace: str, pod_name: str, container_id: str, uid: str) -> str:
    """``CNI_ARGS`` as the CRI plugin sends it (K8S_* keys, IgnoreUnknown)."""
    return ";".join(
        [
            "IgnoreUnknown=1",
            f"K8S_POD_NAMESPACE={pod_namespace}",
            f"K8S_POD_NAME={pod_name}",
            f"K8S_POD_INFRA_CONTAINER_ID={container_id}",
            f"K8S_POD_UID={uid}",
        ]
    )


def invoke(
    node: Netns,
    plugin_conf: Mapping[str, Any],
    *,
    command: str,
    conflist: Mapping[str, Any],
    container_id: str,
    netns_path: str,
    ifname: str,
    cni_path: Sequence[str],
    args: str,
    prev_result: Mapping[str, Any] | None,
    timeout: float = PLUGIN_TIMEOUT,
) -> dict[str, Any] | None:
    """Exec one plugin inside ``node``'s namespace; return its parsed stdout result."""
    plugin_type = plugin_conf["type"]
    path = find_plugin(plugin_type, cni_path)
    conf = dict(plugin_conf)
    conf["name"] = conflist["name"]
    conf["cniVersion"] = conflist["cniVersion"]
    if prev_result is not None:
        conf["prevResult"] = prev_result
    env = dict(
        os.environ,
        CNI_COMMAND=command,
        CNI_CONTAINERID=container_id,
        CNI_NETNS=netns_path,
        CNI_IFNAME=ifname,
        CNI_PATH=":".join(cni_path),
        CNI_ARGS=args,
    )
    started = time.monotonic()
    try:
        proc = subprocess.run(
            ["ip", "netns", "exec", node.netns, path],
            input=json.dumps(conf),
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CniError(plugin_type, command, f"no answer within {timeout}s") from exc
    elapsed = time.monotonic() - started
    log.info(
        "cni plugin ran node=%s plugin=%s command=%s container=%s rc=%d ms=%.1f",
        node.name,
        plugin_type,
        command,
        container_id[:12],
        proc.returncode,
        elapsed * 1000,
    )
    if proc.returncode != 0:
        try:
            err = json.loads(proc.stdout)
        except json.JSONDecodeError:
            err = {}
        if not isinstance(err, dict):
            err = {}
        raise CniError(
            plugin_type,
            command,
            str(err.get("msg") or proc.stdout.strip() or "no error message"),
            code=err.get("code"),
            details=str(err.get("details") or ""),
            stderr=proc.stderr,
            returncode=proc.returncode,
        )
    if not proc.stdout.strip():
        return None
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise CniError(
            plugin_type, command, f"result is not JSON: {proc.stdout[:200]!r}", stderr=proc.stderr
        ) from exc


def _unique_pod_netns(cluster: Cluster) -> str:
    existing = set(cluster.namespaces)
    while True:
        role = f"p{secrets.token_hex(2)}"
        if f"{cluster.prefix}{role}" not in existing:
            return role


def create_pod(
    node: Node,
    name: str,
    namespace: str = "default",
    conflist: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    cni_bin_dir: str | Sequence[str] = "/usr/lib/cni",
    *,
    ifname: str = "eth0",
    timeout: float = PLUGIN_TIMEOUT,
) -> Pod:
    """Make a pod sandbox on ``node`` and run the conflist's ADD chain for it.

    On failure the chain's DEL runs (best effort) and the namespace is removed, as a
    runtime tears down a sandbox whose network setup failed; the CniError is raised.
    The pod is DELeted and its namespace removed at cluster teardown if still there.
    """
    if conflist is None:
        raise ValueError("create_pod needs a conflist")
    conf = load_conflist(conflist)
    cluster = node.cluster
    cni_path = (cni_bin_dir,) if isinstance(cni_bin_dir, str) else tuple(cni_bin_dir)
    pod = Pod(
        name=name,
        netns=cluster.new_netns(_unique_pod_netns(cluster)),
        cluster=cluster,
        namespace=namespace,
        node=node,
        container_id=secrets.token_hex(32),
        ifname=ifname,
        conflist=conf,
        cni_path=cni_path,
    )
    cluster.add_cleanup(f"DEL pod {namespace}/{name}", lambda: _teardown_pod(pod))
    started = time.monotonic()
    result: dict[str, Any] | None = None
    try:
        for plugin in conf["plugins"]:
            result = invoke(
                node,
                plugin,
                command="ADD",
                conflist=conf,
                container_id=pod.container_id,
                netns_path=pod.netns_path,
                ifname=ifname,
                cni_path=cni_path,
                args=_args(pod),
                prev_result=result,
                timeout=timeout,
            )
    except BaseException:
        pod.result = result or {}
        _teardown_pod(pod)
        raise
    pod.result = result or {}
    pod.add_seconds = time.monotonic() - started
    log.info(
        "pod created pod=%s/%s node=%s netns=%s ips=%s ms=%.1f",
        namespace,
        name,
        node.name,
        pod.netns,
        ",".join(str(i) for i in pod.ips) or "-",
        pod.add_seconds * 1000,
    )
    return pod


def _args(pod: Pod) -> str:
    return cni_args(pod.namespace, pod.name, pod.container_id, pod.container_id[:32])


def _run_chain_reverse(pod: Pod, command: str, timeout: float) -> None:
    assert pod.node is not None
    for plugin in reversed(pod.conflist["plugins"]):
        invoke(
            pod.node,
            plugin,
            command=command,
            conflist=pod.conflist,
            container_id=pod.container_id,
            netns_path=pod.netns_path,
            ifname=pod.ifname,
            cni_path=pod.cni_path,
            args=_args(pod),
            prev_result=pod.result or None,
            timeout=timeout,
        )


def delete_pod(pod: Pod, *, timeout: float = PLUGIN_TIMEOUT) -> None:
    """Run DEL through the chain in reverse, then remove the pod's namespace.

    The namespace is removed even when DEL fails; the CniError is raised after.
    Deleting a deleted pod does nothing.
    """
    if pod.deleted:
        return
    try:
        _run_chain_reverse(pod, "DEL", timeout)
    finally:
        _remove_netns(pod)
    log.info("pod deleted pod=%s/%s netns=%s", pod.namespace, pod.name, pod.netns)


def check_pod(pod: Pod, *, timeout: float = PLUGIN_TIMEOUT) -> None:
    """Run CHECK through the chain (spec >= 0.4.0); raises CniError on a finding."""
    assert pod.node is not None
    for plugin in pod.conflist["plugins"]:
        invoke(
            pod.node,
            plugin,
            command="CHECK",
            conflist=pod.conflist,
            container_id=pod.container_id,
            netns_path=pod.netns_path,
            ifname=pod.ifname,
            cni_path=pod.cni_path,
            args=_args(pod),
            prev_result=pod.result or None,
            timeout=timeout,
        )


def _remove_netns(pod: Pod) -> None:
    pod.deleted = True
    if pod.netns in pod.cluster.namespaces:
        pod.cluster.namespaces.remove(pod.netns)
    run(["ip", "netns", "del", pod.netns], check=False)


def _teardown_pod(pod: Pod) -> None:
    """Best-effort DEL (bounded) then namespace removal; logs instead of raising."""
    if pod.deleted:
        return
    try:
        _run_chain_reverse(pod, "DEL", TEARDOWN_TIMEOUT)
    except Exception as exc:
        log.warning("pod DEL failed at teardown pod=%s/%s error=%s", pod.namespace, pod.name, exc)
    finally:
        _remove_netns(pod)


def bridge_conflist(
    subnet: str,
    state_dir: pathlib.Path,
    *,
    name: str = "e2e-bridge",
    bridge: str = "cni0",
    mtu: int | None = None,
) -> dict[str, Any]:
    """A conflist for Debian's reference ``bridge`` + ``host-local`` (+ ``tuning``).

    host-local keeps its leases under ``state_dir`` (never the host's /var/lib/cni).
    """
    plugins: list[dict[str, Any]] = [
        {
            "type": "bridge",
            "bridge": bridge,
            "isGateway": True,
            "ipMasq": False,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": str(state_dir / "host-local"),
            },
        }
    ]
    if mtu is not None:
        plugins.append({"type": "tuning", "mtu": mtu})
    return {"cniVersion": "1.0.0", "name": name, "plugins": plugins}
