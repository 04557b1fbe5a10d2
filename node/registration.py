"""A node announces itself: its Node resource with the addresses it detected.

Written compare-and-swap, keeping whatever else an operator set on the Node (labels,
AS number, route-reflector cluster id), like calico-node's startup.
"""

from __future__ import annotations

import dataclasses
import logging

from datastore.api import AlreadyExists, Conflict, NotFound
from datastore.resources import ResourceStore
from model.resources import IPPool, IPPoolSpec, Node, NodeBGPSpec, NodeSpec, ObjectMeta

log = logging.getLogger("tabby.node.registration")

MAX_ATTEMPTS = 10


def register_node(
    store: ResourceStore,
    name: str,
    ipv4: str = "",
    ipv6: str = "",
    as_number: int | None = None,
    labels: dict[str, str] | None = None,
) -> Node:
    """Create or update Node ``name`` with these addresses; returns what was stored."""
    for _ in range(MAX_ATTEMPTS):
        try:
            current = store.get(Node, name)
        except NotFound:
            current = None
        if current is None:
            node = Node(
                metadata=ObjectMeta(name=name, labels=dict(labels or {})),
                spec=NodeSpec(
                    bgp=NodeBGPSpec(ipv4_address=ipv4, ipv6_address=ipv6, as_number=as_number)
                ),
            )
            try:
                stored = store.create(node)
            except AlreadyExists:
                continue
        else:
            bgp = current.spec.bgp or NodeBGPSpec()
            bgp = dataclasses.replace(
                bgp,
                ipv4_address=ipv4 or bgp.ipv4_address,
                ipv6_address=ipv6 or bgp.ipv6_address,
                as_number=as_number if as_number is not None else bgp.as_number,
            )
            current.spec.bgp = bgp
            if labels:
                current.metadata.labels.update(labels)
            try:
                stored = store.replace(current)
            except (Conflict, NotFound):
                continue
        log.info("node registered name=%s ipv4=%s ipv6=%s", name, ipv4 or "-", ipv6 or "-")
        return stored
    raise Conflict(f"Node {name!r}: gave up after {MAX_ATTEMPTS} concurrent modifications")


def ensure_default_pool(store: ResourceStore, cidr: str, vxlan_mode: str = "Never") -> bool:
    """Create ``default-ipv4-ippool`` when the cluster has no pool at all (first node up)."""
    if not cidr or store.list(IPPool):
        return False
    pool = IPPool(
        metadata=ObjectMeta(name="default-ipv4-ippool"),
        spec=IPPoolSpec(cidr=cidr, vxlan_mode=vxlan_mode, nat_outgoing=True),
    )
    try:
        store.create(pool)
    except AlreadyExists:
        return False
    log.info("default pool created cidr=%s vxlan_mode=%s", cidr, vxlan_mode)
    return True
