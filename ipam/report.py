"""What ``tabbyctl ipam show|check|release`` report, as plain dataclasses. Reads only
(``release_ip`` writes through ``IPAMClient``); the CLI does the printing.

``check`` cross-references IPAM records with the cluster: an allocation is leaked
when its handle (``<network>.<containerID>``) matches no WorkloadEndpoint's
``spec.containerID``. Node tunnel addresses (handles ``vxlan-tunnel-addr-<node>``,
``ipip-tunnel-addr-<node>``) belong to their node instead.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

from datastore.api import KVStore
from datastore.keys import (
    IPAM_AFFINITIES,
    IPAM_BLOCKS,
    IPAM_HANDLES,
    cidr_from_key,
    resource_prefix,
)
from ipam.block import AllocationBlock, affinity_node
from ipam.client import IPAMClient
from ipam.errors import CorruptRecord, InvalidRequest
from ipam.pools import Pool

TUNNEL_HANDLE_PREFIXES = ("vxlan-tunnel-addr-", "ipip-tunnel-addr-", "wireguard-tunnel-addr-")


# ================================================================= show


@dataclass
class BlockUsage:
    cidr: str
    affinity: str | None
    pool: str  # "" when the block is in no current pool (pool deleted)
    size: int
    in_use: int

    @property
    def free(self) -> int:
        return self.size - self.in_use


@dataclass
class PoolUsage:
    name: str
    cidr: str
    disabled: bool
    size: int  # addresses in the pool
    in_use: int
    blocks: int  # blocks claimed so far

    @property
    def free(self) -> int:
        return self.size - self.in_use


@dataclass
class IPAMShow:
    pools: list[PoolUsage]
    blocks: list[BlockUsage]  # empty unless asked for


def show(kv: KVStore, show_blocks: bool = False) -> IPAMShow:
    """Usage per pool (and per block with ``show_blocks``)."""
    pools = IPAMClient(kv).pools()
    blocks = _all_blocks(kv)
    usage = {p.name: PoolUsage(p.name, str(p.cidr), p.disabled, p.size(), 0, 0) for p in pools}
    rows: list[BlockUsage] = []
    for blk in blocks:
        pool = _pool_of(pools, blk)
        if pool is not None:
            usage[pool.name].in_use += blk.in_use
            usage[pool.name].blocks += 1
        rows.append(
            BlockUsage(str(blk.cidr), blk.affinity, pool.name if pool else "", blk.size, blk.in_use)
        )
    ordered = sorted(usage.values(), key=lambda u: _net_sort(u.cidr))
    return IPAMShow(pools=ordered, blocks=rows if show_blocks else [])


# ================================================================= check


@dataclass
class LeakedAllocation:
    ip: str
    handle: str | None
    block: str


@dataclass
class CountMismatch:
    """A handle record and the blocks disagree on how many addresses it holds."""

    handle: str
    block: str
    handle_count: int
    block_count: int


@dataclass
class OrphanBlock:
    """A block affine to a node that no longer exists."""

    cidr: str
    node: str
    in_use: int


@dataclass
class OrphanAffinity:
    """An affinity record whose node is gone or whose block does not exist."""

    node: str
    cidr: str
    state: str
    reason: str


@dataclass
class CheckReport:
    blocks_checked: int = 0
    allocations_checked: int = 0
    handles_checked: int = 0
    leaked_handles: list[str] = field(default_factory=list)
    leaked_allocations: list[LeakedAllocation] = field(default_factory=list)
    orphan_blocks: list[OrphanBlock] = field(default_factory=list)
    orphan_affinities: list[OrphanAffinity] = field(default_factory=list)
    count_mismatches: list[CountMismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.leaked_handles
            or self.leaked_allocations
            or self.orphan_blocks
            or self.orphan_affinities
            or self.count_mismatches
        )


def check(kv: KVStore) -> CheckReport:
    """Find leaked allocations, orphaned blocks/affinities and handle count mismatches."""
    nodes = _node_names(kv)
    container_ids = _wep_container_ids(kv)
    blocks = _all_blocks(kv)
    handles = _all_handles(kv)
    rep = CheckReport(blocks_checked=len(blocks), handles_checked=len(handles))

    def handle_alive(h: str | None) -> bool:
        if h is None:
            return False
        for prefix in TUNNEL_HANDLE_PREFIXES:
            if h.startswith(prefix):
                return h[len(prefix) :] in nodes
        # "<network>.<containerID>": either part may contain dots (the CNI spec allows
        # them in both), so any tail after a dot may be the container.
        parts = h.split(".")
        return any(".".join(parts[i:]) in container_ids for i in range(1, len(parts)))

    block_counts: dict[tuple[str, str], int] = {}
    for blk in blocks:
        cidr = str(blk.cidr)
        node = affinity_node(blk.affinity)
        if node is not None and node not in nodes:
            rep.orphan_blocks.append(OrphanBlock(cidr, node, blk.in_use))
        for o, idx in enumerate(blk.allocations):
            if idx is None:
                continue
            rep.allocations_checked += 1
            h = blk.attributes[idx].handle_id
            if h is not None:
                block_counts[(h, cidr)] = block_counts.get((h, cidr), 0) + 1
            if not handle_alive(h):
                rep.leaked_allocations.append(LeakedAllocation(str(blk.address(o)), h, cidr))

    handle_counts: dict[tuple[str, str], int] = {}
    for h, counts in handles.items():
        if not handle_alive(h):
            rep.leaked_handles.append(h)
        for cidr, n in counts.items():
            handle_counts[(h, cidr)] = n
    for key in sorted(set(block_counts) | set(handle_counts)):
        hc, bc = handle_counts.get(key, 0), block_counts.get(key, 0)
        if hc != bc:
            rep.count_mismatches.append(CountMismatch(key[0], key[1], hc, bc))

    existing = {str(b.cidr) for b in blocks}
    akvs, _ = kv.list(IPAM_AFFINITIES)
    for akv in akvs:
        node = akv.key[len(IPAM_AFFINITIES) :].split("/", 1)[0]
        cidr = cidr_from_key(akv.key)
        try:
            state = str(json.loads(akv.value).get("state", ""))
        except (ValueError, AttributeError):
            state = "?"
        if node not in nodes:
            rep.orphan_affinities.append(OrphanAffinity(node, cidr, state, "node does not exist"))
        elif cidr not in existing:
            rep.orphan_affinities.append(OrphanAffinity(node, cidr, state, "block does not exist"))
    return rep


# ================================================================= release


@dataclass
class ReleaseResult:
    ip: str
    released: bool  # False: the address was not allocated
    handle: str | None  # who held it


def release_ip(kv: KVStore, ip: str) -> ReleaseResult:
    """``tabbyctl ipam release --ip X``: free one address, say whose it was."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidRequest(f"not an IP address: {ip!r}") from None
    holder: str | None = None
    for blk in _all_blocks(kv, addr.version):
        if blk.contains(addr):
            attr = blk.holder(addr)
            holder = attr.handle_id if attr else None
            break
    missed = IPAMClient(kv).release_ips([str(addr)])
    return ReleaseResult(str(addr), released=not missed, handle=holder)


