"""Names derived from a workload, kept identical to Calico's so operators recognise them.

Pure functions; the plumbing and the datastore code both use them.
"""

from __future__ import annotations

import hashlib

IFNAMSIZ = 15


def host_veth_name(workload_id: str, prefix: str = "cali") -> str:
    """``cali`` + the first hex digits of sha1(workload id), 15 characters in all."""
    digest = hashlib.sha1(workload_id.encode()).hexdigest()
    return prefix + digest[: IFNAMSIZ - len(prefix)]


def workload_id(container_id: str, pod: tuple[str, str] | None) -> str:
    """What the host veth name hashes: ``<namespace>.<pod>`` for Kubernetes, else the container."""
    return f"{pod[0]}.{pod[1]}" if pod else container_id


def ipam_handle(network: str, container_id: str) -> str:
    return f"{network}.{container_id}"


def _escape(part: str) -> str:
    # Calico doubles dashes inside each part so "-" can separate the parts unambiguously.
    return part.replace("-", "--")


def wep_name(node: str, container_id: str, pod: tuple[str, str] | None, ifname: str) -> str:
    """``<node>-k8s-<pod>-<ifname>`` or ``<node>-cni-<containerid>-<ifname>``."""
    if pod:
        return f"{_escape(node)}-k8s-{_escape(pod[1])}-{_escape(ifname)}"
    return f"{_escape(node)}-cni-{_escape(container_id)}-{_escape(ifname)}"
