"""The shipped examples are what operators copy first: they must parse and validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.codec import load_documents, parse_resource, resource_to_dict
from model.errors import ValidationError
from model.validation import check_pool_overlap, validate

# Under Bazel the examples are runfiles next to this package; in a checkout, siblings.
EXAMPLES = Path(__file__).parent.parent / "examples"
VALID = ["ippools.yaml", "bgp.yaml", "felix.yaml", "nodes.yaml"]


def _load(name: str):
    return [parse_resource(d) for d in load_documents((EXAMPLES / name).read_text())]


@pytest.mark.parametrize("name", VALID)
def test_example_parses_validates_and_round_trips(name: str) -> None:
    resources = _load(name)
    assert resources, f"{name} holds no resources"
    for res in resources:
        checked = validate(res)
        assert parse_resource(resource_to_dict(checked)) == checked


def test_examples_cover_the_documented_kinds() -> None:
    kinds = {name: [(r.KIND, r.name) for r in _load(name)] for name in VALID}
    assert [k for k, _ in kinds["ippools.yaml"]] == ["IPPool", "IPPool"]
    assert ("BGPConfiguration", "default") in kinds["bgp.yaml"]
    assert [k for k, _ in kinds["bgp.yaml"]].count("BGPPeer") == 2
    assert [k for k, _ in kinds["nodes.yaml"]] == ["Node", "Node"]


def test_example_pools_are_ipv4_and_ipv6_and_do_not_overlap() -> None:
    pools = [validate(p) for p in _load("ippools.yaml")]
    assert sorted(p.spec.cidr for p in pools) == ["10.65.0.0/16", "fd00:10:65::/48"]
    for pool in pools:
        check_pool_overlap(pool, pools)


def test_example_route_reflector_peer_selects_exactly_the_reflector_node() -> None:
    from model import selector

    peers = {p.name: p for p in _load("bgp.yaml") if p.KIND == "BGPPeer"}
    rr_peer = peers["peer-with-route-reflectors"]
    nodes = _load("nodes.yaml")
    reflectors = [
        n.name
        for n in nodes
        if selector.parse(rr_peer.spec.peer_selector).evaluate(n.metadata.labels)
    ]
    clients = [
        n.name
        for n in nodes
        if selector.parse(rr_peer.spec.node_selector).evaluate(n.metadata.labels)
    ]
    assert reflectors == ["node-1"]
    assert clients == ["node-2"]
    assert nodes[0].spec.bgp is not None and nodes[0].spec.bgp.route_reflector_cluster_id


def test_invalid_example_is_rejected_naming_block_size() -> None:
    (pool,) = _load("invalid-pool.yaml")
    with pytest.raises(ValidationError) as exc:
        validate(pool)
    assert exc.value.field == "spec.blockSize"
    assert str(exc.value) == (
        "IPPool(bad-block-size): spec.blockSize: must be between 20 and 32 for an IPv4 pool"
    )
