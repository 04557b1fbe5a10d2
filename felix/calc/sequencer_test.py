"""Ordering, coalescing, InSync and sequence numbers of the event sequencer."""

from __future__ import annotations

from felix.calc import messages
from felix.calc.sequencer import EventSequencer
from proto import calc_pb2


def route(dst: str, node: str = "b") -> calc_pb2.RouteUpdate:
    return calc_pb2.RouteUpdate(dst=dst, type=calc_pb2.REMOTE_BLOCK, dst_node=node)


def vtep(node: str) -> calc_pb2.VXLANTunnelEndpointUpdate:
    return calc_pb2.VXLANTunnelEndpointUpdate(node=node, mac="66:00:00:00:00:01")


def payloads(msgs):
    return [m.WhichOneof("payload") for m in msgs]


def test_updates_flow_in_dependency_order_then_insync_then_nothing_removed_before():
    s = EventSequencer()
    s.on_change(messages.BGP_PEER, "10.0.0.2", calc_pb2.BGPPeerUpdate(id="10.0.0.2"))
    s.on_change(messages.ROUTE, "10.65.0.0/26", route("10.65.0.0/26"))
    s.on_change(messages.BGP_CONFIG, messages.SINGLETON, calc_pb2.BGPConfigUpdate(as_number=1))
    s.on_change(messages.VTEP, "b", vtep("b"))
    s.on_change(messages.POOL, "10.65.0.0/16", calc_pb2.IPPoolUpdate(id="10.65.0.0/16"))
    first = s.flush()
    assert payloads(first) == [
        "ip_pool_update", "vtep_update", "route_update", "bgp_config_update", "bgp_peer_update",
    ]  # fmt: skip
    # Removed before InSync: held back.
    s.on_change(messages.ROUTE, "10.65.0.0/26", None)
    assert s.flush() == []
    s.on_datastore_in_sync()
    after = s.flush()
    assert payloads(after) == ["in_sync", "route_remove"]
    assert [m.sequence_number for m in first + after] == list(range(1, 8))


def test_removals_go_in_reverse_dependency_order():
    s = EventSequencer()
    s.on_datastore_in_sync()
    s.on_change(messages.VTEP, "b", vtep("b"))
    s.on_change(messages.ROUTE, "10.65.0.0/26", route("10.65.0.0/26"))
    s.flush()
    s.on_change(messages.VTEP, "b", None)
    s.on_change(messages.ROUTE, "10.65.0.0/26", None)
    assert payloads(s.flush()) == ["route_remove", "vtep_remove"]


def test_update_then_remove_of_an_unsent_key_is_nothing():
    s = EventSequencer()
    s.on_datastore_in_sync()
    s.flush()
    s.on_change(messages.ROUTE, "10.65.0.0/26", route("10.65.0.0/26"))
    s.on_change(messages.ROUTE, "10.65.0.0/26", None)
    assert s.flush() == []


def test_remove_then_readd_with_the_same_value_before_insync_sends_nothing():
    s = EventSequencer()
    s.on_change(messages.ROUTE, "10.65.0.0/26", route("10.65.0.0/26"))
    s.flush()
    s.on_change(messages.ROUTE, "10.65.0.0/26", None)
    s.flush()
    s.on_change(messages.ROUTE, "10.65.0.0/26", route("10.65.0.0/26"))
    s.on_datastore_in_sync()
    assert payloads(s.flush()) == ["in_sync"]


def test_insync_is_sent_once_even_after_a_resync():
    s = EventSequencer()
    s.on_datastore_in_sync()
    assert payloads(s.flush()) == ["in_sync"]
    s.on_datastore_in_sync()
    assert s.flush() == []


def test_unchanged_value_is_not_resent_and_changed_value_is():
    s = EventSequencer()
    s.on_change(messages.ROUTE, "10.65.0.0/26", route("10.65.0.0/26"))
    s.flush()
    s.on_change(messages.ROUTE, "10.65.0.0/26", route("10.65.0.0/26"))
    assert s.flush() == []
    s.on_change(messages.ROUTE, "10.65.0.0/26", route("10.65.0.0/26", node="c"))
    (msg,) = s.flush()
    assert msg.route_update.dst_node == "c"


def test_snapshot_is_the_current_state_in_dependency_order():
    s = EventSequencer()
    s.on_change(messages.ROUTE, "10.65.0.0/26", route("10.65.0.0/26"))
    s.on_change(messages.VTEP, "b", vtep("b"))
    s.on_datastore_in_sync()
    s.flush()
    s.on_change(messages.ROUTE, "10.65.0.0/26", None)
    s.flush()
    assert payloads(s.snapshot()) == ["vtep_update"]
