"""``make demo`` as a newcomer runs it: the cluster comes up, says what it promised,
and ``make demo-down`` leaves nothing behind."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from e2e.nodes import install_prefix
from e2e.topology import list_netns

DEMO = pathlib.Path(__file__).resolve().parent / "demo_cluster.py"


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEMO), *args], capture_output=True, text=True, timeout=240
    )


def test_demo_up_reports_bgp_routes_and_reachability_and_down_cleans_up(tmp_path):
    state = tmp_path / "demo"
    with install_prefix() as prefix:
        try:
            up = demo("up", "--prefix", str(prefix), "--state", str(state))
            assert up.returncode == 0, up.stdout + up.stderr + (state / "owner.log").read_text()
            ready = json.loads((state / "ready.json").read_text())
            assert ready["ok"] is True
            assert any(ns.startswith(ready["prefix"]) for ns in list_netns())
            out = up.stdout
            assert out.count("Tabby process is running.") == 3  # node status on every node
            assert out.count("Established") >= 6  # a full mesh of three
            assert "$ tabbyctl bgp rib" in out and "$ tabbyctl ipam show --show-blocks" in out
            assert out.count("ok/ok") == 6 * 5  # every pod reaches every other, ICMP and TCP
            assert "Tear it down with: make demo-down" in out
        finally:
            down = demo("down", "--state", str(state))
        assert down.returncode == 0
        assert not [ns for ns in list_netns() if ns.startswith(ready["prefix"])]
