"""The stream contract: every kind of update has its removal, keyed the same way."""

from proto import calc_pb2


def _payload_fields() -> list[str]:
    return [f.name for f in calc_pb2.ToDataplane.DESCRIPTOR.oneofs_by_name["payload"].fields]


def test_every_update_has_a_remove_so_consumers_can_converge():
    fields = _payload_fields()
    singletons = {"config_update", "bgp_config_update"}  # whole-value, never removed
    updates = [f for f in fields if f.endswith("_update") and f not in singletons]
    for update in updates:
        assert update.replace("_update", "_remove") in fields, update


def test_message_round_trips_through_the_wire_format():
    msg = calc_pb2.ToDataplane(
        sequence_number=7,
        route_update=calc_pb2.RouteUpdate(
            dst="10.65.1.0/26",
            type=calc_pb2.REMOTE_BLOCK,
            dst_node="node-b",
            dst_node_ip="10.0.0.2",
            encap=calc_pb2.ENCAP_TYPE_VXLAN,
        ),
    )
    back = calc_pb2.ToDataplane.FromString(msg.SerializeToString())
    assert back.WhichOneof("payload") == "route_update"
    assert back.route_update.dst_node == "node-b"
    assert back.sequence_number == 7
