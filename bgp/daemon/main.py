"""``tabby-bgpd --config FILE``: run the BGP speaker until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from bgp.daemon.config import ConfigError, DaemonConfig, load_config

log = logging.getLogger("bgp.main")


def _reload(speaker, path: str) -> None:
    """SIGHUP: re-read the file and apply the originated routes; other changes need a
    restart (logged)."""
    try:
        new = load_config(path)
    except (OSError, ConfigError) as e:
        log.error("reload failed error=%r", str(e))
        return
    speaker.set_originate(new.originate)
    log.info("reloaded originate=%d", len(new.originate))


async def run(config: DaemonConfig, path: str | None = None) -> int:
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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if path is not None:
        loop.add_signal_handler(signal.SIGHUP, _reload, speaker, path)
    await stop.wait()
    log.info("stopping")
    await speaker.stop()
    if metrics is not None:
        await metrics.stop()
    if admin is not None:
        await admin.stop(0.5)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tabby-bgpd", description=__doc__)
    parser.add_argument("--config", required=True, help="YAML configuration file")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_config(args.config)
    except (OSError, ConfigError) as e:
        print(f"tabby-bgpd: {e}", file=sys.stderr)
        return 2
    return asyncio.run(run(config, args.config))


if __name__ == "__main__":
    sys.exit(main())
