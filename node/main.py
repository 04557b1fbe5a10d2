"""tabby-node: what the DaemonSet runs on every node.

Registers the node (detected address, AS), creates the default pool on a fresh
cluster, then starts and supervises the node's services (Felix, the BGP daemon, the
CNI service) until it is told to stop.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import signal
import socket
import sys
import threading

VERSION = "0.1.0"

SERVICES = {
    "felix": "tabby-felix",
    "bgpd": "tabby-bgpd",
    "cni": "tabby-cni-service",
}


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="tabby-node", description=__doc__)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--nodename", default=env("NODENAME") or socket.gethostname())
    p.add_argument("--etcd-endpoints", default=None)
    p.add_argument(
        "--ip",
        default=env("IP", "autodetect"),
        help="IPv4 address with prefix length, 'autodetect' or 'none'",
    )
    p.add_argument(
        "--ip-autodetection-method", default=env("IP_AUTODETECTION_METHOD", "first-found")
    )
    p.add_argument("--as-number", type=int, default=int(env("AS", "0")) or None)
    p.add_argument("--default-ipv4-pool", default=env("TABBY_IPV4POOL_CIDR", ""))
    p.add_argument("--default-ipv4-pool-vxlan", default=env("TABBY_IPV4POOL_VXLAN", "Never"))
    p.add_argument(
        "--services",
        default=env("TABBY_SERVICES", "felix,bgpd,cni"),
        help="comma-separated: " + ", ".join(SERVICES),
    )
    p.add_argument(
        "--bin-dir",
        default=str(pathlib.Path(sys.argv[0]).resolve().parent),
        help="where the service executables are (default: beside tabby-node)",
    )
    p.add_argument("--register-only", action="store_true", help="register and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.version:
        print(f"tabby-node {VERSION}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log = logging.getLogger("tabby.node")

    from datastore.api import DatastoreError
    from datastore.config import resolve_endpoints
    from datastore.etcd import EtcdStore
    from datastore.resources import ResourceStore
    from node.autodetect import AutodetectError, autodetect
    from node.registration import ensure_default_pool, register_node
    from node.supervisor import Service, Supervisor

    try:
        ipv4 = ""
        if args.ip == "autodetect":
            ipv4 = str(autodetect(args.ip_autodetection_method))
        elif args.ip != "none":
            ipv4 = args.ip
        endpoints = resolve_endpoints(args.etcd_endpoints)
        store = ResourceStore(EtcdStore(endpoints))
        register_node(store, args.nodename, ipv4=ipv4, as_number=args.as_number)
        ensure_default_pool(store, args.default_ipv4_pool, args.default_ipv4_pool_vxlan)
    except (AutodetectError, DatastoreError, ValueError) as exc:
        log.error("startup failed: %s", exc)
        return 1
    if args.register_only:
        return 0

    env = dict(os.environ, NODENAME=args.nodename, TABBY_ETCD_ENDPOINTS=",".join(endpoints))
    services = []
    for name in filter(None, (s.strip() for s in args.services.split(","))):
        if name not in SERVICES:
            log.error("unknown service %r (known: %s)", name, ", ".join(SERVICES))
            return 1
        services.append(Service(name, [os.path.join(args.bin_dir, SERVICES[name])], env=env))
    supervisor = Supervisor(services)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    supervisor.start()
    log.info("node services started node=%s services=%s", args.nodename, args.services)
    stop.wait()
    log.info("stopping node services")
    supervisor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
