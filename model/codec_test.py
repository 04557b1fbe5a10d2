"""Documents <-> typed resources: field naming, strictness, round trips, multi-doc I/O."""

from __future__ import annotations

import dataclasses
import json
import random
import types
import typing

import pytest
import yaml

from model import resources as r
from model.codec import (
    FIELD_NAME_EXCEPTIONS,
    dump_documents,
    load_documents,
    parse_documents,
    parse_resource,
    resource_to_dict,
    to_camel,
    to_snake,
)
from model.errors import ValidationError

# One realistic document per kind, written the way a Calico operator would.
DOCS = {
    "IPPool": """
apiVersion: tabby.dev/v1
kind: IPPool
metadata:
  name: default-ipv4-ippool
  labels: {environment: production}
spec:
  cidr: 10.65.0.0/16
  blockSize: 26
  vxlanMode: CrossSubnet
  ipipMode: Never
  natOutgoing: true
  nodeSelector: "!has(edge)"
  disableBGPExport: false
""",
    "Node": """
apiVersion: tabby.dev/v1
kind: Node
metadata:
  name: node-1
  labels: {route-reflector: "true", kubernetes.io/hostname: node-1}
  annotations: {tabby.dev/note: "rack A, slot 3"}
  resourceVersion: "1234"
  uid: 0b4f8c1e-6d2a-4c55-9d0b-8f3f7c2b1a00
  creationTimestamp: 2024-05-01T12:00:00Z
spec:
  bgp:
    ipv4Address: 10.0.1.11/24
    ipv6Address: fd00:1::11/64
    asNumber: 64512
    routeReflectorClusterID: 224.0.0.1
  ipv4VXLANTunnelAddr: 10.65.12.0
  vxlanTunnelMACAddr: 66:7a:0b:3c:11:01
  ipv4IPIPTunnelAddr: 10.65.12.1
""",
    "BGPConfiguration": """
apiVersion: tabby.dev/v1
kind: BGPConfiguration
metadata: {name: default}
spec:
  asNumber: 64512
  nodeToNodeMeshEnabled: false
  listenPort: 179
  logSeverityScreen: Warning
  serviceClusterIPs: [10.96.0.0/12, fd00:96::/108]
""",
    "BGPPeer": """
apiVersion: tabby.dev/v1
kind: BGPPeer
metadata: {name: tor-router}
spec:
  nodeSelector: rack == 'a'
  peerIP: 192.0.2.1:1179
  asNumber: 65001
  password: s3cret
  keepOriginalNextHop: true
  maxRestartTime: 120s
""",
    "FelixConfiguration": """
apiVersion: tabby.dev/v1
kind: FelixConfiguration
metadata: {name: node.node-1}
spec:
  logSeverityScreen: Debug
  routeRefreshInterval: 30s
  deviceRouteProtocol: 80
  interfacePrefix: cali
  vxlanEnabled: true
  vxlanVNI: 4096
  vxlanPort: 4789
  vxlanMTU: 1450
  ipipEnabled: false
  ipipMTU: 1480
  healthPort: 9099
  prometheusMetricsEnabled: true
  prometheusMetricsPort: 9091
""",
    "IPAMConfiguration": """
apiVersion: tabby.dev/v1
kind: IPAMConfiguration
metadata: {name: default}
spec: {strictAffinity: true, autoAllocateBlocks: false, maxBlocksPerHost: 4}
""",
    "WorkloadEndpoint": """
apiVersion: tabby.dev/v1
kind: WorkloadEndpoint
metadata:
  name: node--1-k8s-nginx--7d9c-eth0
  namespace: default
  labels: {app: nginx, projectcalico.org/namespace: default}
spec:
  orchestrator: k8s
  workload: ""
  node: node-1
  containerID: 3f2a9c0d1e
  pod: nginx-7d9c
  endpoint: eth0
  interfaceName: cali1a2b3c4d5e6
  mac: 0e:8a:1b:2c:3d:4e
  ipNetworks: [10.65.12.3/32, "fd00:10:65::3/128"]
  profiles: [kns.default, ksa.default.default]
  serviceAccountName: default
""",
}


def _doc(kind: str) -> dict:
    (doc,) = load_documents(DOCS[kind])
    return doc


