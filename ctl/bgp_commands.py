"""tabbyctl node status / bgp peers / bgp rib: ask the local BGP daemon's admin API.

The daemon serves ``proto/bgp_admin.proto`` on a unix socket; grpc is imported only
here, so the resource commands stay fast to start.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time

from ctl.table import render_rows

DEFAULT_BGP_SOCKET = "/var/run/tabby/bgpd.sock"


class BgpdUnavailable(OSError):
    pass


def _stub(socket_path: str, timeout: float):
    import grpc

    from proto import bgp_admin_pb2_grpc

    channel = grpc.insecure_channel(f"unix://{socket_path}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        channel.close()
        raise BgpdUnavailable(
            f"BGP daemon not reachable at {socket_path} (is tabby-bgpd running on this node?)"
        ) from None
    return bgp_admin_pb2_grpc.BgpAdminStub(channel), channel


def _since(established_unix: int, now: float) -> str:
    """calicoctl shows the time of day for today's changes, else the date."""
    if not established_unix:
        return ""
    moment = datetime.datetime.fromtimestamp(established_unix)
    today = datetime.datetime.fromtimestamp(now).date()
    return moment.strftime("%H:%M:%S") if moment.date() == today else moment.strftime("%Y-%m-%d")


def peer_rows(peers, now: float) -> list[list[object]]:
    rows = []
    for p in sorted(peers, key=lambda p: p.address):
        info = p.state if p.state == "Established" else (p.last_error or p.state)
        rows.append(
            [
                p.address,
                p.type or "static",
                p.as_number,
                "up" if p.state == "Established" else "start",
                _since(p.established_since_unix, now),
                info,
                p.prefixes_received,
                p.prefixes_accepted,
                p.prefixes_advertised,
            ]
        )
    return rows


PEER_HEADERS = [
    "PEER ADDRESS",
    "PEER TYPE",
    "AS",
    "STATE",
    "SINCE",
    "INFO",
    "RECEIVED",
    "ACCEPTED",
    "ADVERTISED",
]


def cmd_peers(args: argparse.Namespace) -> int:
    from proto import bgp_admin_pb2

    stub, channel = _stub(args.bgp_socket, args.timeout)
    with channel:
        reply = stub.ListPeers(bgp_admin_pb2.ListPeersRequest(), timeout=args.timeout)
    if args.output == "json":
        from google.protobuf.json_format import MessageToDict

        print(json.dumps(MessageToDict(reply).get("peers", []), indent=2))
        return 0
    sys.stdout.write(render_rows(PEER_HEADERS, peer_rows(reply.peers, time.time())))
    return 0


def cmd_node_status(args: argparse.Namespace) -> int:
    """Like ``calicoctl node status``: is the daemon running, and its BGP sessions."""
    from proto import bgp_admin_pb2

    try:
        stub, channel = _stub(args.bgp_socket, args.timeout)
    except BgpdUnavailable as exc:
        print("Tabby process is not running.")
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with channel:
        reply = stub.ListPeers(bgp_admin_pb2.ListPeersRequest(), timeout=args.timeout)
    print("Tabby process is running.\n")
    for family, version in (("IPv4", 4), ("IPv6", 6)):
        peers = [p for p in reply.peers if (":" in p.address) == (version == 6)]
        print(f"{family} BGP status")
        if not peers:
            print(f"No {family} peers found.\n")
            continue
        rows = [r[:6] for r in peer_rows(peers, time.time())]
        sys.stdout.write(render_rows(PEER_HEADERS[:6], rows))
        print()
    return 0


def cmd_rib(args: argparse.Namespace) -> int:
    from proto import bgp_admin_pb2

    stub, channel = _stub(args.bgp_socket, args.timeout)
    with channel:
        reply = stub.ListRib(
            bgp_admin_pb2.ListRibRequest(peer=args.peer or "", afi=args.afi or ""),
            timeout=args.timeout,
        )
    if args.output == "json":
        from google.protobuf.json_format import MessageToDict

        entries = [
            MessageToDict(e, always_print_fields_with_no_presence=True) for e in reply.entries
        ]
        print(json.dumps(entries, indent=2))
        return 0
    rows = [
        [
            ("*" if e.best else " ") + " " + e.prefix,
            e.next_hop,
            " ".join(str(a) for a in e.as_path) or "(local)",
            e.origin,
            e.local_pref,
            e.med,
            ",".join(e.communities),
            e.from_peer or "local",
        ]
        for e in reply.entries
    ]
    headers = ["PREFIX", "NEXT HOP", "AS PATH", "ORIGIN", "LOCPRF", "MED", "COMMUNITIES", "FROM"]
    sys.stdout.write(render_rows(headers, rows))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    def socket_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--bgp-socket", default=DEFAULT_BGP_SOCKET, help="tabby-bgpd admin socket")

    node = sub.add_parser("node", help="this node's status")
    node_sub = node.add_subparsers(dest="node_command", required=True, metavar="SUBCOMMAND")
    status = node_sub.add_parser("status", help="BGP sessions of this node, like calicoctl")
    socket_arg(status)
    status.set_defaults(func=cmd_node_status)

    bgp = sub.add_parser("bgp", help="the BGP daemon's peers and routes")
    bgp_sub = bgp.add_subparsers(dest="bgp_command", required=True, metavar="SUBCOMMAND")
    peers = bgp_sub.add_parser("peers", help="BGP peers with state and prefix counts")
    socket_arg(peers)
    peers.add_argument("-o", "--output", choices=["table", "json"], default="table")
    peers.set_defaults(func=cmd_peers)
    rib = bgp_sub.add_parser("rib", help="routes: Loc-RIB, or one peer's Adj-RIB-In")
    socket_arg(rib)
    rib.add_argument("--peer")
    rib.add_argument("--afi", choices=["ipv4", "ipv6"])
    rib.add_argument("-o", "--output", choices=["table", "json"], default="table")
    rib.set_defaults(func=cmd_rib)
