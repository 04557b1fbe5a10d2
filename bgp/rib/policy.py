"""Import and export rules: prefix filters, loop checks, and the attribute rewrites of
RFC 4271 5.1 / 9.1.3, RFC 1997 (well-known communities) and RFC 4456 (route reflection).

All functions are pure. Attribute rewrites are computed once per attribute object and
cached by the caller, since every prefix of one UPDATE shares one ``PathAttributes``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from bgp.rib.decision import DEFAULT_LOCAL_PREF
from bgp.rib.path import IPAddress, PeerRef
from bgp.wire.types import (
    AFI_IPV4,
    AFI_IPV6,
    AS_SEQUENCE,
    NO_ADVERTISE,
    NO_EXPORT,
    NO_EXPORT_SUBCONFED,
    AsPathSegment,
    PathAttributes,
    Prefix,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class PrefixRule:
    """Matches ``cidr`` itself, or (``or_longer``) any prefix inside it."""

    cidr: Network
    or_longer: bool = True
    accept: bool = True

    def matches(self, net: Network) -> bool:
        if net.version != self.cidr.version:
            return False
        if self.or_longer:
            return net.prefixlen >= self.cidr.prefixlen and net.subnet_of(self.cidr)  # type: ignore[arg-type]
        return net == self.cidr

    @classmethod
    def parse(cls, spec: str | dict) -> PrefixRule:
        """``"10.0.0.0/8"`` (that prefix or longer), or a dict {cidr, match: exact|orlonger,
        action: accept|reject}. Errors name the field at fault."""
        if isinstance(spec, str):
            return cls(ipaddress.ip_network(spec, strict=True))
        try:
            cidr = ipaddress.ip_network(spec["cidr"], strict=True)
        except (KeyError, ValueError) as e:
            raise ValueError(f"cidr: {e}") from e
        match = spec.get("match", "orlonger")
        if match not in ("exact", "orlonger"):
            raise ValueError(f"match: must be exact or orlonger, got {match!r}")
        action = spec.get("action", "accept")
        if action not in ("accept", "reject"):
            raise ValueError(f"action: must be accept or reject, got {action!r}")
        return cls(cidr, match == "orlonger", action == "accept")


@dataclass(frozen=True)
class PrefixFilter:
    """First matching rule decides; with rules present, no match rejects. Empty: accept."""

    rules: tuple[PrefixRule, ...] = ()

    def allows(self, prefix: Prefix) -> bool:
        if not self.rules:
            return True
        net = prefix.network
        for rule in self.rules:
            if rule.matches(net):
                return rule.accept
        return False

    @classmethod
    def parse(cls, specs: Iterable[str | dict] | None) -> PrefixFilter:
        return cls(tuple(PrefixRule.parse(s) for s in specs or ()))


@dataclass(frozen=True)
class LocalSettings:
    """This speaker's identity, as the policy needs it."""

    local_as: int
    router_id: ipaddress.IPv4Address
    cluster_id: ipaddress.IPv4Address | None = None

    @property
    def effective_cluster_id(self) -> ipaddress.IPv4Address:
        return self.cluster_id if self.cluster_id is not None else self.router_id


@dataclass(frozen=True)
class ExportTarget:
    """A peer we send to, with the session facts the rewrite needs."""

    source: PeerRef  # the peer itself (address, AS, router id, iBGP, client)
    next_hop_v4: ipaddress.IPv4Address | None = None
    next_hop_v6: ipaddress.IPv6Address | None = None
    keep_original_next_hop: bool = False
    export_filter: PrefixFilter = PrefixFilter()
    afis: frozenset[int] = frozenset({AFI_IPV4, AFI_IPV6})  # negotiated on the session


def import_reject_reason(
    attrs: PathAttributes, source: PeerRef, local: LocalSettings
) -> str | None:
    """Why a received path is unusable (loop checks), or None. Per attribute set."""
    if not source.ibgp and attrs.contains_as(local.local_as):
        return "AS_PATH loop"
    if source.ibgp:
        if attrs.originator_id is not None and attrs.originator_id == local.router_id:
            return "ORIGINATOR_ID is ours"
        if local.effective_cluster_id in attrs.cluster_list:
            return "CLUSTER_LIST loop"
    return None