def _error(doc: dict) -> ValidationError:
    with pytest.raises(ValidationError) as exc:
        parse_resource(doc)
    return exc.value


# --- names -------------------------------------------------------------------------


def test_every_field_of_every_kind_has_a_unique_reversible_camel_name() -> None:
    def walk(cls: type) -> None:
        names = [to_camel(f.name) for f in dataclasses.fields(cls)]
        assert len(names) == len(set(names)), cls
        for f in dataclasses.fields(cls):
            assert to_snake(to_camel(f.name)) == f.name
            if dataclasses.is_dataclass(f.type if isinstance(f.type, type) else None):
                walk(f.type)  # pragma: no cover - types are strings under __future__

    for kind in r.ALL_KINDS:
        walk(kind)
        walk(r.ObjectMeta)


@pytest.mark.parametrize(
    ("snake", "camel"),
    [
        ("block_size", "blockSize"),
        ("peer_ip", "peerIP"),
        ("ipv4_vxlan_tunnel_addr", "ipv4VXLANTunnelAddr"),
        ("vxlan_tunnel_mac_addr", "vxlanTunnelMACAddr"),
        ("route_reflector_cluster_id", "routeReflectorClusterID"),
        ("container_id", "containerID"),
        ("vxlan_mtu", "vxlanMTU"),
        ("vxlan_vni", "vxlanVNI"),
        ("ipip_mtu", "ipipMTU"),
        ("service_cluster_ips", "serviceClusterIPs"),
        ("ipv4_address", "ipv4Address"),
        ("ip_networks", "ipNetworks"),
        ("node_to_node_mesh_enabled", "nodeToNodeMeshEnabled"),
        ("creation_timestamp", "creationTimestamp"),
    ],
)
def test_field_names(snake: str, camel: str) -> None:
    assert to_camel(snake) == camel
    assert to_snake(camel) == snake


def test_exceptions_are_only_for_names_the_mechanical_rule_gets_wrong_or_acronyms() -> None:
    for snake, camel in FIELD_NAME_EXCEPTIONS.items():
        assert camel[0].islower() and "_" not in camel, snake


# --- parsing -----------------------------------------------------------------------


def test_parse_ippool_typed_fields() -> None:
    pool = parse_resource(_doc("IPPool"))
    assert isinstance(pool, r.IPPool)
    assert pool.metadata.labels == {"environment": "production"}
    assert pool.spec == r.IPPoolSpec(
        cidr="10.65.0.0/16",
        block_size=26,
        vxlan_mode="CrossSubnet",
        ipip_mode="Never",
        nat_outgoing=True,
        node_selector="!has(edge)",
    )


def test_parse_node_acronym_fields_and_timestamp_kept_as_text() -> None:
    node = parse_resource(_doc("Node"))
    assert isinstance(node, r.Node)
    assert node.spec.bgp == r.NodeBGPSpec(
        ipv4_address="10.0.1.11/24",
        ipv6_address="fd00:1::11/64",
        as_number=64512,
        route_reflector_cluster_id="224.0.0.1",
    )
    assert node.spec.ipv4_vxlan_tunnel_addr == "10.65.12.0"
    assert node.spec.vxlan_tunnel_mac_addr == "66:7a:0b:3c:11:01"
    assert node.metadata.resource_version == "1234"
    assert node.metadata.creation_timestamp == "2024-05-01T12:00:00Z"


def test_parse_workload_endpoint_is_namespaced() -> None:
    wep = parse_resource(_doc("WorkloadEndpoint"))
    assert wep.namespace == "default"
    assert wep.spec.container_id == "3f2a9c0d1e"
    assert wep.spec.ip_networks == ["10.65.12.3/32", "fd00:10:65::3/128"]


def test_missing_optional_fields_keep_model_defaults_and_no_defaults_are_invented() -> None:
    pool = parse_resource(
        {
            "apiVersion": "tabby.dev/v1",
            "kind": "IPPool",
            "metadata": {"name": "p"},
            "spec": {"cidr": "10.1.0.0/16"},
        }
    )
    assert pool.spec.block_size is None  # validation fills it, not the codec
    assert pool.spec.vxlan_mode == "Never"


