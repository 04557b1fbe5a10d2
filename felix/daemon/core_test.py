"""FelixCore without a datastore: managers fed in order, failed applies retried with
backoff, readiness and endpoint readiness only after a successful apply."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from datastore import keys
from felix.calc.testing import felix_config, node, pool, wep
from felix.daemon.core import FelixCore
from model.codec import resource_to_dict
from model.resources import Resource
from proto import calc_pb2, felix_services_pb2


@dataclass
class Update:
    key: str
    value: bytes | None
    revision: int = 1


def put(res: Resource) -> Update:
    key = keys.resource_key(type(res).PLURAL, res.name, res.namespace)
    return Update(key, json.dumps(resource_to_dict(res)).encode())


class FlakyManager:
    """Records updates; its first ``failures`` applies raise, like a busy kernel."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.updates: list[calc_pb2.ToDataplane] = []
        self.learned: list[object] = []
        self.applies = 0
        self.threads: set[str] = set()
        self.applied = threading.Event()

    def on_update(self, msg: calc_pb2.ToDataplane) -> None:
        self.threads.add(threading.current_thread().name)
        self.updates.append(msg)

    def on_learned(self, msg: felix_services_pb2.LearnedRouteMessage) -> None:
        self.threads.add(threading.current_thread().name)
        self.learned.append(msg)

    def on_learned_reset(self) -> None:
        self.learned.append("reset")

    def apply(self) -> None:
        self.applies += 1
        if self.failures:
            self.failures -= 1
            raise OSError("netlink busy")
        self.applied.set()


WEP_KEY = ("k8s", "default/pod", "eth0")


def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``pred`` until true or ``timeout``: waits on a condition, not a guess."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def start(mgr: FlakyManager) -> FelixCore:
    core = FelixCore("node-a", [mgr], min_backoff=0.05, max_backoff=0.2)
    core.start()
    return core


def load(core: FelixCore) -> None:
    core.on_status("wait-for-ready")
    core.on_updates([put(node("node-a", "10.0.1.5/24")), put(pool("p", "10.65.0.0/16")),
                     put(wep("default", "pod", "node-a", "10.65.0.2/32"))])  # fmt: skip
    core.on_status("in-sync")


def test_failed_apply_is_retried_and_ready_only_after_it_succeeds():
    mgr = FlakyManager(failures=2)
    core = start(mgr)
    try:
        load(core)
        assert mgr.applied.wait(5), "apply never succeeded"
        ready, reason = core.wait_endpoint_ready(WEP_KEY, 5)
        assert (ready, reason) == (True, "")
        assert core.ready
        assert mgr.applies >= 3
        assert core.metrics.get("apply_failures_total") == 2
        # Every message reached the manager once, in stream order, on one thread.
        seqs = [m.sequence_number for m in mgr.updates]
        assert seqs == list(range(1, len(seqs) + 1))
        assert mgr.threads == {"dataplane"}
    finally:
        core.stop()


def test_endpoint_wait_times_out_with_the_reason():
    mgr = FlakyManager(failures=10_000)
    core = start(mgr)
    try:
        load(core)
        ready, reason = core.wait_endpoint_ready(WEP_KEY, 0.3)
        assert not ready
        assert "not programmed yet" in reason and "OSError: netlink busy" in reason
        assert not core.ready
        ready, reason = core.wait_endpoint_ready(("k8s", "default/other", "eth0"), 0.1)
        assert not ready
        assert "default/other" in reason and "not known on node node-a" in reason
    finally:
        core.stop()


def test_learned_routes_reach_the_manager_on_the_dataplane_thread():
    mgr = FlakyManager()
    core = start(mgr)
    try:
        core.learned_reset()
        msg = felix_services_pb2.LearnedRouteMessage(
            update=felix_services_pb2.LearnedRoute(dst="10.70.0.0/24", next_hops=["10.0.1.1"])
        )
        core.learned(msg)
        wait_until(lambda: len(mgr.learned) >= 2)
        assert mgr.learned == ["reset", msg]
        assert mgr.threads == {"dataplane"}
    finally:
        core.stop()


def test_managers_are_built_once_in_sync_and_see_every_message():
    built: list[dict[str, str]] = []
    mgr = FlakyManager()

    def factory(config: dict[str, str]) -> list[FlakyManager]:
        built.append(config)
        if len(built) == 1:
            raise OSError("kernel not ready")  # retried like a failed apply
        return [mgr]

    core = FelixCore("node-a", factory, min_backoff=0.05, max_backoff=0.1)
    core.start()
    try:
        load(core)
        assert core.wait_endpoint_ready(WEP_KEY, 5) == (True, "")
        assert built[-1]["vxlan_enabled"] == "false"
        assert mgr.updates[0].HasField("config_update")
        seqs = [m.sequence_number for m in mgr.updates]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        core.stop()


def test_managers_are_built_from_the_complete_snapshot_config_not_a_partial_one(caplog):
    """The first ConfigUpdate comes from a partial snapshot (defaults: no VXLAN, 90s
    refresh); building from it would ignore the cluster's FelixConfiguration and pools
    for the life of the process."""
    built: list[dict[str, str]] = []
    mgr = FlakyManager()

    def factory(config: dict[str, str]) -> list[FlakyManager]:
        built.append(config)
        return [mgr]

    core = FelixCore("node-a", factory)
    core.start()
    try:
        core.on_status("wait-for-ready")
        core.on_updates([put(node("node-a", "10.0.1.5/24"))])
        time.sleep(0.2)  # the dataplane thread had its chance to build early
        assert built == []
        core.on_updates([put(pool("p", "10.65.0.0/16", vxlan="Always")),
                         put(felix_config("default", route_refresh_interval="5s"))])  # fmt: skip
        core.on_status("in-sync")
        assert wait_until(lambda: core.ready)
        assert len(built) == 1
        assert (built[0]["vxlan_enabled"], built[0]["route_refresh_interval"]) == ("true", "5s")
        # Every earlier message was replayed, and the replay warns about nothing.
        assert sum(m.HasField("config_update") for m in mgr.updates) >= 1
        assert "configuration changed" not in caplog.text
    finally:
        core.stop()


