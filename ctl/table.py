"""Human-readable tables for ``tabbyctl get`` (default and ``-o wide``), like calicoctl's."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from model.resources import (
    BGPConfiguration,
    BGPPeer,
    FelixConfiguration,
    IPAMConfiguration,
    IPPool,
    Node,
    Resource,
    WorkloadEndpoint,
)

Column = tuple[str, Callable[[Resource], object]]


def _bool(value: object) -> str:
    return "true" if value else "false"


def _node_bgp(attr: str) -> Callable[[Resource], object]:
    def get(res: Resource) -> object:
        bgp = res.spec.bgp  # type: ignore[attr-defined]
        return getattr(bgp, attr) if bgp is not None else ""

    return get


# kind -> (default columns, extra columns shown with -o wide)
COLUMNS: dict[type[Resource], tuple[list[Column], list[Column]]] = {
    IPPool: (
        [
            ("NAME", lambda r: r.name),
            ("CIDR", lambda r: r.spec.cidr),
            ("SELECTOR", lambda r: r.spec.node_selector),
        ],
        [
            ("BLOCKSIZE", lambda r: r.spec.block_size),
            ("NAT", lambda r: _bool(r.spec.nat_outgoing)),
            ("IPIPMODE", lambda r: r.spec.ipip_mode),
            ("VXLANMODE", lambda r: r.spec.vxlan_mode),
            ("DISABLED", lambda r: _bool(r.spec.disabled)),
            ("DISABLEBGPEXPORT", lambda r: _bool(r.spec.disable_bgp_export)),
        ],
    ),
    Node: (
        [("NAME", lambda r: r.name)],
        [
            ("ASN", _node_bgp("as_number")),
            ("IPV4", _node_bgp("ipv4_address")),
            ("IPV6", _node_bgp("ipv6_address")),
            ("RRCLUSTERID", _node_bgp("route_reflector_cluster_id")),
        ],
    ),
    BGPPeer: (
        [
            ("NAME", lambda r: r.name),
            ("PEERIP", lambda r: r.spec.peer_ip or f"({r.spec.peer_selector})"),
            ("NODE", lambda r: r.spec.node or r.spec.node_selector or "(global)"),
            ("ASN", lambda r: r.spec.as_number if r.spec.as_number is not None else ""),
        ],
        [("KEEPNEXTHOP", lambda r: _bool(r.spec.keep_original_next_hop))],
    ),
    BGPConfiguration: (
        [
            ("NAME", lambda r: r.name),
            ("LOGSEVERITY", lambda r: r.spec.log_severity_screen),
            (
                "MESHENABLED",
                lambda r: _bool(r.spec.node_to_node_mesh_enabled is not False),
            ),
            ("ASNUMBER", lambda r: r.spec.as_number if r.spec.as_number is not None else ""),
        ],
        [("LISTENPORT", lambda r: r.spec.listen_port or 179)],
    ),
    FelixConfiguration: (
        [("NAME", lambda r: r.name)],
        [("LOGSEVERITY", lambda r: r.spec.log_severity_screen)],
    ),
    IPAMConfiguration: (
        [("NAME", lambda r: r.name), ("STRICTAFFINITY", lambda r: _bool(r.spec.strict_affinity))],
        [("MAXBLOCKSPERHOST", lambda r: r.spec.max_blocks_per_host)],
    ),
    WorkloadEndpoint: (
        [
            ("NAMESPACE", lambda r: r.namespace or ""),
            ("WORKLOAD", lambda r: r.spec.workload or r.spec.pod),
            ("NODE", lambda r: r.spec.node),
            ("NETWORKS", lambda r: ",".join(r.spec.ip_networks)),
            ("INTERFACE", lambda r: r.spec.interface_name),
        ],
        [("NAME", lambda r: r.name), ("MAC", lambda r: r.spec.mac)],
    ),
}


def render_rows(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns separated by three spaces, like kubectl/calicoctl."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def render(kind: type[Resource], resources: Sequence[Resource], wide: bool) -> str:
    base, extra = COLUMNS[kind]
    columns = base + (extra if wide else [])
    rows = [[get(r) if get(r) is not None else "" for _, get in columns] for r in resources]
    return render_rows([h for h, _ in columns], rows)
