"""``tabby-felix``: the per-node agent. Syncer -> calc graph -> dataplane + gRPC.

    tabby-felix --node-name node-a --etcd-endpoints http://10.0.0.1:2379

Node name: ``--node-name``, else ``$NODENAME``, else the hostname. Endpoints:
``datastore.config.resolve_endpoints`` (flag, environment, config file, default).
``--dataplane-netns`` programs another network namespace while etcd, the socket and
the health port stay in felix's own (how the tests run a "node" in a namespace).
The dataplane is built from the configuration at InSync; when a FelixConfiguration
change alters it later, felix exits 0 so its supervisor restarts it (as Calico does).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from datastore import keys
from datastore.config import resolve_endpoints
from felix.daemon.core import FelixCore, ManagerFactory
from felix.daemon.grpc_api import serve
from felix.daemon.health import serve_health
from felix.manager import Manager
from model.durations import parse_duration

log = logging.getLogger("felix")

DEFAULT_SOCKET = "/var/run/tabby/felix.sock"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ
    p = argparse.ArgumentParser(prog="tabby-felix", description=__doc__.split("\n")[0])
    p.add_argument("--node-name", default=env.get("NODENAME") or socket.gethostname())
    p.add_argument("--etcd-endpoints", default=None, help="comma-separated etcd client URLs")
    p.add_argument(
        "--socket",
        default=env.get("TABBY_FELIX_SOCKET", DEFAULT_SOCKET),
        help="unix socket for the gRPC services (CalcGraph, LearnedRoutes, EndpointStatus)",
    )
    p.add_argument("--health-host", default=env.get("TABBY_FELIX_HEALTH_HOST", "127.0.0.1"))
    p.add_argument(
        "--health-port",
        type=int,
        default=int(env.get("TABBY_FELIX_HEALTH_PORT", "9099")),
        help="/liveness, /readiness, /metrics; 0 picks a free port (logged at start-up)",
    )
    p.add_argument(
        "--no-dataplane",
        action="store_true",
        help="compute and serve the stream only; program nothing in the kernel",
    )
    p.add_argument(
        "--dataplane-netns",
        default=env.get("TABBY_FELIX_DATAPLANE_NETNS") or None,
        help="program this network namespace (`ip netns` name or /proc/PID/ns/net path) "
        "instead of felix's own; etcd, the socket and health stay in felix's namespace",
    )
    p.add_argument(
        "--mtu-file",
        default=env.get("TABBY_FELIX_MTU_FILE", "/var/lib/tabby/mtu"),
        help="where the pod MTU is published for the CNI plugin",
    )
    p.add_argument(
        "--sysctl-root",
        default=env.get("TABBY_FELIX_SYSCTL_ROOT", "/proc/sys"),
        help="root of the sysctl tree (read inside the dataplane namespace)",
    )
    p.add_argument(
        "--learned-routes-grace",
        type=float,
        default=float(env.get("TABBY_FELIX_LEARNED_ROUTES_GRACE", "90")),
        help="seconds to keep unclaimed routes of ours after start-up unless the BGP "
        "daemon's end-of-RIB comes first (0 when no BGP daemon runs)",
    )
    p.add_argument(
        "--housekeeping-interval",
        type=float,
        default=float(env.get("TABBY_FELIX_HOUSEKEEPING_INTERVAL", "1.0")),
        help="seconds between dataplane applies when nothing new arrives (picks up new "
        "interfaces and runs the periodic route resync)",
    )
    p.add_argument("--log-level", default=env.get("TABBY_LOG_LEVEL", "INFO"))
    return p.parse_args(argv)


def check_endpoint(url: str) -> None:
    """Fail at start-up on an endpoint no retry can fix (the syncer retries forever)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in url:
        raise ValueError(f"etcd endpoint {url!r} is not an http(s)://host:port URL")
    parts.port  # noqa: B018 (raises ValueError on a bad port)


