"""The BGP decision process (RFC 4271 9.1.2.2, RFC 4456 9) for one destination.

Implemented as successive elimination over the candidate set, exactly as the RFC
describes it, because the MED step compares only paths from the same neighbouring AS
and so is not a total order a sort key could express.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bgp.rib.path import Path

DEFAULT_LOCAL_PREF = 100


def neighbor_as(path: Path, local_as: int) -> int:
    """The AS the path was received from (first AS of the AS_PATH; ours if empty)."""
    first = path.attrs.first_as()
    return local_as if first is None else first


def _router_id(path: Path) -> int:
    # RFC 4456 9: ORIGINATOR_ID substitutes for the BGP identifier when present.
    oid = path.attrs.originator_id
    return int(oid if oid is not None else path.source.router_id)


def _peer_address_key(path: Path) -> tuple[int, int]:
    addr = path.source.address
    if addr is None:
        return (0, 0)
    return (addr.version, int(addr))


def _keep_min(paths: list[Path], key: Callable[[Path], int | tuple[int, int]]) -> list[Path]:
    """The paths that tie for the lowest ``key``: one elimination step."""
    best = min(key(p) for p in paths)
    return [p for p in paths if key(p) == best]


def select_best(candidates: Sequence[Path], local_as: int) -> Path | None:
    """The best path among ``candidates`` (already filtered for feasibility), or None."""
    paths = [p for p in candidates if p.accepted]
    if len(paths) <= 1:
        return paths[0] if paths else None
    # a) highest LOCAL_PREF (eBGP paths carry the local default set at import).
    paths = _keep_min(
        paths,
        lambda p: -(p.attrs.local_pref if p.attrs.local_pref is not None else DEFAULT_LOCAL_PREF),
    )
    # Locally originated routes win over learned ones (as BIRD, GoBGP and FRR do).
    if len(paths) > 1 and any(p.source.local for p in paths):
        paths = [p for p in paths if p.source.local]
    # b) shortest AS_PATH.
    if len(paths) > 1:
        paths = _keep_min(paths, lambda p: p.attrs.as_path_length())
    # c) lowest ORIGIN.
    if len(paths) > 1:
        paths = _keep_min(paths, lambda p: p.attrs.origin if p.attrs.origin is not None else 2)
    # d) lowest MED among paths from the same neighbouring AS (missing MED counts as 0).
    if len(paths) > 1:
        lowest: dict[int, int] = {}
        for p in paths:
            nas = neighbor_as(p, local_as)
            med = p.attrs.med or 0
            if nas not in lowest or med < lowest[nas]:
                lowest[nas] = med
        paths = [p for p in paths if (p.attrs.med or 0) == lowest[neighbor_as(p, local_as)]]
    # e) eBGP-learned over iBGP-learned.
    if len(paths) > 1 and any(not p.source.ibgp for p in paths):
        paths = [p for p in paths if not p.source.ibgp]
    # f) (IGP cost to the next hop: all next hops are treated as equally near.)
    # g) lowest BGP identifier / ORIGINATOR_ID.
    if len(paths) > 1:
        paths = _keep_min(paths, _router_id)
    # RFC 4456 9: shortest CLUSTER_LIST.
    if len(paths) > 1:
        paths = _keep_min(paths, lambda p: len(p.attrs.cluster_list))
    # h) lowest peer address.
    if len(paths) > 1:
        paths = _keep_min(paths, _peer_address_key)
    return paths[0]
