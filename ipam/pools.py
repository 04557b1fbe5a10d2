"""IP pools as IPAM sees them: which pools serve a request, and their blocks. Pure.

A pool is read from its stored resource (``/tabby/resources/v1/ippools/<name>``, the
resource JSON with camelCase spec fields). Only what IPAM needs is kept.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ipam.block import IPNetwork
from ipam.errors import NoSuitablePool
from model.selector import Selector, SelectorSyntaxError
from model.selector import parse as parse_selector

DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}
# A block stores one entry per address; Calico's limits (/20 IPv4, /116 IPv6) cap it.
MAX_BLOCK_BITS = 12


@dataclass(frozen=True)
class Pool:
    name: str
    cidr: IPNetwork
    block_size: int
    disabled: bool = False
    node_selector: str = "all()"

    @property
    def version(self) -> int:
        return self.cidr.version

    def blocks(self) -> Iterator[IPNetwork]:
        """Every block of the pool, lowest first (lazy: IPv6 pools are huge)."""
        return self.cidr.subnets(new_prefix=self.block_size)

    def block_for(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> IPNetwork:
        """The block of this pool that contains ``ip``."""
        return ipaddress.ip_network(f"{ip}/{self.block_size}", strict=False)

    def contains(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return ip.version == self.version and ip in self.cidr

    def size(self) -> int:
        return self.cidr.num_addresses


def pool_from_resource(raw: bytes | str) -> Pool:
    """Decode a stored IPPool resource; ``ValueError`` names the bad field."""
    d = json.loads(raw)
    meta = d.get("metadata") or {}
    spec = d.get("spec") or {}
    name = meta.get("name")
    if not name:
        raise ValueError("field metadata.name: missing")
    try:
        cidr = ipaddress.ip_network(spec["cidr"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"IPPool {name}: field spec.cidr: {e}") from None
    size = spec.get("blockSize") or DEFAULT_BLOCK_SIZE[cidr.version]
    if not isinstance(size, int) or not cidr.prefixlen <= size <= cidr.max_prefixlen:
        raise ValueError(f"IPPool {name}: field spec.blockSize: {size!r} does not fit {cidr}")
    if cidr.max_prefixlen - size > MAX_BLOCK_BITS:
        raise ValueError(
            f"IPPool {name}: field spec.blockSize: /{size} blocks are too large "
            f"(at most {2**MAX_BLOCK_BITS} addresses per block)"
        )
    return Pool(
        name=name,
        cidr=cidr,
        block_size=size,
        disabled=bool(spec.get("disabled", False)),
        node_selector=spec.get("nodeSelector") or "all()",
    )


def next_free_block(pool: Pool, taken: Iterable[IPNetwork]) -> IPNetwork | None:
    """The lowest block of ``pool`` not in ``taken``, or None when all are taken."""
    used = {n for n in taken if n.version == pool.version and n.subnet_of(pool.cidr)}  # type: ignore[arg-type]
    if len(used) >= 2 ** (pool.block_size - pool.cidr.prefixlen):
        return None
    for candidate in pool.blocks():
        if candidate not in used:
            return candidate
    return None


def pool_for_ip(
    pools: Iterable[Pool], ip: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> Pool | None:
    """The enabled pool that contains ``ip``, if any."""
    for p in pools:
        if not p.disabled and p.contains(ip):
            return p
    return None


def select_pools(
    pools: Iterable[Pool],
    version: int,
    node_labels: dict[str, str],
    requested: list[str] | None = None,
) -> list[Pool]:
    """The pools a request on this node may use, in preference order.

    Explicitly requested pools (by name or CIDR) win over node selectors but must
    exist, be enabled and be of the right family. Otherwise every enabled pool of the
    family whose ``nodeSelector`` matches the node. ``NoSuitablePool`` says why not.
    """
    pools = sorted(pools, key=lambda p: (p.cidr.version, p.cidr, p.name))
    if requested:
        chosen: list[Pool] = []
        reasons: list[str] = []
        for want in requested:
            match = [p for p in pools if p.name == want or str(p.cidr) == _norm_cidr(want)]
            if not match:
                reasons.append(f"requested pool {want} does not exist")
                continue
            p = match[0]
            if p.version != version:
                reasons.append(f"requested pool {p.name} ({p.cidr}) is not IPv{version}")
            elif p.disabled:
                reasons.append(f"requested pool {p.name} ({p.cidr}) is disabled")
            else:
                chosen.append(p)
        if reasons:
            raise NoSuitablePool(version, reasons)
        return chosen
    chosen = []
    reasons = []
    for p in pools:
        if p.version != version:
            continue
        if p.disabled:
            reasons.append(f"pool {p.name} is disabled")
        elif not node_selected(p.node_selector, node_labels):
            reasons.append(f"pool {p.name} nodeSelector {p.node_selector!r} does not match")
        else:
            chosen.append(p)
    if not chosen:
        if not reasons:
            reasons.append(f"no IPv{version} pools exist")
        raise NoSuitablePool(version, reasons)
    return chosen


def _norm_cidr(s: str) -> str:
    try:
        return str(ipaddress.ip_network(s, strict=False))
    except ValueError:
        return s


# --- node selectors -------------------------------------------------------------------


def node_selected(selector: str, labels: dict[str, str]) -> bool:
    """Whether a pool's ``nodeSelector`` matches a node's labels (Calico's language).

    A selector that does not parse matches nothing: never hand out addresses from a
    pool the operator meant to restrict. Validation rejects such pools on write.
    """
    try:
        return bool(_parse_selector(selector or "").evaluate(labels))
    except SelectorSyntaxError:
        return False


@functools.lru_cache(maxsize=256)
def _parse_selector(text: str) -> Selector:
    return parse_selector(text)