def dataplane_settings(
    node: str, config: Mapping[str, str], local: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``felix.dataplane.DataplaneConfig`` fields from the effective FelixConfiguration
    (the ConfigUpdate map, keyed by FelixConfigurationSpec field names), plus ``local``:
    what only this process knows (netns, file paths, from flags), which wins."""
    out: dict[str, Any] = {"hostname": node}
    ints = {"device_route_protocol": "route_protocol", "vxlan_vni": "vxlan_vni",
            "vxlan_port": "vxlan_port", "vxlan_mtu": "vxlan_mtu"}  # fmt: skip
    for src, dst in ints.items():
        if src in config:
            out[dst] = int(config[src])
    for name in ("vxlan_enabled", "ipip_enabled"):
        if name in config:
            out[name] = config[name] == "true"
    if "interface_prefix" in config:
        out["interface_prefix"] = config["interface_prefix"]
    if config.get("route_refresh_interval"):
        out["resync_interval"] = parse_duration(config["route_refresh_interval"]) or 90.0
    out.update(local or {})
    return out


def local_settings(args: argparse.Namespace) -> dict[str, Any]:
    """DataplaneConfig fields that come from this process's flags, not the datastore."""
    return {
        "netns": args.dataplane_netns,
        "mtu_file": args.mtu_file,
        "sysctl_root": args.sysctl_root,
        "learned_routes_grace": args.learned_routes_grace,
    }


def load_managers(node: str, local: Mapping[str, Any] | None = None) -> ManagerFactory:
    """``felix.dataplane.build_managers``, built once the configuration is known.

    Imported here so ``--no-dataplane`` starts without pyroute2. An ImportError is the
    caller's to report: a felix that cannot program must not run and report ready.
    """
    from felix import dataplane

    def factory(config: dict[str, str]) -> list[Manager]:
        settings = dataplane_settings(node, config, local)
        log.info("dataplane config %s", " ".join(f"{k}={v}" for k, v in settings.items()))
        return list(dataplane.build_managers(dataplane.DataplaneConfig(**settings)))

    return factory


def check_netns(netns: str | None) -> None:
    """Fail at start-up on a dataplane namespace that does not exist (no retry fixes it)."""
    if netns is None:
        return
    path = netns if "/" in netns else f"/run/netns/{netns}"
    if not os.path.exists(path):
        raise ValueError(f"--dataplane-netns {netns!r}: {path} does not exist")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    from datastore.etcd import EtcdStore
    from datastore.syncer import Syncer

    try:
        endpoints = resolve_endpoints(args.etcd_endpoints)
        for ep in endpoints:
            check_endpoint(ep)
    except Exception as exc:
        log.error("etcd endpoints unusable error=%s", exc)
        return 2
    try:
        check_netns(args.dataplane_netns)
    except ValueError as exc:
        log.error("dataplane namespace unusable error=%s", exc)
        return 2
    managers: ManagerFactory | list[Manager] = []
    if not args.no_dataplane:
        try:
            managers = load_managers(args.node_name, local_settings(args))
        except ImportError as exc:
            log.error("dataplane cannot be loaded (--no-dataplane: stream only) error=%s", exc)
            return 2
    log.info("starting node=%s endpoints=%s socket=%s dataplane=%s netns=%s",
             args.node_name, ",".join(endpoints), args.socket, not args.no_dataplane,
             args.dataplane_netns or "-")  # fmt: skip

    stop = threading.Event()

    def config_changed(built: dict[str, str], new: dict[str, str]) -> None:
        """Managers are built once: a change they depend on needs a new process (as
        Calico's Felix does, the DaemonSet restarts it); other fields are ignored."""
        local = local_settings(args)
        old_s = dataplane_settings(args.node_name, built, local)
        new_s = dataplane_settings(args.node_name, new, local)
        fields = sorted(k for k in new_s if new_s[k] != old_s.get(k))
        if fields:
            log.warning("felix configuration changed; exiting to restart with it fields=%s",
                        ",".join(fields))  # fmt: skip
            stop.set()

    core = FelixCore(
        args.node_name,
        managers,
        housekeeping=args.housekeeping_interval,
        config_changed=None if args.no_dataplane else config_changed,
    )
    core.start()
    grpc_server = serve(core, args.socket)
    health = serve_health(core, args.health_host, args.health_port)
    store = EtcdStore(endpoints)
    syncer = Syncer(store, [keys.RESOURCES, keys.IPAM_BLOCKS], core)
    syncer.start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("stopping node=%s", args.node_name)
    syncer.stop()
    grpc_server.stop(grace=1).wait()
    health.shutdown()
    core.stop()
    store.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.socket)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
