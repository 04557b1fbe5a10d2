"""tabby-node: what the DaemonSet runs on every node.

Registers the node (detected address, AS), creates the default pool on a fresh
cluster, gives the node its VXLAN tunnel address when a pool needs one, then starts
and supervises the node's services (Felix, the BGP daemon, the CNI service) until it
is told to stop. Every socket and state file lives under ``--run-dir``, so several
nodes can share one filesystem (namespaces on one machine).

``tabby-node --health-check --run-dir DIR`` is the exec probe: exit 0 when the node
and all its services run, 1 (with the reasons on stderr) otherwise.
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
import time

VERSION = "0.1.0"
DEFAULT_RUN_DIR = "/var/run/tabby"
DEFAULT_SERVICES = "felix,bgpd,cni"

SERVICES = {
    "felix": "tabby-felix",
    "bgpd": "tabby-bgpd",
    "cni": "tabby-cni-service",
}

STATUS_INTERVAL_S = 1.0


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="tabby-node", description=__doc__.split("\n\n")[0])
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
        default=env("TABBY_SERVICES"),
        help=f"comma-separated, of {', '.join(SERVICES)} (default {DEFAULT_SERVICES}: "
        "those whose executable exists)",
    )
    p.add_argument(
        "--bin-dir",
        default=str(pathlib.Path(sys.argv[0]).resolve().parent),
        help="where the service executables are (default: beside tabby-node)",
    )
    p.add_argument(
        "--run-dir",
        default=env("TABBY_RUN_DIR", DEFAULT_RUN_DIR),
        help="sockets and state of this node: felix.sock, cni.sock, status.json, and "
        "(when not the default) Felix's mtu file",
    )
    p.add_argument(
        "--health-port",
        type=int,
        default=int(env("TABBY_FELIX_HEALTH_PORT", "9099")),
        help="Felix's HTTP /liveness and /readiness port (on 127.0.0.1)",
    )
    p.add_argument(
        "--bgpd-config",
        default=None,
        help="run tabby-bgpd standalone from this file (default: cluster mode, configured "
        "by Felix's calculation-graph stream)",
    )
    for name in SERVICES:
        p.add_argument(
            f"--{name}-arg",
            action="append",
            default=[],
            metavar="ARG",
            help=f"extra argument for {SERVICES[name]} (repeatable)",
        )
    p.add_argument(
        "--tunnel-interval",
        type=float,
        default=30.0,
        help="seconds between VXLAN tunnel address reconciliations (0: only at start)",
    )
    p.add_argument("--register-only", action="store_true", help="register and exit")
    p.add_argument(
        "--health-check", action="store_true", help="probe a running tabby-node and exit"
    )
    return p


def service_argv(
    name: str,
    args: argparse.Namespace,
    run_dir: pathlib.Path,
    endpoints: list[str],
    services: list[str],
) -> list[str]:
    """The command line of one service: its paths under the run dir, then pass-through.

    ``services`` are all the services this node runs: without a BGP daemon, Felix has no
    learned routes to wait for after a restart, so it gets no grace period for them
    (else a deleted node's routes would linger for that long)."""
    exe = os.path.join(args.bin_dir, SERVICES[name])
    extra = list(getattr(args, f"{name}_arg"))
    if name == "felix":
        argv = [
            exe,
            f"--node-name={args.nodename}",
            f"--etcd-endpoints={','.join(endpoints)}",
            f"--socket={run_dir / 'felix.sock'}",
            f"--health-port={args.health_port}",
        ]
        if "bgpd" not in services:
            argv.append("--learned-routes-grace=0")
    elif name == "cni":
        argv = [exe, f"--socket={run_dir / 'cni.sock'}"]
    elif args.bgpd_config:  # standalone: its sockets (adminSocket) are in its config file
        argv = [exe, f"--config={args.bgpd_config}"]
    else:  # cluster mode: configuration from Felix's stream, routes back to Felix
        argv = [
            exe,
            f"--felix-socket={run_dir / 'felix.sock'}",
            f"--admin-socket={run_dir / 'bgpd.sock'}",
        ]
    return argv + extra


def choose_services(
    args: argparse.Namespace, run_dir: pathlib.Path, log: logging.Logger
) -> list[str]:
    """Requested services must be runnable (``ValueError`` says why); defaults that are
    not (no executable, bgpd without a config) are skipped with a log line."""
    explicit = args.services is not None
    names = [s.strip() for s in (args.services or DEFAULT_SERVICES).split(",") if s.strip()]
    chosen = []
    for name in names:
        if name not in SERVICES:
            raise ValueError(f"unknown service {name!r} (known: {', '.join(SERVICES)})")
        exe = os.path.join(args.bin_dir, SERVICES[name])
        problem = ""
        if not os.access(exe, os.X_OK):
            problem = f"no executable {exe}"
        elif name == "bgpd" and args.bgpd_config and not os.path.exists(args.bgpd_config):
            problem = f"no BGP config {args.bgpd_config}"
        elif name == "bgpd" and not args.bgpd_config and "felix" not in names:
            problem = "cluster mode takes its configuration from Felix: add felix"
        if problem and explicit:
            raise ValueError(f"service {name}: {problem}")
        if problem:
            log.info("service skipped name=%s reason=%r", name, problem)
            continue
        chosen.append(name)
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.version:
        print(f"tabby-node {VERSION}")
        return 0
    run_dir = pathlib.Path(args.run_dir)
    if args.health_check:
        from node.health import check

        problems = check(run_dir)
        for problem in problems:
            print(f"tabby-node unhealthy: {problem}", file=sys.stderr)
        return 1 if problems else 0

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log = logging.getLogger("tabby.node")

    from datastore.api import DatastoreError
    from datastore.config import ENV_ENDPOINTS, resolve_endpoints
    from datastore.etcd import EtcdStore
    from datastore.resources import ResourceStore
    from ipam.client import IPAMClient
    from ipam.errors import IPAMError
    from node.autodetect import AutodetectError, autodetect
    from node.health import snapshot, write_status
    from node.registration import ensure_default_pool, register_node
    from node.supervisor import Service, Supervisor
    from node.tunnel import reconcile_vxlan_tunnel

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
        log.error("startup failed node=%s error=%r", args.nodename, str(exc))
        return 1
    ipam = IPAMClient(store.kv)

    def reconcile_tunnel() -> bool:
        try:
            state = reconcile_vxlan_tunnel(store, ipam, args.nodename)
        except (IPAMError, DatastoreError) as exc:
            log.error("vxlan tunnel address failed node=%s error=%r", args.nodename, str(exc))
            return False
        log.info("vxlan tunnel node=%s addr=%s mac=%s",
                 args.nodename, state.address or "-", state.mac or "-")  # fmt: skip
        return True

    tunnel_ok = reconcile_tunnel()
    if args.register_only:
        store.kv.close()
        return 0 if tunnel_ok else 1

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        names = choose_services(args, run_dir, log)
    except (OSError, ValueError) as exc:
        log.error("startup failed node=%s error=%r", args.nodename, str(exc))
        return 1
    env = dict(
        os.environ,
        NODENAME=args.nodename,
        TABBY_RUN_DIR=str(run_dir),
        **{ENV_ENDPOINTS: ",".join(endpoints)},
    )
    if run_dir != pathlib.Path(DEFAULT_RUN_DIR):
        # A private run dir means a private node: its MTU file too. The default keeps
        # Felix's /var/lib/tabby/mtu, where the CNI plugin looks by default.
        env["TABBY_FELIX_MTU_FILE"] = str(run_dir / "mtu")
    services = [
        Service(n, service_argv(n, args, run_dir, endpoints, names), env=env) for n in names
    ]
    supervisor = Supervisor(services)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    supervisor.start()
    log.info("node services started node=%s services=%s run_dir=%s",
             args.nodename, ",".join(names) or "-", run_dir)  # fmt: skip
    next_tunnel = time.monotonic() + args.tunnel_interval
    while not stop.is_set():
        try:
            write_status(run_dir, snapshot(args.nodename, services))
        except OSError as exc:
            log.warning("status not written run_dir=%s error=%r", run_dir, str(exc))
        if args.tunnel_interval > 0 and time.monotonic() >= next_tunnel:
            reconcile_tunnel()
            next_tunnel = time.monotonic() + args.tunnel_interval
        stop.wait(STATUS_INTERVAL_S)
    log.info("stopping node services node=%s", args.nodename)
    supervisor.stop()
    (run_dir / "status.json").unlink(missing_ok=True)
    store.kv.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
