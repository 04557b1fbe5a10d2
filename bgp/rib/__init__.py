"""Adj-RIB-In, import policy, decision process, Loc-RIB, export rules, Adj-RIB-Out. Pure."""

from bgp.rib.adj_out import AdjRibOut, Outgoing
from bgp.rib.decision import DEFAULT_LOCAL_PREF, select_best
from bgp.rib.path import Path, PeerRef
from bgp.rib.policy import ExportTarget, LocalSettings, PrefixFilter, PrefixRule, export_attrs
from bgp.rib.rib import PeerRib, Rib, UpdateResult

__all__ = [
    "DEFAULT_LOCAL_PREF",
    "AdjRibOut",
    "ExportTarget",
    "LocalSettings",
    "Outgoing",
    "Path",
    "PeerRef",
    "PeerRib",
    "PrefixFilter",
    "PrefixRule",
    "Rib",
    "UpdateResult",
    "export_attrs",
    "select_best",
]