# ================================================================= reading


def _all_blocks(kv: KVStore, version: int | None = None) -> list[AllocationBlock]:
    prefix = IPAM_BLOCKS if version is None else f"{IPAM_BLOCKS}ipv{version}/"
    kvs, _ = kv.list(prefix)
    out = []
    for item in kvs:
        try:
            out.append(AllocationBlock.from_json(item.value))
        except ValueError as e:
            raise CorruptRecord(item.key, str(e)) from None
    return sorted(out, key=lambda b: (b.cidr.version, int(b.cidr.network_address)))


def _all_handles(kv: KVStore) -> dict[str, dict[str, int]]:
    kvs, _ = kv.list(IPAM_HANDLES)
    out = {}
    for item in kvs:
        try:
            d = json.loads(item.value)
            out[str(d["handleID"])] = {str(c): int(n) for c, n in d["block"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CorruptRecord(item.key, f"field block/handleID: {e}") from None
    return out


def _node_names(kv: KVStore) -> set[str]:
    prefix = resource_prefix("nodes")
    kvs, _ = kv.list(prefix)
    return {item.key[len(prefix) :] for item in kvs}


def _wep_container_ids(kv: KVStore) -> set[str]:
    kvs, _ = kv.list(resource_prefix("workloadendpoints"))
    ids = set()
    for item in kvs:
        try:
            cid = (json.loads(item.value).get("spec") or {}).get("containerID")
        except (ValueError, AttributeError):
            continue
        if cid:
            ids.add(str(cid))
    return ids


def _pool_of(pools: list[Pool], blk: AllocationBlock) -> Pool | None:
    for p in pools:
        if p.version == blk.cidr.version and blk.cidr.subnet_of(p.cidr):  # type: ignore[arg-type]
            return p
    return None


def _net_sort(cidr: str) -> tuple[int, int]:
    n = ipaddress.ip_network(cidr)
    return n.version, int(n.network_address)


__all__ = [
    "BlockUsage",
    "CheckReport",
    "CountMismatch",
    "IPAMShow",
    "LeakedAllocation",
    "OrphanAffinity",
    "OrphanBlock",
    "PoolUsage",
    "ReleaseResult",
    "check",
    "release_ip",
    "show",
]