def test_config_change_after_build_is_reported_with_old_and_new_config():
    seen: list[tuple[str, str]] = []
    mgr = FlakyManager()
    core = FelixCore(
        "node-a",
        lambda config: [mgr],
        config_changed=lambda old, new: seen.append(
            (old["route_refresh_interval"], new["route_refresh_interval"])
        ),
    )
    core.start()
    try:
        load(core)
        assert mgr.applied.wait(5)
        assert seen == []  # the replay of the snapshot is not a change
        core.on_updates([put(felix_config("default", route_refresh_interval="7s"))])
        wait_until(lambda: bool(seen))
        assert seen == [("90s", "7s")]
    finally:
        core.stop()


def test_housekeeping_applies_without_new_messages_so_resync_and_late_interfaces_run():
    mgr = FlakyManager()
    core = FelixCore("node-a", [mgr], housekeeping=0.05)
    core.start()
    try:
        load(core)
        assert mgr.applied.wait(5)
        seen = mgr.applies
        assert wait_until(lambda: mgr.applies >= seen + 3), "apply() not called periodically"
    finally:
        core.stop()


def test_housekeeping_interval_must_be_positive():
    with pytest.raises(ValueError, match="housekeeping interval must be > 0 seconds, got 0"):
        FelixCore("node-a", [], housekeeping=0)


def test_flags_that_only_the_process_knows_override_the_datastore_config():
    from felix.daemon.main import dataplane_settings, local_settings, parse_args

    args = parse_args(["--dataplane-netns", "node-a-ns", "--mtu-file", "/tmp/x/mtu",
                       "--learned-routes-grace", "0", "--sysctl-root", "/tmp/sys"])  # fmt: skip
    got = dataplane_settings("node-a", {"vxlan_enabled": "true"}, local_settings(args))
    assert got == {
        "hostname": "node-a", "vxlan_enabled": True, "netns": "node-a-ns",
        "mtu_file": "/tmp/x/mtu", "learned_routes_grace": 0.0, "sysctl_root": "/tmp/sys",
    }  # fmt: skip
    defaults = local_settings(parse_args([]))
    assert defaults["netns"] is None and defaults["learned_routes_grace"] == 90.0


def test_missing_dataplane_netns_is_a_clear_start_up_error():
    from felix.daemon.main import check_netns

    check_netns(None)
    with pytest.raises(ValueError, match="--dataplane-netns 'tfx-nope00': /run/netns/tfx-nope00"):
        check_netns("tfx-nope00")


def test_felix_configuration_maps_onto_dataplane_settings():
    from felix.daemon.main import dataplane_settings

    config = {"device_route_protocol": "81", "vxlan_vni": "4097", "vxlan_enabled": "true",
              "ipip_enabled": "false", "route_refresh_interval": "30s",
              "interface_prefix": "tap", "log_severity_screen": "Info"}  # fmt: skip
    assert dataplane_settings("node-a", config) == {
        "hostname": "node-a", "route_protocol": 81, "vxlan_vni": 4097, "vxlan_enabled": True,
        "ipip_enabled": False, "resync_interval": 30.0, "interface_prefix": "tap",
    }  # fmt: skip


def test_route_refresh_interval_keeps_fractions_of_a_second():
    """Go durations such as 500ms or 1.5s are honoured, not truncated to whole seconds."""
    from felix.daemon.main import dataplane_settings

    def interval(text: str) -> float:
        return dataplane_settings("node-a", {"route_refresh_interval": text})["resync_interval"]

    assert (interval("500ms"), interval("1.5s"), interval("1m30s")) == (0.5, 1.5, 90.0)


def test_a_dataplane_that_cannot_be_imported_stops_start_up(monkeypatch, caplog, tmp_path):
    """Was a warning and a felix serving the stream, reporting ready, programming nothing."""
    import sys

    import felix
    from felix.daemon.main import main

    monkeypatch.setitem(sys.modules, "felix.dataplane", None)  # import raises ImportError
    monkeypatch.delattr(felix, "dataplane", raising=False)
    argv = ["--etcd-endpoints", "http://127.0.0.1:1", "--socket", str(tmp_path / "f.sock")]
    assert main(argv) == 2
    assert "dataplane cannot be loaded" in caplog.text and "error=" in caplog.text
    assert not (tmp_path / "f.sock").exists()


def test_a_manager_rejecting_a_message_does_not_keep_it_from_the_next_manager(caplog):
    class Rejecting(FlakyManager):
        def on_update(self, msg: calc_pb2.ToDataplane) -> None:
            raise ValueError("cannot handle this")

    first, second = Rejecting(), FlakyManager()
    core = FelixCore("node-a", [first, second], min_backoff=0.05, max_backoff=0.2)
    core.start()
    try:
        load(core)
        assert core.wait_endpoint_ready(WEP_KEY, 5) == (True, "")
        kinds = {m.WhichOneof("payload") for m in second.updates}
        assert {"route_update", "workload_endpoint_update", "in_sync"} <= kinds
        assert "manager=Rejecting message=route_update" in caplog.text
    finally:
        core.stop()
