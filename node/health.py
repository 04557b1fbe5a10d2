"""tabby-node's health for an exec probe: a status file written by the running node,
judged by ``tabby-node --health-check``.

The node serves nothing itself (Felix keeps its own HTTP ``/liveness`` and
``/readiness``); instead it rewrites ``<run-dir>/status.json`` every second with each
supervised service's pid and state. The check fails when the file is stale (tabby-node
itself hung or gone), or a service is down or restarting. ``verdict`` is pure.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

from node.supervisor import Service

STATUS_FILE = "status.json"
MAX_AGE_S = 10.0  # the file is rewritten every second; this much silence means trouble


def snapshot(node: str, services: list[Service], now: float | None = None) -> dict[str, Any]:
    return {
        "node": node,
        "pid": os.getpid(),
        "updated": time.time() if now is None else now,
        "services": [
            {
                "name": s.name,
                "pid": s.process.pid if s.process is not None else None,
                "running": s.running,
                "restarts": s.restarts,
                "last_exit": s.last_exit,
            }
            for s in services
        ],
    }


def write_status(run_dir: pathlib.Path, status: dict[str, Any]) -> None:
    """Atomically replace the status file (a reader never sees half of it)."""
    path = run_dir / STATUS_FILE
    tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps(status, indent=1) + "\n")
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def verdict(
    status: dict[str, Any],
    now: float,
    max_age_s: float = MAX_AGE_S,
    pid_alive: Callable[[int], bool] = _pid_alive,
) -> list[str]:
    """What is wrong, one phrase per problem; empty means healthy."""
    problems = []
    age = now - float(status.get("updated", 0))
    if age > max_age_s:
        problems.append(f"status is {age:.0f}s old (tabby-node not running?)")
    pid = status.get("pid")
    if isinstance(pid, int) and not pid_alive(pid):
        problems.append(f"tabby-node pid {pid} is gone")
    for svc in status.get("services", []):
        spid = svc.get("pid")
        if not svc.get("running") or not isinstance(spid, int):
            problems.append(
                f"service {svc.get('name')} is down "
                f"(last exit {svc.get('last_exit')}, restarts {svc.get('restarts')})"
            )
        elif not pid_alive(spid):
            problems.append(f"service {svc.get('name')} pid {spid} is gone")
    return problems


def check(run_dir: pathlib.Path, now: float | None = None) -> list[str]:
    """``verdict`` on the status file under ``run_dir`` (missing or bad file: unhealthy)."""
    path = run_dir / STATUS_FILE
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        return [f"no {path} (tabby-node not started with --run-dir {run_dir}?)"]
    except (OSError, ValueError) as exc:
        return [f"unreadable {path}: {exc}"]
    if not isinstance(status, dict):
        return [f"unreadable {path}: not a JSON object"]
    return verdict(status, time.time() if now is None else now)
