"""``/liveness``, ``/readiness`` and Prometheus ``/metrics`` over plain HTTP."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from felix.daemon.core import FelixCore

log = logging.getLogger(__name__)


def serve_health(core: FelixCore, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/liveness":
                ok = core.alive
                self._reply(200 if ok else 503, "ok\n" if ok else "dataplane thread stopped\n")
            elif self.path == "/readiness":
                ok = core.ready
                self._reply(200 if ok else 503, "ready\n" if ok else "not in sync or not applied\n")
            elif self.path == "/metrics":
                self._reply(200, core.metrics.render(), "text/plain; version=0.0.4")
            else:
                self._reply(404, "not found\n")

        def _reply(self, code: int, body: str, ctype: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("health %s", format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    log.info("health listening addr=%s:%d", host, server.server_address[1])
    return server
