"""tabby-bgpd: the BGP speaker, until SIGTERM/SIGINT.

tabby-bgpd --config FILE                       standalone, configured by a file
tabby-bgpd --felix-socket PATH [--admin-socket PATH]
                                               cluster mode: configured by Felix's
                                               stream, selected routes pushed to Felix
tabby-bgpd --publish-from-datastore --etcd-endpoints URLS --config FILE
                                               route publisher: the file's speaker
                                               advertises every node's blocks
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from bgp.daemon.config import ConfigError, DaemonConfig, load_config

if TYPE_CHECKING:
    from bgp.daemon.speaker import Speaker

log = logging.getLogger("bgp.main")


def _reload(speaker: Speaker, path: str) -> None:
    """SIGHUP: re-read the file and apply the originated routes; other changes need a
    restart."""
    try:
        new = load_config(path)
    except (OSError, ConfigError) as e:
        log.error("reload failed error=%r", str(e))
        return
    speaker.set_originate(new.originate)
    log.info("reloaded originate=%d", len(new.originate))


def _hup_ignored(why: str) -> None:
    log.info("SIGHUP ignored reason=%r", why)


async def _until_signalled(
    on_hup: Callable[[], None] | None = None, hup_ignored: str = "nothing to reload"
) -> None:
    """Until SIGTERM or SIGINT; ``on_hup`` (if given) runs on each SIGHUP meanwhile.

    SIGHUP is always handled: its default action would end the process, and operators
    (or a config-management tool) send it out of habit."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_hup is None:
        on_hup = functools.partial(_hup_ignored, hup_ignored)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await stop.wait()
    log.info("stopping")


async def run_cluster(args: argparse.Namespace) -> int:
    """Cluster mode: Felix says what to do; no config file."""
    from bgp.daemon.cluster import Settings
    from bgp.daemon.felix_client import ClusterRunner

    settings = Settings(
        listen_address=args.listen_address,
        admin_socket=args.admin_socket,
        hold_time=args.hold_time,
        connect_retry_time=args.connect_retry_time,
        graceful_restart_time=args.graceful_restart_time,
    )
    runner = ClusterRunner(args.felix_socket, settings, eor_deferral=args.eor_deferral)
    await runner.start()
    admin = None
    if args.admin_socket:
        from bgp.daemon.admin import serve_admin

        admin = await serve_admin(lambda: runner.speaker, args.admin_socket)
    metrics = None
    if args.metrics_port:
        from bgp.daemon.metrics import serve_metrics

        # The runner rebuilds its speaker when AS or router id change: ask it each scrape.
        metrics = await serve_metrics(lambda: runner.speaker, args.metrics_address,
                                      args.metrics_port)  # fmt: skip
    try:
        await _until_signalled(hup_ignored="cluster mode: Felix's stream is the configuration")
    finally:
        await runner.stop()
        if metrics is not None:
            await metrics.stop()
        if admin is not None:
            await admin.stop(0.5)
    return 0


RouteSource = Callable[["Speaker"], contextlib.AbstractAsyncContextManager[None]]


async def run(
    config: DaemonConfig, path: str | None = None, source: RouteSource | None = None
) -> int:
    """One speaker configured by a file, with its admin API and metrics, until signalled.

    ``path``: re-read on SIGHUP for ``originate``. ``source``: something else that sets
    the originated routes while the speaker runs (the route publisher's datastore)."""
    from bgp.daemon.speaker import Speaker

    speaker = Speaker(config)
    try:
        await speaker.start()
    except OSError as e:
        log.error("cannot start error=%r", str(e))
        return 1
    admin = None
    if config.admin_socket:
        from bgp.daemon.admin import serve_admin

        admin = await serve_admin(speaker, config.admin_socket)
    metrics = None
    if config.metrics_port:
        from bgp.daemon.metrics import serve_metrics

        metrics = await serve_metrics(speaker, config.metrics_address, config.metrics_port)
    on_hup = functools.partial(_reload, speaker, path) if path is not None else None
    try:
        async with source(speaker) if source is not None else contextlib.nullcontext():
            await _until_signalled(
                on_hup, hup_ignored="route publisher: the datastore says what to publish"
            )
    finally:
        await speaker.stop()
        if metrics is not None:
            await metrics.stop()
        if admin is not None:
            await admin.stop(0.5)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tabby-bgpd",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="YAML configuration file (standalone mode)")
    p.add_argument("--felix-socket", help="Felix's unix socket (cluster mode)")
    p.add_argument("--admin-socket", help="serve the admin API here (cluster mode)")
    p.add_argument(
        "--listen-address",
        default="0.0.0.0",
        help="cluster mode: address to listen on; 'node' binds the node's IPv4 address",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="cluster mode: serve Prometheus /metrics on this port (0: off)",
    )
    p.add_argument(
        "--metrics-address", default="127.0.0.1", help="cluster mode: address for --metrics-port"
    )
    p.add_argument("--hold-time", type=int, default=90)
    p.add_argument("--connect-retry-time", type=int, default=5)
    p.add_argument("--graceful-restart-time", type=int, default=120)
    p.add_argument(
        "--eor-deferral",
        type=float,
        default=30.0,
        help="cluster mode: longest wait for peers' End-of-RIB before telling Felix the "
        "learned table is complete",
    )
    p.add_argument(
        "--publish-from-datastore",
        action="store_true",
        help="route publisher: advertise every node's blocks from the datastore",
    )
    p.add_argument("--etcd-endpoints", help="publisher: comma-separated etcd client URLs")
    p.add_argument("--log-level", default="INFO")
    return p


def _publish(args: argparse.Namespace) -> int:
    from bgp.daemon.publisher import publishing
    from datastore.config import resolve_endpoints

    try:
        config = load_config(args.config)
        endpoints = resolve_endpoints(args.etcd_endpoints)
    except (OSError, ValueError) as e:  # ConfigError is a ValueError
        print(f"tabby-bgpd: {e}", file=sys.stderr)
        return 2
    if config.originate:
        log.warning("originate in %s ignored: the datastore says what to publish", args.config)
    return asyncio.run(run(config, source=lambda speaker: publishing(speaker, endpoints)))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if args.felix_socket:
        if args.config:
            parser.error("--config and --felix-socket are two different modes; pick one")
        return asyncio.run(run_cluster(args))
    if not args.config:
        parser.error("one of --config FILE or --felix-socket PATH is required")
    if args.publish_from_datastore:
        return _publish(args)
    try:
        config = load_config(args.config)
    except (OSError, ConfigError) as e:
        print(f"tabby-bgpd: {e}", file=sys.stderr)
        return 2
    return asyncio.run(run(config, args.config))


if __name__ == "__main__":
    sys.exit(main())
