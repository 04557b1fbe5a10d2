"""tabbyctl: manage Tabby resources, IPAM and node status (calicoctl's role).

Every failure exits non-zero with one line on stderr that says what went wrong;
nothing here waits on etcd longer than ``--timeout``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ctl import bgp_commands, ipam_commands, resource_commands

DEFAULT_TIMEOUT_S = 5.0


class CommandError(Exception):
    """A failure to report on one line, exit status 1."""


def _add_file_command(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text)
    p.add_argument("-f", "--filename", required=True, help="YAML or JSON file, '-' for stdin")
    p.set_defaults(func=getattr(resource_commands, f"cmd_{name}"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tabbyctl", description=__doc__)
    parser.add_argument(
        "--etcd-endpoints",
        help="comma-separated etcd URLs (else $TABBY_ETCD_ENDPOINTS, the config file, "
        "http://127.0.0.1:2379)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds to wait for the datastore (default %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_file_command(sub, "create", "create resources from a file; fail if any exists")
    _add_file_command(sub, "apply", "create or update resources from a file")
    _add_file_command(sub, "replace", "update existing resources from a file")

    p = sub.add_parser("delete", help="delete resources named in a file or on the line")
    p.add_argument("-f", "--filename")
    p.add_argument("kind", nargs="?")
    p.add_argument("name", nargs="?")
    p.add_argument("-n", "--namespace")
    p.add_argument("--skip-not-exists", action="store_true")
    p.set_defaults(func=resource_commands.cmd_delete)

    p = sub.add_parser("get", help="show resources as a table, YAML or JSON")
    p.add_argument("kind")
    p.add_argument("name", nargs="?")
    p.add_argument("-o", "--output", choices=["table", "wide", "yaml", "json"], default="table")
    p.add_argument("-n", "--namespace")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.set_defaults(func=resource_commands.cmd_get)

    ipam_commands.add_commands(sub)
    bgp_commands.add_commands(sub)

    p = sub.add_parser("version", help="print the client version")
    p.set_defaults(func=lambda args: print(f"tabbyctl {VERSION}") or 0)
    return parser


VERSION = "0.1.0"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # every failure becomes one line for the operator
        if not isinstance(exc, resource_commands.REPORTABLE):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
