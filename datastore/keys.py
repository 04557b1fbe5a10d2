"""Where everything lives in etcd. One prefix per resource kind; IPAM under its own.

    /tabby/resources/v1/<plural>/<name>                 cluster-scoped kinds
    /tabby/resources/v1/<plural>/<namespace>/<name>     namespaced kinds
    /tabby/ipam/v1/blocks/<ipv4|ipv6>/<net>-<prefixlen> one IPAM block (JSON)
    /tabby/ipam/v1/affinities/<node>/<ipv4|ipv6>/<net>-<prefixlen>
    /tabby/ipam/v1/handles/<handle>                     allocations per handle
    /tabby/felix/v1/status/<node>/...                   per-node status Felix reports

Names in keys are used as they are: resource names are validated to DNS-1123 form,
so they contain no "/".
"""

from __future__ import annotations

import ipaddress

ROOT = "/tabby"
RESOURCES = f"{ROOT}/resources/v1/"
IPAM = f"{ROOT}/ipam/v1/"
IPAM_BLOCKS = f"{IPAM}blocks/"
IPAM_AFFINITIES = f"{IPAM}affinities/"
IPAM_HANDLES = f"{IPAM}handles/"
FELIX_STATUS = f"{ROOT}/felix/v1/status/"


def resource_prefix(plural: str) -> str:
    return f"{RESOURCES}{plural}/"


def resource_key(plural: str, name: str, namespace: str | None = None) -> str:
    if namespace:
        return f"{RESOURCES}{plural}/{namespace}/{name}"
    return f"{RESOURCES}{plural}/{name}"


def _cidr_part(cidr: str) -> tuple[str, str]:
    net = ipaddress.ip_network(cidr)
    family = "ipv4" if net.version == 4 else "ipv6"
    return family, f"{net.network_address}-{net.prefixlen}"


def block_key(cidr: str) -> str:
    family, part = _cidr_part(cidr)
    return f"{IPAM_BLOCKS}{family}/{part}"


def affinity_key(node: str, cidr: str) -> str:
    family, part = _cidr_part(cidr)
    return f"{IPAM_AFFINITIES}{node}/{family}/{part}"


def handle_key(handle: str) -> str:
    return f"{IPAM_HANDLES}{handle}"


def cidr_from_key(key: str) -> str:
    """The CIDR at the end of a block or affinity key ("10.65.0.0-26" -> "10.65.0.0/26")."""
    last = key.rsplit("/", 1)[-1]
    net, _, plen = last.rpartition("-")
    return f"{net}/{plen}"
