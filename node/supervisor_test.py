"""tabby-node restarts a service that dies and stops every service it started."""

from __future__ import annotations

import sys
import time

from node.supervisor import Service, Supervisor


def wait_for(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_crashed_service_is_restarted_and_a_healthy_one_left_alone():
    crashing = Service("crashes", [sys.executable, "-c", "import sys; sys.exit(3)"])
    steady = Service("steady", [sys.executable, "-c", "import time; time.sleep(60)"])
    sup = Supervisor([crashing, steady], poll_interval_s=0.05)
    sup.start()
    try:
        assert wait_for(lambda: crashing.restarts >= 2)
        assert crashing.last_exit == 3
        assert steady.running
        assert steady.restarts == 0
        first_pid = steady.process.pid
    finally:
        sup.stop(grace_s=5)
    assert not steady.running
    assert steady.process.pid == first_pid


def test_crash_loop_backs_off_instead_of_spinning():
    crashing = Service("crashes", [sys.executable, "-c", "raise SystemExit(1)"])
    sup = Supervisor([crashing], poll_interval_s=0.02)
    sup.start()
    try:
        time.sleep(2.0)
    finally:
        sup.stop(grace_s=5)
    # 0.5 + 1 + 2 ... seconds apart: a handful of restarts in 2 s, not dozens.
    assert 1 <= crashing.restarts <= 4


def test_stop_kills_a_service_that_ignores_sigterm():
    stubborn = Service(
        "stubborn",
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)",
        ],
    )
    sup = Supervisor([stubborn], poll_interval_s=0.05)
    sup.start()
    assert wait_for(lambda: stubborn.running)
    time.sleep(0.3)  # let it install its handler
    start = time.monotonic()
    sup.stop(grace_s=1)
    assert time.monotonic() - start < 5
    assert not stubborn.running