def test_timestamps_from_a_plain_yaml_loader_are_taken_back_as_text() -> None:
    doc = yaml.safe_load(DOCS["Node"])  # a caller not using load_documents
    assert parse_resource(doc).metadata.creation_timestamp == "2024-05-01T12:00:00Z"
    doc["metadata"]["labels"]["since"] = yaml.safe_load("2024-05-01")
    assert parse_resource(doc).metadata.labels["since"] == "2024-05-01"


def test_explicit_null_means_not_set() -> None:
    doc = _doc("BGPConfiguration")
    doc["spec"]["asNumber"] = None
    assert parse_resource(doc).spec.as_number is None


@pytest.mark.parametrize("kind", sorted(DOCS))
def test_round_trip_every_kind(kind: str) -> None:
    res = parse_resource(_doc(kind))
    out = resource_to_dict(res)
    assert parse_resource(out) == res
    assert out == _doc(kind) | {"spec": out["spec"]}  # metadata written back as read
    # Everything the operator wrote comes back under the same key, with the same value.
    for key, value in _doc(kind).get("spec", {}).items():
        if value not in ("", [], {}, None):
            assert out["spec"][key] == value, key


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_dump_then_load_gives_the_same_resources(fmt: str) -> None:
    res = [parse_resource(_doc(k)) for k in sorted(DOCS)]
    text = dump_documents(res, fmt)
    assert parse_documents(text) == res


def test_round_trip_keeps_empty_value_whose_default_is_not_empty() -> None:
    pool = r.IPPool(r.ObjectMeta(name="p"), r.IPPoolSpec(cidr="10.1.0.0/16", node_selector=""))
    assert resource_to_dict(pool)["spec"]["nodeSelector"] == ""
    assert parse_resource(resource_to_dict(pool)) == pool
    node = r.Node(r.ObjectMeta(name="n"), r.NodeSpec(bgp=r.NodeBGPSpec()))
    assert resource_to_dict(node)["spec"] == {"bgp": {}}
    assert parse_resource(resource_to_dict(node)) == node


def test_to_dict_leaves_out_unset_values() -> None:
    out = resource_to_dict(r.BGPPeer(r.ObjectMeta(name="p"), r.BGPPeerSpec(peer_selector="x")))
    assert out == {
        "apiVersion": "tabby.dev/v1",
        "kind": "BGPPeer",
        "metadata": {"name": "p"},
        "spec": {"peerSelector": "x", "keepOriginalNextHop": False},
    }


# --- strictness --------------------------------------------------------------------


def test_unknown_spec_field_is_rejected_with_a_suggestion() -> None:
    doc = _doc("IPPool")
    doc["spec"]["blokSize"] = doc["spec"].pop("blockSize")
    err = _error(doc)
    assert err.field == "spec.blokSize"
    assert err.resource == "IPPool(default-ipv4-ippool)"
    assert str(err).startswith("IPPool(default-ipv4-ippool): spec.blokSize: unknown field")
    assert "did you mean 'blockSize'?" in str(err)


def test_mechanical_spelling_of_an_acronym_field_is_rejected_pointing_at_the_right_one() -> None:
    doc = _doc("BGPPeer")
    doc["spec"]["peerIp"] = doc["spec"].pop("peerIP")
    err = _error(doc)
    assert err.field == "spec.peerIp"
    assert "did you mean 'peerIP'?" in err.reason


