"""``tabby-felix``: the per-node agent. Syncer -> calc graph -> dataplane + gRPC.

    tabby-felix --node-name node-a --etcd-endpoints http://10.0.0.1:2379

Node name: ``--node-name``, else ``$NODENAME``, else the hostname. Endpoints:
``datastore.config.resolve_endpoints`` (flag, environment, config file, default).
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
from felix.calc.bgp import parse_duration
from felix.daemon.core import FelixCore, Manager, ManagerFactory
from felix.daemon.grpc_api import serve
from felix.daemon.health import serve_health

log = logging.getLogger("felix")

DEFAULT_SOCKET = "/var/run/tabby/felix.sock"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ
    p = argparse.ArgumentParser(prog="tabby-felix", description=__doc__.split("\n")[0])
    p.add_argument("--node-name", default=env.get("NODENAME") or socket.gethostname())
    p.add_argument("--etcd-endpoints", default=None, help="comma-separated etcd client URLs")
    p.add_argument("--socket", default=env.get("TABBY_FELIX_SOCKET", DEFAULT_SOCKET))
    p.add_argument("--health-host", default=env.get("TABBY_FELIX_HEALTH_HOST", "127.0.0.1"))
    p.add_argument(
        "--health-port", type=int, default=int(env.get("TABBY_FELIX_HEALTH_PORT", "9099"))
    )
    p.add_argument(
        "--no-dataplane",
        action="store_true",
        help="compute and serve the stream only; program nothing in the kernel",
    )
    p.add_argument("--log-level", default=env.get("TABBY_LOG_LEVEL", "INFO"))
    return p.parse_args(argv)


def check_endpoint(url: str) -> None:
    """Fail at start-up on an endpoint no retry can fix (the syncer retries forever)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in url:
        raise ValueError(f"etcd endpoint {url!r} is not an http(s)://host:port URL")
    parts.port  # noqa: B018 (raises ValueError on a bad port)


def dataplane_settings(node: str, config: Mapping[str, str]) -> dict[str, Any]:
    """``felix.dataplane.DataplaneConfig`` fields from the effective FelixConfiguration
    (the ConfigUpdate map, keyed by FelixConfigurationSpec field names)."""
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
        out["resync_interval"] = float(parse_duration(config["route_refresh_interval"])) or 90.0
    return out


def load_managers(node: str) -> ManagerFactory | list[Manager]:
    """``felix.dataplane.build_managers``, built once the configuration is known."""
    try:
        from felix import dataplane
    except ImportError as exc:
        log.warning("no dataplane (%s); serving the calc-graph stream only", exc)
        return []

    def factory(config: dict[str, str]) -> list[Manager]:
        settings = dataplane_settings(node, config)
        log.info("dataplane config %s", " ".join(f"{k}={v}" for k, v in settings.items()))
        return list(dataplane.build_managers(dataplane.DataplaneConfig(**settings)))

    return factory


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
        log.error("cannot resolve etcd endpoints: %s", exc)
        return 2
    managers = [] if args.no_dataplane else load_managers(args.node_name)
    log.info("starting node=%s endpoints=%s socket=%s dataplane=%s",
             args.node_name, ",".join(endpoints), args.socket, not args.no_dataplane)  # fmt: skip

    core = FelixCore(args.node_name, managers)
    core.start()
    grpc_server = serve(core, args.socket)
    health = serve_health(core, args.health_host, args.health_port)
    store = EtcdStore(endpoints)
    syncer = Syncer(store, [keys.RESOURCES, keys.IPAM_BLOCKS], core)
    syncer.start()

    stop = threading.Event()
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
