"""The graph's input state: the latest value of every resource it listens to, plus
the indexes the resolvers need to answer "what depends on this?" without a scan.

Nothing here emits messages; ``graph.CalcGraph`` decides what to recompute.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TypeVar

from model.resources import (
    BGPConfiguration,
    BGPPeer,
    FelixConfiguration,
    IPAMConfiguration,
    IPPool,
    Node,
    WorkloadEndpoint,
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
ResourceId = tuple[str, str]  # (namespace or "", name)
K = TypeVar("K")
V = TypeVar("V")

# Above this many addresses a block is matched against WEP IPs by scanning the IPs.
_MAX_BLOCK_ENUMERATION = 4096


@dataclass(frozen=True)
class Block:
    """The two facts the graph needs from an IPAM block: where it is and whose it is."""

    cidr: str  # canonical, e.g. "10.65.0.0/26"
    affinity: str | None  # node name, or None when the block is not affine to a node


def canonical_net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text, strict=False)


def parse_interface(text: str) -> IPInterface | None:
    """A node address with its prefix length ("10.0.1.5/24"); bare IPs become /32 or /128."""
    if not text:
        return None
    try:
        return ipaddress.ip_interface(text)
    except ValueError:
        return None


@dataclass
class ClusterState:
    nodes: dict[str, Node] = field(default_factory=dict)
    pools: dict[str, IPPool] = field(default_factory=dict)  # by resource name
    blocks: dict[str, Block] = field(default_factory=dict)  # by canonical CIDR
    weps: dict[ResourceId, WorkloadEndpoint] = field(default_factory=dict)
    bgp_configs: dict[str, BGPConfiguration] = field(default_factory=dict)
    bgp_peers: dict[str, BGPPeer] = field(default_factory=dict)
    felix_configs: dict[str, FelixConfiguration] = field(default_factory=dict)
    ipam_configs: dict[str, IPAMConfiguration] = field(default_factory=dict)

    # Indexes.
    blocks_by_node: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    block_prefixes: Counter[tuple[int, int]] = field(default_factory=Counter)  # (ver, plen)
    weps_by_node: dict[str, set[ResourceId]] = field(default_factory=lambda: defaultdict(set))
    weps_by_ip: dict[str, set[ResourceId]] = field(default_factory=lambda: defaultdict(set))

    # --- blocks -----------------------------------------------------------------------

    def set_block(self, block: Block | None, cidr: str) -> Block | None:
        """Store or delete (``block`` None) a block; returns the previous value."""
        old = self.blocks.pop(cidr, None)
        if old is not None:
            net = canonical_net(old.cidr)
            self.block_prefixes[(net.version, net.prefixlen)] -= 1
            if not self.block_prefixes[(net.version, net.prefixlen)]:
                del self.block_prefixes[(net.version, net.prefixlen)]
            if old.affinity:
                _discard(self.blocks_by_node, old.affinity, cidr)
        if block is not None:
            self.blocks[cidr] = block
            net = canonical_net(block.cidr)
            self.block_prefixes[(net.version, net.prefixlen)] += 1
            if block.affinity:
                self.blocks_by_node[block.affinity].add(cidr)
        return old

    def block_containing(self, net: IPNetwork) -> Block | None:
        """The most specific known block containing ``net``."""
        best: Block | None = None
        best_len = -1
        for version, plen in self.block_prefixes:
            if version != net.version or plen > net.prefixlen or plen <= best_len:
                continue
            candidate = self.blocks.get(str(net.supernet(new_prefix=plen)))
            if candidate is not None:
                best, best_len = candidate, plen
        return best

    def weps_in(self, cidr: str) -> set[ResourceId]:
        net = canonical_net(cidr)
        found: set[ResourceId] = set()
        if net.num_addresses <= min(_MAX_BLOCK_ENUMERATION, 4 * len(self.weps_by_ip) + 64):
            host_len = net.max_prefixlen
            for addr in net:
                found |= self.weps_by_ip.get(f"{addr}/{host_len}", set())
        else:
            for ip, ids in self.weps_by_ip.items():
                if canonical_net(ip).subnet_of(net):  # type: ignore[arg-type]
                    found |= ids
        return found

    # --- workload endpoints -------------------------------------------------------------

    def set_wep(self, rid: ResourceId, wep: WorkloadEndpoint | None) -> WorkloadEndpoint | None:
        old = self.weps.pop(rid, None)
        if old is not None:
            _discard(self.weps_by_node, old.spec.node, rid)
            for ip in wep_nets(old):
                _discard(self.weps_by_ip, str(ip), rid)
        if wep is not None:
            self.weps[rid] = wep
            self.weps_by_node[wep.spec.node].add(rid)
            for ip in wep_nets(wep):
                self.weps_by_ip[str(ip)].add(rid)
        return old

    # --- lookups ------------------------------------------------------------------------

    def pool_for(self, net: IPNetwork) -> IPPool | None:
        """The enclosing pool (most specific first; pools rarely number more than a few)."""
        best: IPPool | None = None
        best_len = -1
        for pool in self.pools.values():
            try:
                pnet = canonical_net(pool.spec.cidr)
            except ValueError:
                continue
            if (
                pnet.version == net.version
                and pnet.prefixlen <= net.prefixlen
                and net.subnet_of(pnet)  # type: ignore[arg-type]
                and pnet.prefixlen > best_len
            ):
                best, best_len = pool, pnet.prefixlen
        return best

    def node_address(self, name: str, version: int = 4) -> IPInterface | None:
        node = self.nodes.get(name)
        if node is None or node.spec.bgp is None:
            return None
        text = node.spec.bgp.ipv4_address if version == 4 else node.spec.bgp.ipv6_address
        return parse_interface(text)


def wep_nets(wep: WorkloadEndpoint) -> list[IPNetwork]:
    nets = []
    for text in wep.spec.ip_networks:
        try:
            nets.append(canonical_net(text))
        except ValueError:
            continue
    return nets


def _discard(index: dict[K, set[V]], key: K, item: V) -> None:
    """Remove ``item`` from ``index[key]``, dropping the key once its set is empty, so
    the indexes never grow with keys of things long gone."""
    members = index.get(key)
    if members is not None:
        members.discard(item)
        if not members:
            del index[key]