@pytest.mark.parametrize(
    ("kind", "path", "value", "field", "reason"),
    [
        ("IPPool", ["spec", "blockSize"], "x", "spec.blockSize", "expected an integer, got 'x'"),
        ("IPPool", ["spec", "blockSize"], True, "spec.blockSize", "expected an integer"),
        ("IPPool", ["spec", "blockSize"], 26.5, "spec.blockSize", "expected an integer"),
        ("IPPool", ["spec", "natOutgoing"], "yes", "spec.natOutgoing", "expected true or false"),
        ("IPPool", ["spec", "cidr"], ["10.0.0.0/8"], "spec.cidr", "expected a string, got a list"),
        ("Node", ["spec", "bgp"], "10.0.0.1", "spec.bgp", "expected a mapping, got '10.0.0.1'"),
        ("Node", ["spec", "bgp", "asNumber"], "64512", "spec.bgp.asNumber", "expected an integer"),
        ("Node", ["spec", "bgp", "ipv4Addr"], "1.2.3.4/24", "spec.bgp.ipv4Addr", "unknown field"),
        ("Node", ["metadata", "labels", "rack"], 7, "metadata.labels.rack", "(quote the value)"),
        ("Node", ["metadata", "generation"], 3, "metadata.generation", "unknown field"),
        (
            "WorkloadEndpoint",
            ["spec", "ipNetworks"],
            ["10.65.0.1/32", 5],
            "spec.ipNetworks[1]",
            "expected a string, got 5",
        ),
        (
            "BGPConfiguration",
            ["spec", "serviceClusterIPs"],
            "10.96.0.0/12",
            "spec.serviceClusterIPs",
            "expected a list",
        ),
        ("IPAMConfiguration", ["spec"], ["x"], "spec", "expected a mapping, got a list"),
        ("IPAMConfiguration", ["spec"], [], "spec", "expected a mapping, got a list"),
        ("IPAMConfiguration", ["spec"], "", "spec", "expected a mapping, got ''"),
    ],
)
def test_wrong_types_are_rejected_naming_the_path(
    kind: str, path: list[str], value: object, field: str, reason: str
) -> None:
    doc = _doc(kind)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    err = _error(doc)
    assert err.field == field
    assert reason in err.reason


def test_required_fields() -> None:
    doc = _doc("IPPool")
    del doc["spec"]["cidr"]
    assert (_error(doc).field, _error(doc).reason) == ("spec.cidr", "required field is missing")
    doc = _doc("IPPool")
    del doc["spec"]
    assert _error(doc).field == "spec.cidr"
    doc = _doc("IPPool")
    del doc["metadata"]["name"]
    assert _error(doc).field == "metadata.name"
    assert _error(doc).resource == "IPPool(?)"
    doc = _doc("IPPool")
    del doc["metadata"]
    assert _error(doc).field == "metadata"


def test_api_version_and_kind_are_checked() -> None:
    doc = _doc("IPPool")
    doc["apiVersion"] = "projectcalico.org/v3"
    err = _error(doc)
    assert err.field == "apiVersion"
    assert "expected 'tabby.dev/v1'" in err.reason and "Calico" in err.reason
    doc = _doc("IPPool")
    del doc["apiVersion"]
    assert _error(doc).field == "apiVersion"
    doc = _doc("IPPool")
    doc["kind"] = "IpPool"
    assert _error(doc).reason == "unknown kind 'IpPool' (did you mean 'IPPool'?)"
    doc["kind"] = "Service"
    assert "expected one of BGPConfiguration" in _error(doc).reason
    doc = _doc("IPPool")
    doc["status"] = {}
    assert (_error(doc).field, _error(doc).reason) == ("status", "unknown field")


def test_parse_does_not_modify_its_input() -> None:
    doc = _doc("Node")
    before = json.dumps(doc, sort_keys=True)
    parse_resource(doc)
    assert json.dumps(doc, sort_keys=True) == before


def test_non_mapping_document() -> None:
    with pytest.raises(ValidationError, match="expected a resource mapping, got 'x'"):
        parse_resource("x")  # type: ignore[arg-type]


# --- documents ---------------------------------------------------------------------


def test_load_multi_document_yaml_skips_empty_documents() -> None:
    text = "---\n" + DOCS["IPPool"] + "---\n---\n" + DOCS["Node"] + "...\n"
    docs = load_documents(text)
    assert [d["kind"] for d in docs] == ["IPPool", "Node"]


