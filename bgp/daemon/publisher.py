"""Route publisher mode: one speaker advertises the whole cluster's pod routes.

    tabby-bgpd --publish-from-datastore --etcd-endpoints URL --config FILE

For peering a ToR or gateway without putting every node in BGP. The speaker's own
settings and peers come from the config file (``originate`` there is ignored); what it
advertises comes from the datastore: every IPAM block with a host affinity, with the
owning node's address as next hop, plus every borrowed address (allocated in a block
affine to another node) as a /32 (/128) via the node holding it. A block whose node
is unknown (removed from the cluster, or without an address of that family) is
withdrawn, and so is everything inside an IP pool with ``disableBGPExport`` (the most
specific enclosing pool decides, as in Felix).

``PublisherView`` is the pure part (datastore values in, ``Originate`` tuples out);
``publishing`` wires it to ``datastore.syncer.Syncer`` and a running speaker
(``bgp.daemon.main.run`` does the rest, as in standalone mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bgp.daemon.config import Originate

if TYPE_CHECKING:
    from bgp.daemon.speaker import Speaker
    from datastore.syncer import Update

log = logging.getLogger("bgp.publisher")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
HOST_PREFIX = "host:"


@dataclass(frozen=True)
class BlockInfo:
    cidr: Network
    owner: str | None  # the affine node
    borrowed: tuple[tuple[IPAddress, str], ...] = ()  # (address, node holding it)


def parse_node(value: bytes) -> tuple[IPAddress | None, IPAddress | None]:
    """(IPv4, IPv6) of a Node resource's BGP section; ValueError names the field."""
    obj = json.loads(value)
    bgp = ((obj.get("spec") or {}).get("bgp")) or {}
    out: list[IPAddress | None] = []
    for fname in ("ipv4Address", "ipv6Address"):
        text = bgp.get(fname) or ""
        try:
            out.append(ipaddress.ip_interface(text).ip if text else None)
        except ValueError as e:
            raise ValueError(f"spec.bgp.{fname}: {e}") from None
    return out[0], out[1]


def parse_pool(value: bytes) -> tuple[Network, bool]:
    """An IPPool resource: (CIDR, disableBGPExport); ValueError names the field."""
    spec = json.loads(value).get("spec") or {}
    try:
        cidr = ipaddress.ip_network(spec.get("cidr") or "", strict=False)
    except ValueError as e:
        raise ValueError(f"spec.cidr: {e}") from None
    disable = spec.get("disableBGPExport", False)
    if not isinstance(disable, bool):
        raise ValueError(f"spec.disableBGPExport: must be true or false, not {disable!r}")
    return cidr, disable


def parse_block(value: bytes) -> BlockInfo:
    """An IPAM block: its CIDR, affine node, and addresses held by other nodes."""
    from ipam.block import AllocationBlock

    block = AllocationBlock.from_json(value)
    owner = None
    if block.affinity and block.affinity.startswith(HOST_PREFIX):
        owner = block.affinity[len(HOST_PREFIX) :] or None
    borrowed = []
    for ordinal, idx in enumerate(block.allocations):
        if idx is None:
            continue
        holder = block.attributes[idx].secondary.get("node")
        if holder and holder != owner:
            borrowed.append((block.address(ordinal), holder))
    return BlockInfo(block.cidr, owner, tuple(borrowed))


