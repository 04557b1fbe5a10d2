"""The WorkloadEndpoint the plugin writes per pod, and what it can learn about the pod.

WorkloadEndpoints live at ``keys.resource_key("workloadendpoints", name, namespace)``
as the model's camelCase JSON. Writes are create-or-compare-and-swap so a concurrent
writer is never overwritten blindly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from datastore import keys, resources
from datastore.api import AlreadyExists, Conflict, DatastoreError, KeyValue, KVStore, NotFound
from datastore.resources import ResourceStore
from model import codec, validation
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
    template: bytes = b""  # the stored template, put back if ADD fails after replacing it


def _decode(raw: bytes) -> WorkloadEndpoint:
    res = codec.parse_resource(json.loads(raw))
    if not isinstance(res, WorkloadEndpoint):
        raise ValueError(f"expected a WorkloadEndpoint, found {res.KIND}")
    return res


def get(kv: KVStore, name: str, namespace: str) -> tuple[WorkloadEndpoint, int] | None:
    """The endpoint and its mod_revision, or None."""
    return from_kv(kv.get(endpoint_key(name, namespace)))


def from_kv(found: KeyValue | None) -> tuple[WorkloadEndpoint, int] | None:
    """``get``'s answer from the endpoint's record as already read."""
    if found is None:
        return None
    wep = resources.decode(found)
    if not isinstance(wep, WorkloadEndpoint):
        raise DatastoreError(f"stored value at {found.key} is a {wep.KIND}, not a WorkloadEndpoint")
    return wep, found.mod_revision


def endpoint_key(name: str, namespace: str) -> str:
    """The endpoint's key (also its template's), for callers that batch reads."""
    return keys.resource_key(PLURAL, name, namespace)


def pod_info_from(found: KeyValue | None) -> PodInfo | None:
    """Labels and annotations of a pod, from the WorkloadEndpoint template as read.

    The one place that knows where pod metadata comes from: today a WorkloadEndpoint
    with the pod's endpoint name (``endpoint_key``), written ahead by the orchestrator
    integration or an operator; a Kubernetes API lookup would go here too.
    """
    if found is None:
        return None
    meta = _decode(found.value).metadata
    labels = {k: v for k, v in meta.labels.items() if not k.startswith("tabby.dev/")}
    return PodInfo(labels=labels, annotations=dict(meta.annotations), template=found.value)


def restore_template(kv: KVStore, name: str, namespace: str, info: PodInfo) -> None:
    """Undo a failed ADD's endpoint write: the template's exact bytes go back."""
    key = endpoint_key(name, namespace)
    current = kv.get(key)
    if current is None:
        kv.create(key, info.template)
    else:
        kv.update(key, info.template, current.mod_revision)


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


def write(kv: KVStore, wep: WorkloadEndpoint) -> None:
    """Create the endpoint, or replace the one there (a template, or a stale one)."""
    store = ResourceStore(kv)
    try:
        store.create(wep)  # the common case: one round trip
    except AlreadyExists:
        store.apply(wep)


def delete(
    kv: KVStore,
    name: str,
    namespace: str,
    container_id: str | None = None,
    current: WorkloadEndpoint | None = None,
) -> bool:
    """Delete the endpoint; with ``container_id``, only if it still belongs to that container.

    A pod's endpoint name does not include the container, so a late DEL of an old
    sandbox must not delete the endpoint of its replacement. ``current``: the endpoint
    as the caller just read it; the first (compare-and-swap) attempt trusts it.
    """
    store = ResourceStore(kv)
    for _ in range(5):
        if current is None:
            try:
                current = store.get(WorkloadEndpoint, name, namespace)
            except NotFound:
                return False
        owner = current.spec.container_id
        if container_id is not None and owner and owner != container_id:
            log.info(
                "keeping endpoint of another container wep=%s/%s owner=%s del_for=%s",
                namespace,
                name,
                owner,
                container_id,
            )
            return False
        try:
            store.delete(WorkloadEndpoint, name, namespace, current.metadata.resource_version)
            return True
        except NotFound:
            return False
        except Conflict:
            current = None
            continue
    raise Conflict(f"endpoint {namespace}/{name} kept changing while deleting it")


def list_on_node(kv: KVStore, node: str) -> list[WorkloadEndpoint]:
    return [w for w in ResourceStore(kv).list(WorkloadEndpoint) if w.spec.node == node]
