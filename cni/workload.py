"""The WorkloadEndpoint the plugin writes per pod, and what it can learn about the pod.

WorkloadEndpoints live at ``keys.resource_key("workloadendpoints", name, namespace)``
as the model's camelCase JSON. Writes are create-or-compare-and-swap so a concurrent
writer is never overwritten blindly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from datastore import keys
from datastore.api import AlreadyExists, Conflict, KVStore, NotFound
from model import codec, validation
from model.errors import ValidationError
from model.resources import ObjectMeta, WorkloadEndpoint, WorkloadEndpointSpec

log = logging.getLogger(__name__)

PLURAL = WorkloadEndpoint.PLURAL
DEFAULT_NAMESPACE = "default"
LABEL_NAMESPACE = "tabby.dev/namespace"
LABEL_ORCHESTRATOR = "tabby.dev/orchestrator"
LABEL_NETWORK = "tabby.dev/network"
ANNOTATION_IPV4_POOLS = "cni.projectcalico.org/ipv4pools"
ANNOTATION_IPV6_POOLS = "cni.projectcalico.org/ipv6pools"
ANNOTATION_IP_ADDRS = "cni.projectcalico.org/ipAddrs"


@dataclass(frozen=True)
class PodInfo:
    """What the datastore knows about a pod before its network exists."""

    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


def _decode(raw: bytes) -> WorkloadEndpoint:
    res = codec.parse_resource(json.loads(raw))
    if not isinstance(res, WorkloadEndpoint):
        raise ValueError(f"expected a WorkloadEndpoint, found {res.KIND}")
    return res


def _encode(wep: WorkloadEndpoint) -> bytes:
    return json.dumps(codec.resource_to_dict(wep), separators=(",", ":")).encode()


def get(kv: KVStore, name: str, namespace: str) -> tuple[WorkloadEndpoint, int] | None:
    found = kv.get(keys.resource_key(PLURAL, name, namespace))
    if found is None:
        return None
    return _decode(found.value), found.mod_revision


def lookup_pod(kv: KVStore, name: str, namespace: str) -> PodInfo | None:
    """Labels and annotations of a pod, from a WorkloadEndpoint template written ahead.

    The one place that knows where pod metadata comes from: today a WorkloadEndpoint
    with the pod's endpoint name (written by the orchestrator integration or an
    operator); a Kubernetes API lookup would go here too.
    """
    found = get(kv, name, namespace)
    if found is None:
        return None
    meta = found[0].metadata
    labels = {k: v for k, v in meta.labels.items() if not k.startswith("tabby.dev/")}
    return PodInfo(labels=labels, annotations=dict(meta.annotations))


def build(
    *,
    name: str,
    namespace: str,
    node: str,
    orchestrator: str,
    workload: str,
    pod: str,
    container_id: str,
    endpoint: str,
    interface_name: str,
    mac: str,
    ip_networks: list[str],
    network: str,
    pod_info: PodInfo | None,
) -> WorkloadEndpoint:
    labels = dict(pod_info.labels) if pod_info else {}
    labels.update(
        {LABEL_NAMESPACE: namespace, LABEL_ORCHESTRATOR: orchestrator, LABEL_NETWORK: network}
    )
    wep = WorkloadEndpoint(
        metadata=ObjectMeta(
            name=name,
            namespace=namespace,
            labels=labels,
            annotations=dict(pod_info.annotations) if pod_info else {},
        ),
        spec=WorkloadEndpointSpec(
            orchestrator=orchestrator,
            workload=workload,
            node=node,
            container_id=container_id,
            pod=pod,
            endpoint=endpoint,
            interface_name=interface_name,
            mac=mac,
            ip_networks=ip_networks,
            profiles=[f"kns.{namespace}"] if orchestrator == "k8s" else [],
        ),
    )
    return validation.validate(wep)


def write(kv: KVStore, wep: WorkloadEndpoint, attempts: int = 5) -> None:
    """Create the endpoint, or replace the one there (a template, or a stale one)."""
    key = keys.resource_key(PLURAL, wep.metadata.name, wep.metadata.namespace)
    data = _encode(wep)
    for _ in range(attempts):
        current = kv.get(key)
        try:
            if current is None:
                kv.create(key, data)
            else:
                kv.update(key, data, current.mod_revision)
            return
        except (AlreadyExists, Conflict, NotFound):
            continue
    raise Conflict(f"{key} kept changing while writing it ({attempts} attempts)")


def delete(kv: KVStore, name: str, namespace: str, container_id: str | None = None) -> bool:
    """Delete the endpoint; with ``container_id``, only if it still belongs to that container.

    A pod's endpoint name does not include the container, so a late DEL of an old
    sandbox must not delete the endpoint of its replacement.
    """
    key = keys.resource_key(PLURAL, name, namespace)
    for _ in range(5):
        current = kv.get(key)
        if current is None:
            return False
        if container_id is not None:
            owner = _decode(current.value).spec.container_id
            if owner and owner != container_id:
                log.info(
                    "keeping endpoint of another container wep=%s/%s owner=%s del_for=%s",
                    namespace,
                    name,
                    owner,
                    container_id,
                )
                return False
        try:
            kv.delete(key, current.mod_revision)
            return True
        except NotFound:
            return False
        except Conflict:
            continue
    raise Conflict(f"{key} kept changing while deleting it")


def list_on_node(kv: KVStore, node: str) -> list[WorkloadEndpoint]:
    items, _ = kv.list(keys.resource_prefix(PLURAL))
    out = []
    for item in items:
        try:
            wep = _decode(item.value)
        except (ValueError, ValidationError) as exc:
            log.warning("skipping undecodable endpoint key=%s error=%s", item.key, exc)
            continue
        if wep.spec.node == node:
            out.append(wep)
    return out