@dataclass
class PublisherView:
    nodes: dict[str, tuple[IPAddress | None, IPAddress | None]] = field(default_factory=dict)
    blocks: dict[str, BlockInfo] = field(default_factory=dict)
    pools: dict[str, tuple[Network, bool]] = field(default_factory=dict)  # key: (cidr, off)
    bad_values: int = 0

    def update(
        self,
        key: str,
        value: bytes | None,
        nodes_prefix: str,
        blocks_prefix: str,
        pools_prefix: str | None = None,
    ) -> None:
        """One datastore key (None: deleted). A value that does not parse counts as
        deleted, so a corrupt block can never keep a stale route alive."""
        try:
            if pools_prefix is not None and key.startswith(pools_prefix):
                if value is None:
                    self.pools.pop(key, None)
                else:
                    self.pools[key] = parse_pool(value)
            elif key.startswith(nodes_prefix):
                name = key[len(nodes_prefix) :]
                if value is None:
                    self.nodes.pop(name, None)
                else:
                    self.nodes[name] = parse_node(value)
            elif key.startswith(blocks_prefix):
                if value is None:
                    self.blocks.pop(key, None)
                else:
                    self.blocks[key] = parse_block(value)
        except (ValueError, KeyError, TypeError) as e:
            self.bad_values += 1
            self.nodes.pop(key[len(nodes_prefix) :], None)
            self.blocks.pop(key, None)
            self.pools.pop(key, None)
            log.warning("datastore value ignored (treated as deleted) key=%s error=%s", key, e)

    def _hop(self, node: str | None, version: int) -> IPAddress | None:
        if node is None or node not in self.nodes:
            return None
        return self.nodes[node][0 if version == 4 else 1]

    def _exported(self, net: Network) -> bool:
        """False inside a pool with disableBGPExport (the most specific pool decides)."""
        best: tuple[Network, bool] | None = None
        for pool, disabled in self.pools.values():
            if (
                pool.version == net.version
                and net.subnet_of(pool)  # type: ignore[arg-type]
                and (best is None or pool.prefixlen > best[0].prefixlen)
            ):
                best = (pool, disabled)
        return best is None or not best[1]

    def originate(self) -> tuple[Originate, ...]:
        routes: dict[Network, IPAddress] = {}
        for b in self.blocks.values():
            if not self._exported(b.cidr):
                continue  # borrowed addresses live in the block, hence in the pool too
            hop = self._hop(b.owner, b.cidr.version)
            if hop is not None:
                routes[b.cidr] = hop
            for ip, holder in b.borrowed:
                hop = self._hop(holder, ip.version)
                if hop is not None:
                    routes[ipaddress.ip_network(ip)] = hop
        return tuple(
            Originate(prefix, next_hop=hop)
            for prefix, hop in sorted(routes.items(), key=lambda kv: (kv[0].version, kv[0]))
        )


@contextlib.asynccontextmanager
async def publishing(speaker: Speaker, endpoints: list[str]) -> AsyncIterator[None]:
    """Keep ``speaker``'s originated routes equal to the datastore's, while inside."""
    from datastore import keys
    from datastore.etcd import EtcdStore
    from datastore.syncer import Syncer

    loop = asyncio.get_running_loop()
    view = PublisherView()
    nodes_prefix = keys.resource_prefix("nodes")
    pools_prefix = keys.resource_prefix("ippools")
    pending: list[tuple[str, bytes | None]] = []
    scheduled = False

    def apply() -> None:
        nonlocal scheduled
        scheduled = False
        batch, pending[:] = list(pending), []
        for key, value in batch:
            view.update(key, value, nodes_prefix, keys.IPAM_BLOCKS, pools_prefix)
        routes = view.originate()
        speaker.set_originate(routes)
        log.info(
            "published routes=%d blocks=%d nodes=%d pools=%d", len(routes), len(view.blocks),
            len(view.nodes), len(view.pools),
        )  # fmt: skip

    class Callbacks:
        """Called on the syncer's thread: hand everything to the event loop."""

        def on_updates(self, updates: list[Update]) -> None:
            def queue() -> None:
                nonlocal scheduled
                pending.extend((u.key, u.value) for u in updates)
                if not scheduled:
                    scheduled = True
                    loop.call_later(0.05, apply)

            loop.call_soon_threadsafe(queue)

        def on_status(self, status: str) -> None:
            log.info("datastore status=%s", status)

    store = EtcdStore(endpoints)
    syncer = Syncer(store, [nodes_prefix, pools_prefix, keys.IPAM_BLOCKS], Callbacks())
    syncer.start()
    log.info("route publisher started endpoints=%s", ",".join(endpoints))
    try:
        yield
    finally:
        await asyncio.to_thread(syncer.stop)
        store.close()
