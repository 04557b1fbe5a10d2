"""``tabby-cni-service``: the warm node-local half of the thick CNI plugin.

Holds the datastore and IPAM clients (and the imports they cost) so each pod's
ADD/DEL pays only for its own work. Serves one request per unix-socket connection
(``cni/protocol.py``) on a thread pool; pod-namespace work happens on short-lived
threads of its own (``cni/netns.py``), never on a pool thread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import stat
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from cni import config, errors, handler, protocol
from cni.errors import CNIError

log = logging.getLogger("tabby.cni.service")

READ_TIMEOUT_SECONDS = 10.0


class Service:
    """The listening socket and the pool that serves it; ``stop()`` from any thread."""

    def __init__(
        self, socket_path: str, workers: int = 8, backends: handler.Backends | None = None
    ) -> None:
        self.socket_path = socket_path
        self.backends = backends or handler.Backends()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cni")
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()

    def bind(self) -> None:
        os.makedirs(os.path.dirname(self.socket_path) or ".", exist_ok=True)
        self._remove_stale_socket()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is root's only: it can plumb any namespace
        try:
            sock.bind(self.socket_path)
        finally:
            os.umask(old_umask)
        sock.listen(128)
        sock.settimeout(0.5)  # so serve_forever notices stop() without a connection
        self._listener = sock
        log.info("listening socket=%s", self.socket_path)

    def _remove_stale_socket(self) -> None:
        try:
            mode = os.lstat(self.socket_path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise SystemExit(
                f"{self.socket_path} exists and is not a socket; refusing to remove it"
            )
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.socket_path)
        except ConnectionRefusedError:
            os.unlink(self.socket_path)  # left behind by a service that died
            return
        finally:
            probe.close()
        raise SystemExit(f"another tabby-cni-service is listening on {self.socket_path}")

    def serve_forever(self) -> None:
        assert self._listener is not None, "bind() first"
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopped.is_set():
                    break
                raise
            self._pool.submit(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(READ_TIMEOUT_SECONDS)
                req = protocol.decode_request(protocol.read_all(conn))
            except (protocol.ProtocolError, OSError) as exc:
                log.warning("bad request error=%s", exc)
                err = CNIError(errors.DECODING_FAILURE, f"bad request to the CNI service: {exc}")
                reply = protocol.Reply(err.code, json.dumps(err.to_json(config.LATEST_VERSION)))
            else:
                reply = handler.handle(req, self.backends)
            try:
                conn.settimeout(None)
                conn.sendall(protocol.encode_reply(reply))
            except OSError as exc:
                log.warning("client went away before the reply error=%s", exc)

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()
        self._pool.shutdown(wait=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self.backends.close()
        log.info("stopped socket=%s", self.socket_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tabby-cni-service", description=__doc__)
    parser.add_argument("--socket", default=config.DEFAULT_SERVICE_SOCKET)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    service = Service(args.socket, args.workers)
    service.bind()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal=%d, stopping", signum)
        threading.Thread(target=service.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"ready socket={args.socket}", flush=True)
    service.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
