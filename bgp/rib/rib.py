"""Adj-RIBs-In, Loc-RIB and Adj-RIBs-Out of one speaker, wired together. Pure.

Everything is a dictionary keyed by prefix, and work is proportional to what changed:
an UPDATE touches only its own prefixes, a best-path change is exported to each
established peer once. The daemon calls in (peer up/down, updates, End-of-RIB) and
takes out per-peer ``Outgoing`` batches and best-path change events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from bgp.rib.adj_out import AdjRibOut, Outgoing
from bgp.rib.decision import select_best
from bgp.rib.path import Path, PeerRef
from bgp.rib.policy import (
    ExportTarget,
    LocalSettings,
    PrefixFilter,
    export_attrs,
    import_attrs,
    import_reject_reason,
)
from bgp.wire.types import AFI_IPV6, PathAttributes, Prefix

log = logging.getLogger(__name__)

BestListener = Callable[[Prefix, Path | None], None]

_EXPORT_CACHE_LIMIT = 4096


@dataclass
class UpdateResult:
    announced: int = 0
    withdrawn: int = 0
    rejected: int = 0
    max_prefix_exceeded: bool = False


@dataclass
class PeerRib:
    """Per-peer tables. ``ref`` and ``target`` are set while the session is up."""

    key: str
    import_filter: PrefixFilter = field(default_factory=PrefixFilter)
    max_prefixes: int | None = None
    ref: PeerRef | None = None
    target: ExportTarget | None = None
    adj_in: dict[Prefix, Path] = field(default_factory=dict)
    accepted: int = 0
    adj_out: AdjRibOut = field(default_factory=AdjRibOut)
    export_cache: dict[tuple[int, int, bool], tuple[PathAttributes, PeerRef, object]] = field(
        default_factory=dict
    )

    @property
    def up(self) -> bool:
        return self.target is not None


def _dest_key(prefix: Prefix) -> Prefix:
    return prefix if not prefix.path_id else prefix.with_path_id(0)


class Rib:
    def __init__(self, local: LocalSettings) -> None:
        self.local = local
        self.peers: dict[str, PeerRib] = {}
        # Loc-RIB: destination -> candidate paths, best first (index 0 when selected).
        self.loc: dict[Prefix, list[Path]] = {}
        self.best: dict[Prefix, Path] = {}
        self.local_ref = PeerRef(None, local.local_as, local.router_id, ibgp=True)
        self.originated: dict[Prefix, Path] = {}
        self.best_listeners: list[BestListener] = []
        self.pending_listeners: list[Callable[[str], None]] = []

    # ---- peers ----------------------------------------------------------------------

    def add_peer(
        self, key: str, import_filter: PrefixFilter | None = None, max_prefixes: int | None = None
    ) -> PeerRib:
        peer = self.peers.get(key)
        if peer is None:
            peer = self.peers[key] = PeerRib(key)
        peer.import_filter = import_filter or PrefixFilter()
        peer.max_prefixes = max_prefixes
        return peer

    def remove_peer(self, key: str) -> None:
        self.peer_down(key, keep_stale=False)
        self.peers.pop(key, None)

    def peer_up(self, key: str, ref: PeerRef, target: ExportTarget) -> None:
        """Session Established: advertise the whole Loc-RIB to it (via its Adj-RIB-Out)."""
        peer = self.peers[key]
        peer.ref = ref
        peer.target = target
        peer.adj_out.clear()
        peer.export_cache.clear()
        for dest, best in self.best.items():
            attrs = self._export(peer, best)
            if attrs is not None:
                peer.adj_out.stage(dest, attrs)
        self._notify_pending(key)

    def peer_down(self, key: str, keep_stale: bool) -> int:
        """Session lost. With ``keep_stale`` (graceful restart) routes stay, marked stale;
        otherwise they are withdrawn. Returns the number of paths affected."""
        peer = self.peers.get(key)
        if peer is None:
            return 0
        peer.target = None
        peer.adj_out.clear()
        peer.export_cache.clear()
        if keep_stale:
            for path in peer.adj_in.values():
                path.stale = True
            return len(peer.adj_in)
        count = len(peer.adj_in)
        for prefix in list(peer.adj_in):
            self._remove_in(peer, prefix)
        return count

    def sweep_stale(self, key: str, afi: int | None = None) -> int:
        """End-of-RIB (for ``afi``) or restart timer expiry: drop paths not refreshed."""
        peer = self.peers.get(key)
        if peer is None:
            return 0
        stale = [
            p for p, path in peer.adj_in.items() if path.stale and (afi is None or p.afi == afi)
        ]
        for prefix in stale:
            self._remove_in(peer, prefix)
        return len(stale)

    # ---- input ----------------------------------------------------------------------

    def apply_update(
        self,
        key: str,
        withdrawn: Iterable[Prefix],
        attrs: PathAttributes | None,
        nlri: Iterable[Prefix],
        treat_as_withdraw: bool = False,
    ) -> UpdateResult:
        peer = self.peers[key]
        ref = peer.ref
        assert ref is not None, f"update from {key} while not established"
        result = UpdateResult()
        for prefix in withdrawn:
            if self._remove_in(peer, prefix):
                result.withdrawn += 1
        nlri = list(nlri)
        if not nlri:
            return result
        if treat_as_withdraw or attrs is None:
            # RFC 7606 2: the NLRI are treated as withdrawn.
            for prefix in nlri:
                if self._remove_in(peer, prefix):
                    result.withdrawn += 1
            return result
        reason = import_reject_reason(attrs, ref, self.local)
        stored = import_attrs(attrs, ref)
        allows = peer.import_filter.allows
        for prefix in nlri:
            accepted = reason is None and allows(prefix)
            self._add_in(peer, Path(prefix, stored, ref, accepted=accepted))
            if accepted:
                result.announced += 1
            else:
                result.rejected += 1
        if reason is not None:
            log.debug("paths rejected peer=%s reason=%r count=%d", key, reason, len(nlri))
        if peer.max_prefixes is not None and peer.accepted > peer.max_prefixes:
            result.max_prefix_exceeded = True
        return result

    def originate(self, prefix: Prefix, attrs: PathAttributes) -> None:
        path = Path(prefix, attrs, self.local_ref)
        old = self.originated.get(prefix)
        self.originated[prefix] = path
        dest = _dest_key(prefix)
        paths = self.loc.setdefault(dest, [])
        if old is not None:
            paths.remove(old)
        paths.append(path)
        self._decide(dest, paths)

    def withdraw_originated(self, prefix: Prefix) -> None:
        old = self.originated.pop(prefix, None)
        if old is None:
            return
        dest = _dest_key(prefix)
        paths = self.loc[dest]
        paths.remove(old)
        self._decide(dest, paths)

    # ---- output ---------------------------------------------------------------------

    def flush(self, key: str) -> Outgoing:
        peer = self.peers.get(key)
        if peer is None or not peer.up:
            return Outgoing()
        return peer.adj_out.flush()

    def has_pending(self, key: str) -> bool:
        peer = self.peers.get(key)
        return bool(peer and peer.up and peer.adj_out.pending)

    def loc_rib(self, afi: int | None = None) -> Iterator[tuple[Prefix, list[Path]]]:
        for dest, paths in self.loc.items():
            if afi is None or dest.afi == afi:
                yield dest, paths

    # ---- internals ------------------------------------------------------------------

    def _add_in(self, peer: PeerRib, path: Path) -> None:
        prefix = path.prefix
        old = peer.adj_in.get(prefix)
        peer.adj_in[prefix] = path
        dest = _dest_key(prefix)
        if old is not None and old.accepted:
            peer.accepted -= 1
            paths = self.loc[dest]
            paths.remove(old)
        elif path.accepted:
            paths = self.loc.setdefault(dest, [])
        else:
            return
        if path.accepted:
            peer.accepted += 1
            paths.append(path)
        self._decide(dest, paths)

    def _remove_in(self, peer: PeerRib, prefix: Prefix) -> bool:
        old = peer.adj_in.pop(prefix, None)
        if old is None:
            return False
        if old.accepted:
            peer.accepted -= 1
            dest = _dest_key(prefix)
            paths = self.loc[dest]
            paths.remove(old)
            self._decide(dest, paths)
        return True

    def _decide(self, dest: Prefix, paths: list[Path]) -> None:
        old = self.best.get(dest)
        if len(paths) == 1:
            new: Path | None = paths[0]
        elif not paths:
            new = None
            del self.loc[dest]
        else:
            new = select_best(paths, self.local.local_as)
            if new is not paths[0]:
                paths.remove(new)
                paths.insert(0, new)
        if new is old:
            return
        if new is None:
            del self.best[dest]
        else:
            self.best[dest] = new
        for listener in self.best_listeners:
            listener(dest, new)
        for peer in self.peers.values():
            if peer.target is None:
                continue
            attrs = self._export(peer, new) if new is not None else None
            if attrs is None and dest not in peer.adj_out.sent and dest not in peer.adj_out.pending:
                continue
            peer.adj_out.stage(dest, attrs)
            if len(peer.adj_out.pending) == 1:
                self._notify_pending(peer.key)

    def _export(self, peer: PeerRib, path: Path) -> PathAttributes | None:
        target = peer.target
        assert target is not None
        if not target.export_filter.allows(path.prefix):
            return None
        v6 = path.prefix.afi == AFI_IPV6
        attrs, source = path.attrs, path.source
        ckey = (id(attrs), id(source), v6)
        hit = peer.export_cache.get(ckey)
        if hit is not None and hit[0] is attrs and hit[1] is source:
            return hit[2]  # type: ignore[return-value]
        result = export_attrs(source, attrs, v6, target, self.local)
        if len(peer.export_cache) >= _EXPORT_CACHE_LIMIT:
            peer.export_cache.clear()
        peer.export_cache[ckey] = (attrs, source, result)
        return result

    def _notify_pending(self, key: str) -> None:
        for listener in self.pending_listeners:
            listener(key)
