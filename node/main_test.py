"""tabby-node as a process: per-node run dirs, pass-through flags, the exec health probe.

The real services run under tabby-node in ``e2e/modes_test.py``; here stand-in
executables record how they were started, so that two nodes sharing one filesystem
can be checked for colliding paths in a second, against a real etcd.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from datastore.etcd_fixture import EtcdServer
from node.health import verdict

pytest_plugins = ["datastore.etcd_fixture"]

REPO = pathlib.Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(REPO))

# Records argv and the environment it was given, then runs until SIGTERM.
STANDIN = """#!{python}
import json, os, signal, sys, time
out = os.path.join(os.environ["STANDIN_DIR"], os.path.basename(sys.argv[0]) + ".json")
env = {{k: v for k, v in os.environ.items() if k.startswith(("TABBY_", "NODENAME"))}}
with open(out, "w") as f:
    json.dump({{"argv": sys.argv[1:], "env": env, "pid": os.getpid()}}, f)
if os.environ.get("STANDIN_EXIT"):
    sys.exit(int(os.environ["STANDIN_EXIT"]))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(120)
"""


def make_bin(path: pathlib.Path, names: list[str], body: str = STANDIN) -> pathlib.Path:
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        exe = path / name
        exe.write_text(body.format(python=sys.executable))
        exe.chmod(0o755)
    return path


def wait_for(predicate, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def health(run_dir: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.main", "--health-check", f"--run-dir={run_dir}"],
        capture_output=True,
        text=True,
        timeout=30,
        env=ENV,
        cwd=REPO,
    )


class NodeProc:
    """One tabby-node process; always stopped (and its group killed) by the fixture."""

    def __init__(self, tmp: pathlib.Path, etcd: str, name: str, *extra: str, **env: str):
        self.run_dir = tmp / name / "run"
        self.record_dir = tmp / name / "records"
        self.record_dir.mkdir(parents=True)
        self.log = tmp / name / "node.log"
        argv = [
            sys.executable, "-m", "node.main", f"--nodename={name}", f"--etcd-endpoints={etcd}",
            "--ip=172.30.0.9/24", f"--run-dir={self.run_dir}", *extra,
        ]  # fmt: skip
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                env=dict(ENV, STANDIN_DIR=str(self.record_dir), **env),
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def record(self, exe: str) -> dict:
        return json.loads((self.record_dir / f"{exe}.json").read_text())

    def has_record(self, exe: str) -> bool:
        return (self.record_dir / f"{exe}.json").exists()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its services share its group
        return self.proc.wait(10)


@pytest.fixture()
def nodes(tmp_path: pathlib.Path, etcd_server: EtcdServer) -> Iterator[list[NodeProc]]:
    started: list[NodeProc] = []

    class Factory(list):
        def start(self, name: str, *extra: str, **env: str) -> NodeProc:
            node = NodeProc(tmp_path, etcd_server.endpoint, name, *extra, **env)
            started.append(node)
            return node

    try:
        yield Factory()  # type: ignore[misc]
    finally:
        for node in started:
            node.stop()


def test_two_nodes_on_one_filesystem_get_their_own_paths_and_flags(tmp_path, nodes):
    bin_dir = make_bin(tmp_path / "bin", ["tabby-felix", "tabby-cni-service", "tabby-bgpd"])
    a = nodes.start("nm-a", f"--bin-dir={bin_dir}", "--health-port=9311",
                    "--felix-arg=--log-level=DEBUG", "--cni-arg=--workers=2")  # fmt: skip
    b = nodes.start("nm-b", f"--bin-dir={bin_dir}", "--health-port=9312")
    for node in (a, b):
        assert wait_for(lambda n=node: n.has_record("tabby-felix") and n.has_record(
            "tabby-cni-service")), node.log.read_text()  # fmt: skip
    felix_a, felix_b = a.record("tabby-felix"), b.record("tabby-felix")
    assert f"--socket={a.run_dir / 'felix.sock'}" in felix_a["argv"]
    assert f"--socket={b.run_dir / 'felix.sock'}" in felix_b["argv"]
    assert "--node-name=nm-a" in felix_a["argv"] and "--health-port=9311" in felix_a["argv"]
    assert felix_a["argv"][-1] == "--log-level=DEBUG", "pass-through flags come last"
    assert felix_a["env"]["TABBY_FELIX_MTU_FILE"] == str(a.run_dir / "mtu")
    assert a.record("tabby-cni-service")["argv"] == [
        f"--socket={a.run_dir / 'cni.sock'}",
        "--workers=2",
    ]
    assert b.record("tabby-cni-service")["argv"] == [f"--socket={b.run_dir / 'cni.sock'}"]
    # bgpd in cluster mode: configured by this node's Felix, admin socket in the run dir.
    assert wait_for(lambda: a.has_record("tabby-bgpd")), a.log.read_text()
    assert a.record("tabby-bgpd")["argv"] == [
        f"--felix-socket={a.run_dir / 'felix.sock'}",
        f"--admin-socket={a.run_dir / 'bgpd.sock'}",
    ]

    assert wait_for(lambda: health(a.run_dir).returncode == 0), health(a.run_dir).stderr
    assert health(b.run_dir).returncode == 0
    assert a.stop() == 0
    gone = health(a.run_dir)
    assert gone.returncode == 1 and "no " in gone.stderr, gone.stderr
    felix_pid = felix_a["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(felix_pid, 0)  # the node stopped the services it started
    assert health(b.run_dir).returncode == 0, "the other node is untouched"


def test_health_check_fails_naming_the_service_that_is_down(tmp_path, nodes):
    bin_dir = make_bin(tmp_path / "bin", ["tabby-felix"])
    broken = "#!/bin/sh\necho crashing >&2\nexit 3\n"
    make_bin(bin_dir, ["tabby-cni-service"], body=broken)
    node = nodes.start("nm-c", f"--bin-dir={bin_dir}")

    def down() -> bool:
        result = health(node.run_dir)
        return result.returncode == 1 and "service cni is down (last exit 3" in result.stderr

    assert wait_for(down), health(node.run_dir).stderr + node.log.read_text()
    assert "service felix" not in health(node.run_dir).stderr


def test_requested_service_that_cannot_run_is_a_startup_error(tmp_path, nodes):
    bin_dir = make_bin(tmp_path / "bin", ["tabby-felix", "tabby-bgpd"])
    node = nodes.start(
        "nm-d", f"--bin-dir={bin_dir}", "--services=felix,bgpd", "--bgpd-config=/nonexistent"
    )
    assert node.proc.wait(30) == 1
    assert "service bgpd: no BGP config /nonexistent" in node.log.read_text()
    assert not node.has_record("tabby-felix"), "nothing started"


def test_bgpd_in_cluster_mode_needs_felix(tmp_path, nodes):
    bin_dir = make_bin(tmp_path / "bin", ["tabby-bgpd"])
    node = nodes.start("nm-e", f"--bin-dir={bin_dir}", "--services=bgpd")
    assert node.proc.wait(30) == 1
    assert "cluster mode takes its configuration from Felix" in node.log.read_text()


def test_verdict_reads_staleness_and_dead_pids():
    status = {"updated": 100.0, "pid": 1, "services": [
        {"name": "felix", "pid": 11, "running": True, "restarts": 0, "last_exit": None},
        {"name": "cni", "pid": None, "running": False, "restarts": 4, "last_exit": 2},
    ]}  # fmt: skip
    alive = {1, 11}.__contains__
    assert verdict(status, now=101.0, pid_alive=alive) == [
        "service cni is down (last exit 2, restarts 4)"
    ]
    status["services"].pop()
    assert verdict(status, now=101.0, pid_alive=alive) == []
    assert verdict(status, now=101.0, pid_alive=lambda p: p == 1) == [
        "service felix pid 11 is gone"
    ]
    assert "old" in verdict(status, now=200.0, pid_alive=alive)[0]


def test_felix_waits_for_no_learned_routes_when_the_node_runs_no_bgp_daemon(tmp_path, nodes):
    bin_dir = make_bin(tmp_path / "bin", ["tabby-felix", "tabby-cni-service"])
    node = nodes.start("nm-f", f"--bin-dir={bin_dir}", "--services=felix,cni")
    assert wait_for(lambda: node.has_record("tabby-felix")), node.log.read_text()
    assert "--learned-routes-grace=0" in node.record("tabby-felix")["argv"]