def test_load_json_object_list_and_kind_list() -> None:
    pool, node = _doc("IPPool"), _doc("Node")
    assert load_documents(json.dumps(pool)) == [pool]
    assert load_documents(json.dumps([pool, node])) == [pool, node]
    assert load_documents(json.dumps({"kind": "List", "items": [pool, node]})) == [pool, node]
    listed = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [pool, node]})
    assert load_documents(listed) == [pool, node]
    assert load_documents("") == [] and load_documents("  \n# comment only\n") == []


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        (DOCS["IPPool"] + "---\njust a string\n", "documents[1]", "got 'just a string'"),
        ("---\n" + DOCS["IPPool"] + "---\n---\n42\n", "documents[2]", "got 42"),
        ('[{"kind": "IPPool"}, 3]', "documents[1]", "got 3"),
        ('[[{"kind": "IPPool"}]]', "documents[0]", "got a list"),
        ('{"kind": "List", "items": {}}', "documents[0].items", "needs an 'items' list"),
        ("kind: List\nitems: [{kind: IPPool}, x]\n", "documents[0].items[1]", "got 'x'"),
    ],
)
def test_load_rejects_non_resources_naming_the_document_index(
    text: str, field: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        load_documents(text)
    assert exc.value.field == field
    assert reason in exc.value.reason


def test_syntax_errors_name_line_and_column() -> None:
    with pytest.raises(ValidationError, match=r"invalid YAML at line 4, column 7: mapping"):
        load_documents("kind: IPPool\nspec:\n  cidr: x\n   bad: y\n")
    with pytest.raises(ValidationError, match=r"invalid JSON at line 1, column 19"):
        load_documents('{"kind": "IPPool" "x": 1}')


def test_flow_style_yaml_starting_with_a_brace_still_loads() -> None:
    assert load_documents("{kind: IPPool, metadata: {name: p}}") == [
        {"kind": "IPPool", "metadata": {"name": "p"}}
    ]


def test_dump_formats() -> None:
    pool, node = parse_resource(_doc("IPPool")), parse_resource(_doc("Node"))
    one = json.loads(dump_documents([pool], "json"))
    assert one["kind"] == "IPPool"
    several = json.loads(dump_documents([pool, node], "json"))
    assert several["kind"] == "List" and [i["kind"] for i in several["items"]] == [
        "IPPool",
        "Node",
    ]
    text = dump_documents([pool, node], "yaml")
    assert text.count("\n---\n") == 1
    assert text.startswith("apiVersion: tabby.dev/v1\nkind: IPPool\n")
    # Strings YAML would read as other types stay strings (labels, resourceVersion).
    assert "resourceVersion: '1234'" in text
    assert "route-reflector: 'true'" in text
    with pytest.raises(ValueError, match="unknown output format 'xml'"):
        dump_documents([pool], "xml")


def test_parse_documents_reports_the_failing_resource() -> None:
    text = DOCS["IPPool"] + "---\n" + DOCS["Node"].replace("asNumber: 64512", "asNumber: lots")
    with pytest.raises(ValidationError) as exc:
        parse_documents(text)
    assert str(exc.value) == "Node(node-1): spec.bgp.asNumber: expected an integer, got 'lots'"


# --- round trip over generated resources --------------------------------------------

# Strings YAML or JSON could misread if written unquoted, plus ordinary ones.
TRICKY_STRINGS = ["", "true", "no", "null", "~", "0123", "1e3", "2024-05-01", "a: b", "#x", "é"]


def _random_value(rng: random.Random, tp: object) -> object:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if rng.random() < 0.3:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _random_value(rng, inner)
    if tp is str:
        return rng.choice([*TRICKY_STRINGS, f"v{rng.randrange(1000)}"])
    if tp is bool:
        return rng.random() < 0.5
    if tp is int:
        return rng.choice([0, 1, 26, 65535, 4294967295, -1])
    if origin is list:
        return [_random_value(rng, str) for _ in range(rng.randrange(3))]
    if origin is dict:
        return {f"k{i}": _random_value(rng, str) for i in range(rng.randrange(3))}
    assert dataclasses.is_dataclass(tp), tp
    hints = typing.get_type_hints(tp)
    return tp(**{f.name: _random_value(rng, hints[f.name]) for f in dataclasses.fields(tp)})


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_generated_resources_of_every_kind_round_trip(fmt: str) -> None:
    """parse(dump(r)) == r for values that look like other YAML types or are empty."""
    rng = random.Random(4242)
    for _ in range(40):
        for kind in r.ALL_KINDS:
            meta = _random_value(rng, r.ObjectMeta)
            meta.name = meta.name or "n"  # required: parse rejects a missing name
            spec = _random_value(rng, typing.get_type_hints(kind)["spec"])
            res = kind(metadata=meta, spec=spec)  # type: ignore[call-arg]
            assert parse_resource(resource_to_dict(res)) == res, res
            assert parse_documents(dump_documents([res], fmt)) == [res]
