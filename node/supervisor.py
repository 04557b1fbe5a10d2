"""Keeps a node's services running: start each, restart it when it exits, stop all.

A service that keeps crashing is restarted with exponential backoff (capped), so a
broken config does not spin the CPU; one that ran for a while restarts at once.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger("tabby.node.supervisor")

MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
HEALTHY_AFTER_S = 10.0  # a run this long resets the backoff


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    backoff_s: float = MIN_BACKOFF_S
    last_exit: int | None = None
    next_start: float = 0.0
    history: list[int] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    def __init__(self, services: list[Service], poll_interval_s: float = 0.2) -> None:
        self.services = services
        self._poll_interval_s = poll_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start(self, svc: Service) -> None:
        svc.process = subprocess.Popen(svc.argv, env=svc.env)
        svc.started_at = time.monotonic()
        log.info("service started name=%s pid=%d", svc.name, svc.process.pid)

    def _check(self, svc: Service, now: float) -> None:
        if svc.process is None:
            if now >= svc.next_start:
                self._start(svc)
            return
        code = svc.process.poll()
        if code is None:
            return
        svc.last_exit = code
        svc.history.append(code)
        ran = now - svc.started_at
        svc.backoff_s = (
            MIN_BACKOFF_S if ran >= HEALTHY_AFTER_S else min(svc.backoff_s * 2, MAX_BACKOFF_S)
        )
        svc.restarts += 1
        svc.process = None
        svc.next_start = now + (0 if ran >= HEALTHY_AFTER_S else svc.backoff_s)
        log.warning(
            "service exited name=%s code=%s ran_s=%.1f restart_in_s=%.1f",
            svc.name,
            code,
            ran,
            max(0.0, svc.next_start - now),
        )

    def run_once(self) -> None:
        now = time.monotonic()
        for svc in self.services:
            self._check(svc, now)

    def start(self) -> None:
        """Start every service now (so a status read right after sees them), then watch."""
        self.run_once()

        def loop() -> None:
            while not self._stop.is_set():
                self.run_once()
                self._stop.wait(self._poll_interval_s)

        self._thread = threading.Thread(target=loop, name="supervisor", daemon=True)
        self._thread.start()

    def healthy(self) -> bool:
        return all(svc.running for svc in self.services)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM every service, SIGKILL what has not exited after ``grace_s``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for svc in self.services:
            if svc.running:
                svc.process.terminate()  # type: ignore[union-attr]
        deadline = time.monotonic() + grace_s
        for svc in self.services:
            if svc.process is None:
                continue
            try:
                svc.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("service did not stop, killing name=%s", svc.name)
                svc.process.kill()
                svc.process.wait()
