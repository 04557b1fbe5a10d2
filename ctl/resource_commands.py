"""create / apply / replace / delete / get: resources from files to etcd and back."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable

import yaml

from ctl.kinds import UnknownKind, resolve_kind
from ctl.table import render
from datastore.api import DatastoreError, NotFound, Unavailable
from datastore.config import resolve_endpoints
from datastore.etcd import EtcdStore
from datastore.keys import IPAM_AFFINITIES
from datastore.resources import ResourceStore
from ipam.client import IPAMClient
from ipam.errors import IPAMError
from ipam.report import TUNNEL_HANDLE_PREFIXES
from model.codec import dump_documents, load_documents, parse_resource
from model.errors import ValidationError
from model.resources import Node, Resource

# Exceptions whose message is meant for the operator as it is (OSError covers a BGP
# daemon that is not running: ctl.bgp_commands.BgpdUnavailable).
REPORTABLE: tuple[type[Exception], ...] = (
    DatastoreError,
    ValidationError,
    UnknownKind,
    IPAMError,
    OSError,
    yaml.YAMLError,
    ValueError,
)


def open_store(args: argparse.Namespace) -> ResourceStore:
    endpoints = resolve_endpoints(args.etcd_endpoints)
    return ResourceStore(EtcdStore(endpoints, timeout=args.timeout))


def read_resources(path: str) -> list[Resource]:
    """Every document of the file, parsed; the first bad one fails the whole command."""
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
    docs = load_documents(text)
    if not docs:
        raise ValueError(f"{path}: no resources found")
    return [parse_resource(doc) for doc in docs]


def _write_each(
    args: argparse.Namespace, verb: str, write: Callable[[ResourceStore, Resource], object]
) -> int:
    resources = read_resources(args.filename)
    store = open_store(args)
    done: Counter[str] = Counter()
    failed = 0
    for res in resources:
        try:
            write(store, res)
            done[res.KIND] += 1
        except Unavailable:
            raise  # nothing else will work either
        except (DatastoreError, ValidationError) as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)  # names the resource already
    for kind, count in sorted(done.items()):
        print(f"Successfully {verb} {count} '{kind}' resource(s)")
    return 1 if failed else 0


def cmd_create(args: argparse.Namespace) -> int:
    return _write_each(args, "created", ResourceStore.create)


def cmd_apply(args: argparse.Namespace) -> int:
    return _write_each(args, "applied", ResourceStore.apply)


def cmd_replace(args: argparse.Namespace) -> int:
    return _write_each(args, "replaced", ResourceStore.replace)


def cmd_delete(args: argparse.Namespace) -> int:
    if args.filename:
        targets = [(type(r), r.name, r.namespace) for r in read_resources(args.filename)]
    elif args.kind and args.name:
        targets = [(resolve_kind(args.kind), args.name, args.namespace)]
    else:
        raise ValueError("delete needs -f FILE or KIND NAME")
    store = open_store(args)
    failed = 0
    deleted: Counter[str] = Counter()
    for kind, name, namespace in targets:
        try:
            store.delete(kind, name, namespace)
            deleted[kind.KIND] += 1
            if kind is Node:
                release_node_ipam(store.kv, name)
        except NotFound as exc:
            if not args.skip_not_exists:
                failed += 1
                print(f"error: {exc}", file=sys.stderr)
    for kind_name, count in sorted(deleted.items()):
        print(f"Successfully deleted {count} '{kind_name}' resource(s)")
    return 1 if failed else 0


def release_node_ipam(kv: EtcdStore, node: str) -> None:
    """What ``calicoctl delete node`` also does: give back the node's tunnel addresses
    and its empty blocks, so a gone node leaks nothing. Blocks that still hold pod
    addresses stay (``tabbyctl ipam check`` lists them) until those pods are gone."""
    client = IPAMClient(kv)
    for prefix in TUNNEL_HANDLE_PREFIXES:
        for ip in client.release_by_handle(f"{prefix}{node}"):
            print(f"Released tunnel address {ip} of node {node}")
    freed = client.release_node_affinities(node)
    if freed:
        print(f"Released {len(freed)} IPAM block(s) of node {node}: {', '.join(freed)}")
    kept, _ = kv.list(f"{IPAM_AFFINITIES}{node}/")
    if kept:
        print(
            f"warning: {len(kept)} IPAM block(s) of node {node} still hold pod addresses; "
            "see tabbyctl ipam check",
            file=sys.stderr,
        )


def cmd_get(args: argparse.Namespace) -> int:
    kind = resolve_kind(args.kind)
    store = open_store(args)
    namespace = None if args.all_namespaces else args.namespace
    if args.name:
        resources = [store.get(kind, args.name, namespace)]
    else:
        resources = store.list(kind, namespace)
    if args.output in ("yaml", "json"):
        sys.stdout.write(dump_documents(resources, args.output))
        if args.output == "json":
            sys.stdout.write("\n")
    else:
        sys.stdout.write(render(kind, resources, wide=args.output == "wide"))
    return 0