def import_attrs(attrs: PathAttributes, source: PeerRef) -> PathAttributes:
    """Attributes as stored: eBGP-learned paths get the local default LOCAL_PREF."""
    # RFC 4271 5.1.5: a LOCAL_PREF from an external peer is ignored.
    if not source.ibgp and not source.local and attrs.local_pref != DEFAULT_LOCAL_PREF:
        return dataclasses.replace(attrs, local_pref=DEFAULT_LOCAL_PREF)
    return attrs


def _prepend(as_path: tuple[AsPathSegment, ...], asn: int) -> tuple[AsPathSegment, ...]:
    if as_path and as_path[0].type == AS_SEQUENCE and len(as_path[0].asns) < 255:
        return (AsPathSegment(AS_SEQUENCE, (asn, *as_path[0].asns)), *as_path[1:])
    return (AsPathSegment(AS_SEQUENCE, (asn,)), *as_path)


def may_export(source: PeerRef, attrs: PathAttributes, target: PeerRef) -> bool:
    """RFC 1997 communities, iBGP split horizon and RFC 4456 reflection rules."""
    if source.address is not None and source.address == target.address:
        return False  # never back to where it came from
    comms = attrs.communities
    if comms:
        if NO_ADVERTISE in comms:
            return False
        if not target.ibgp and (NO_EXPORT in comms or NO_EXPORT_SUBCONFED in comms):
            return False
    if source.ibgp and not source.local and target.ibgp:
        # Learned over iBGP, going to iBGP: only as a route reflector.
        if source.rr_client:
            return True  # client routes go to clients and non-clients
        return target.rr_client  # non-client routes go to clients only
    return True


def export_attrs(
    source: PeerRef,
    attrs: PathAttributes,
    afi_v6: bool,
    target: ExportTarget,
    local: LocalSettings,
) -> PathAttributes | None:
    """The attributes to advertise to ``target``, or None when it must not get the path."""
    peer = target.source
    if (AFI_IPV6 if afi_v6 else AFI_IPV4) not in target.afis or not may_export(source, attrs, peer):
        return None
    self_hop: IPAddress | None = target.next_hop_v6 if afi_v6 else target.next_hop_v4
    # A route we originate with an explicit next hop (a route publisher speaking for
    # the node that owns a block) keeps it towards everyone: that is its whole point.
    explicit = source.local and attrs.next_hop is not None
    if not peer.ibgp:
        next_hop = attrs.next_hop if target.keep_original_next_hop or explicit else None
        if next_hop is None:
            next_hop = self_hop
        if next_hop is None:
            return None  # no usable next hop of this family on this session
        if next_hop.version != (6 if afi_v6 else 4):
            return None
        return dataclasses.replace(
            attrs,
            as_path=_prepend(attrs.as_path, local.local_as),
            next_hop=next_hop,
            next_hop_link_local=None,
            local_pref=None,
            med=attrs.med if source.local else None,
            originator_id=None,
            cluster_list=(),
        )
    next_hop = attrs.next_hop
    if (source.local and not explicit) or next_hop is None:
        next_hop = self_hop
    if next_hop is None:
        return None
    local_pref = attrs.local_pref if attrs.local_pref is not None else DEFAULT_LOCAL_PREF
    originator_id = attrs.originator_id
    cluster_list = attrs.cluster_list
    if source.ibgp and not source.local:
        # RFC 4456 8: reflecting; record who originated it and that it passed this cluster.
        if originator_id is None:
            originator_id = source.router_id
        cluster_list = (local.effective_cluster_id, *cluster_list)
    if (
        next_hop == attrs.next_hop
        and local_pref == attrs.local_pref
        and originator_id == attrs.originator_id
        and cluster_list == attrs.cluster_list
    ):
        return attrs
    return dataclasses.replace(
        attrs,
        next_hop=next_hop,
        local_pref=local_pref,
        originator_id=originator_id,
        cluster_list=cluster_list,
    )
