"""Datastore keys and values to graph calls, including values that do not parse."""

from __future__ import annotations

import json
from dataclasses import dataclass

from datastore import keys
from felix.calc import messages
from felix.calc.pipeline import CalcPipeline
from felix.calc.testing import node, pool, wep
from model.resources import IPPool, Node, Resource, WorkloadEndpoint


@dataclass
class Update:
    key: str
    value: bytes | None
    revision: int = 1


def fake_parse(obj: dict) -> Resource:
    """Stands in for model.codec.parse_resource: the value is an id into a table."""
    return TABLE[obj["id"]]


TABLE: dict[str, Resource] = {
    "node-a": node("node-a", "10.0.1.5/24"),
    "node-b": node("node-b", "10.0.1.6/24"),
    "pool": pool("pool", "10.65.0.0/16"),
    "pod": wep("default", "pod", "node-a", "10.65.0.2/32"),
}


def put(res_id: str) -> Update:
    res = TABLE[res_id]
    key = keys.resource_key(type(res).PLURAL, res.name, res.namespace)
    return Update(key, json.dumps({"id": res_id}).encode())


def block(cidr: str, affinity: str | None) -> Update:
    return Update(keys.block_key(cidr), json.dumps({"cidr": cidr, "affinity": affinity}).encode())


def folded(p: CalcPipeline, *batches) -> dict:
    out = []
    for b in batches:
        out += p.on_datastore_updates(b) if isinstance(b, list) else p.on_datastore_status(b)
    return messages.fold(out)


def test_resources_and_blocks_become_routes_and_deletes_remove_them():
    p = CalcPipeline("node-a", parse=fake_parse)
    state = folded(
        p,
        [put("node-a"), put("node-b"), put("pool"), put("pod")],
        [block("10.65.0.0/26", "host:node-a"), block("10.65.0.64/26", "host:node-b")],
        "in-sync",
    )
    assert (messages.ROUTE, "10.65.0.64/26") in state
    assert state[(messages.ROUTE, "10.65.0.2/32")].workload_interface == "calipod"
    pod = TABLE["pod"]
    wep_key = keys.resource_key(WorkloadEndpoint.PLURAL, pod.name, "default")
    more = p.on_datastore_updates(
        [Update(wep_key, None), Update(keys.block_key("10.65.0.64/26"), None)]
    )
    messages.fold(more, state)
    assert (messages.ROUTE, "10.65.0.2/32") not in state
    assert (messages.ROUTE, "10.65.0.64/26") not in state
    assert (messages.WEP, ("k8s", "default/pod", "eth0")) not in state


def test_unparseable_value_deletes_the_key_and_names_it_in_the_log(caplog):
    p = CalcPipeline("node-a", parse=fake_parse)
    folded(p, [put("node-a"), put("node-b"), block("10.65.0.64/26", "host:node-b")], "in-sync")
    node_key = keys.resource_key(Node.PLURAL, "node-b")
    out = p.on_datastore_updates(
        [Update(node_key, b"{not json", 7), Update(keys.block_key("10.65.0.64/26"), b'{"cidr": 5}')]
    )
    state = messages.fold(out)
    assert state == {}  # only removals
    removed = {messages.classify(m)[:2] for m in out}
    assert (messages.HOST, "node-b") in removed
    assert (messages.ROUTE, "10.65.0.64/26") in removed
    assert f"key={node_key} revision=7" in caplog.text
    assert "field cidr" in caplog.text
    assert p.dispatcher.bad_values == 2


def test_value_naming_another_resource_than_its_key_is_rejected(caplog):
    p = CalcPipeline("node-a", parse=fake_parse)
    wrong = Update(keys.resource_key(IPPool.PLURAL, "other"), json.dumps({"id": "pool"}).encode())
    assert messages.fold(p.on_datastore_updates([wrong])) == {
        (messages.CONFIG, messages.SINGLETON): p.graph.outputs()[messages.CONFIG][
            messages.SINGLETON
        ]
    }
    assert "key names IPPool /other" in caplog.text


def test_unaffine_and_non_host_affinities_give_no_block_route():
    p = CalcPipeline("node-a", parse=fake_parse)
    state = folded(
        p,
        [put("node-a"), block("10.65.0.0/26", None), block("10.65.0.64/26", "virtual:x")],
        "in-sync",
    )
    assert not [k for k in state if k[0] == messages.ROUTE]


def test_keys_outside_the_graphs_interest_are_ignored():
    p = CalcPipeline("node-a", parse=fake_parse)
    p.on_datastore_updates([Update(keys.handle_key("h1"), b"x"), Update(keys.RESOURCES + "x", b"")])
    assert p.dispatcher.bad_values == 0


def test_real_codec_documents_flow_through_the_default_parser(caplog):
    """The production path: JSON written by tabbyctl, parsed by model.codec."""
    from model.codec import resource_to_dict

    p = CalcPipeline("node-a")  # default parser: model.codec.parse_resource
    docs = [TABLE["node-a"], TABLE["node-b"], TABLE["pool"], TABLE["pod"]]
    ups = [
        Update(
            keys.resource_key(type(r).PLURAL, r.name, r.namespace),
            json.dumps(resource_to_dict(r)).encode(),
        )
        for r in docs
    ]
    bad = Update(keys.resource_key(IPPool.PLURAL, "broken"), b'{"kind": "IPPool"}', 9)
    state = folded(p, [*ups, bad, block("10.65.0.64/26", "host:node-b")], "in-sync")
    assert state[(messages.ROUTE, "10.65.0.64/26")].dst_node_ip == "10.0.1.6"
    assert state[(messages.POOL, "10.65.0.0/16")].pool.block_size == 26
    assert (messages.WEP, ("k8s", "default/pod", "eth0")) in state
    assert "key=/tabby/resources/v1/ippools/broken revision=9" in caplog.text
