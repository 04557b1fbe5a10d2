"""tabbyctl ipam show / check / release: what IPAM holds, and what leaked."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ctl.table import render_rows
from datastore.config import resolve_endpoints
from datastore.etcd import EtcdStore


def _kv(args: argparse.Namespace) -> EtcdStore:
    return EtcdStore(resolve_endpoints(args.etcd_endpoints), timeout=args.timeout)


def _percent(part: int, whole: int) -> str:
    return f"{part} ({100 * part / whole:.0f}%)" if whole else str(part)


def cmd_show(args: argparse.Namespace) -> int:
    from ipam import report

    result = report.show(_kv(args), show_blocks=args.show_blocks)
    if args.output == "json":
        print(json.dumps(dataclasses.asdict(result), indent=2))
        return 0
    rows: list[list[object]] = []
    for pool in result.pools:
        rows.append(
            [
                "IP Pool" + (" (disabled)" if pool.disabled else ""),
                pool.cidr,
                pool.size,
                _percent(pool.in_use, pool.size),
                _percent(pool.size - pool.in_use, pool.size),
            ]
        )
        for blk in (b for b in result.blocks if b.pool == pool.name):
            rows.append(
                [
                    "Block",
                    blk.cidr,
                    blk.size,
                    _percent(blk.in_use, blk.size),
                    _percent(blk.size - blk.in_use, blk.size),
                    blk.affinity or "(none)",
                ]
            )
    headers = ["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"]
    if args.show_blocks:
        headers.append("AFFINITY")
        rows = [r + [""] * (len(headers) - len(r)) for r in rows]
    sys.stdout.write(render_rows(headers, rows))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 1 when anything leaked or is inconsistent, so scripts can alert on it."""
    from ipam import report

    rep = report.check(_kv(args))
    if args.output == "json":
        print(json.dumps(dataclasses.asdict(rep) | {"ok": rep.ok}, indent=2))
        return 0 if rep.ok else 1
    print(
        f"Checked {rep.blocks_checked} blocks, {rep.allocations_checked} allocations, "
        f"{rep.handles_checked} handles."
    )
    print(f"Found {len(rep.leaked_allocations)} leaked allocations (no workload endpoint).")
    for leak in rep.leaked_allocations:
        print(f"  {leak.ip}  handle={leak.handle}  block={leak.block}")
    print(f"Found {len(rep.leaked_handles)} leaked handles.")
    for handle in rep.leaked_handles:
        print(f"  {handle}")
    print(f"Found {len(rep.orphan_blocks)} blocks affine to nodes that no longer exist.")
    for blk in rep.orphan_blocks:
        print(f"  {blk.cidr}  node={blk.node}  in_use={blk.in_use}")
    print(f"Found {len(rep.orphan_affinities)} orphaned affinities.")
    for aff in rep.orphan_affinities:
        print(f"  {aff.cidr}  node={aff.node}  state={aff.state}  ({aff.reason})")
    print(f"Found {len(rep.count_mismatches)} handle/block count mismatches.")
    for mis in rep.count_mismatches:
        print(
            f"  {mis.handle} in {mis.block}: handle says {mis.handle_count}, "
            f"block says {mis.block_count}"
        )
    print("IPAM is consistent." if rep.ok else "IPAM has problems (see above).")
    return 0 if rep.ok else 1


def cmd_release(args: argparse.Namespace) -> int:
    from ipam import report

    result = report.release_ip(_kv(args), args.ip)
    if not result.released:
        print(f"error: {result.ip} is not allocated", file=sys.stderr)
        return 1
    print(f"Released {result.ip} (was held by {result.handle or 'no handle'})")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    ipam = sub.add_parser("ipam", help="IP address management: usage, leaks, release")
    ipam_sub = ipam.add_subparsers(dest="ipam_command", required=True, metavar="SUBCOMMAND")
    show = ipam_sub.add_parser("show", help="pool (and block) usage")
    show.add_argument("--show-blocks", action="store_true")
    show.add_argument("-o", "--output", choices=["table", "json"], default="table")
    show.set_defaults(func=cmd_show)
    check = ipam_sub.add_parser("check", help="find leaked addresses and orphaned blocks")
    check.add_argument("-o", "--output", choices=["text", "json"], default="text")
    check.set_defaults(func=cmd_check)
    release = ipam_sub.add_parser("release", help="free one address")
    release.add_argument("--ip", required=True)
    release.set_defaults(func=cmd_release)
