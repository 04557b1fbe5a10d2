"""Subscriber fan-out: per-stream numbering, snapshot then InSync, slow readers cut off."""

from __future__ import annotations

import pytest

from felix.calc import messages
from felix.daemon.hub import Overflow, SubscriberHub
from proto import calc_pb2


def route(dst: str, seq: int) -> calc_pb2.ToDataplane:
    return messages.update_message(messages.ROUTE, calc_pb2.RouteUpdate(dst=dst), seq)


def drain(sub) -> list[calc_pb2.ToDataplane]:
    out = []
    while (m := sub.get(0.01)) is not None:
        out.append(m)
    return out


def test_new_subscriber_gets_snapshot_then_insync_then_live_numbered_from_one():
    hub = SubscriberHub()
    sub = hub.add("bgpd", [route("10.65.0.0/26", 0)], in_sync=True)
    hub.publish([route("10.65.0.64/26", 41)])
    got = drain(sub)
    assert [m.WhichOneof("payload") for m in got] == ["route_update", "in_sync", "route_update"]
    assert [m.sequence_number for m in got] == [1, 2, 3]


def test_slow_subscriber_is_cut_off_and_others_keep_flowing():
    hub = SubscriberHub(max_queue=3)
    slow, fast = hub.add("slow", [], False), hub.add("fast", [], False)
    for i in range(3):
        hub.publish([route(f"10.65.{i}.0/26", i + 1)])
        drain(fast)
    assert hub.publish([route("10.66.0.0/26", 4)]) == 1
    assert len(hub) == 1
    assert [m.route_update.dst for m in drain(fast)] == ["10.66.0.0/26"]
    drain_ok = [slow.get(0.01) for _ in range(3)]
    assert all(m is not None for m in drain_ok)
    with pytest.raises(Overflow, match="slow fell more than 3"):
        slow.get(0.01)
