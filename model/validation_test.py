"""Every validation rule, each failing with a message that names the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from model import resources as r
from model.codec import parse_resource
from model.errors import ValidationError
from model.validation import check_pool_overlap, validate

BASE: dict[str, dict[str, Any]] = {
    "IPPool": {"metadata": {"name": "pool-a"}, "spec": {"cidr": "10.65.0.0/16"}},
    "Node": {
        "metadata": {"name": "node-1"},
        "spec": {"bgp": {"ipv4Address": "10.0.1.11/24"}},
    },
    "BGPPeer": {
        "metadata": {"name": "tor"},
        "spec": {"peerIP": "192.0.2.1", "asNumber": 65001},
    },
    "BGPConfiguration": {"metadata": {"name": "default"}, "spec": {"asNumber": 64512}},
    "FelixConfiguration": {"metadata": {"name": "default"}, "spec": {}},
    "IPAMConfiguration": {"metadata": {"name": "default"}, "spec": {}},
    "WorkloadEndpoint": {
        "metadata": {"name": "node--1-k8s-web-eth0", "namespace": "default"},
        "spec": {"node": "node-1", "ipNetworks": ["10.65.0.5/32"]},
    },
}


def make(kind: str, spec: dict[str, Any] | None = None, **metadata: Any) -> r.Resource:
    """The BASE resource of ``kind`` with spec keys/metadata overridden (None deletes)."""
    doc = copy.deepcopy(BASE[kind])
    for key, value in (spec or {}).items():
        doc["spec"][key] = value
    doc["metadata"].update(metadata)
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    doc["metadata"] = {k: v for k, v in doc["metadata"].items() if v is not None}
    return parse_resource({"apiVersion": "tabby.dev/v1", "kind": kind, **doc})


def rejects(res: r.Resource, field: str, *reason_parts: str) -> ValidationError:
    with pytest.raises(ValidationError) as exc:
        validate(res)
    err = exc.value
    assert err.field == field, str(err)
    for part in reason_parts:
        assert part in err.reason, str(err)
    assert str(err).startswith(f"{err.resource}: {field}: ")
    return err


@pytest.mark.parametrize("kind", sorted(BASE))
def test_minimal_valid_resource_of_every_kind(kind: str) -> None:
    validate(make(kind))


def test_validate_returns_a_copy_and_leaves_the_input_alone() -> None:
    pool = make("IPPool")
    out = validate(pool)
    assert out is not pool and pool.spec.block_size is None and out.spec.block_size == 26


# --- metadata -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Pool-A", "pool_a", "-pool", "pool-", "pool a", "a" * 254, "pool/a", ""]
)
def test_name_must_be_a_dns1123_subdomain(name: str) -> None:
    rejects(make("IPPool", name=name), "metadata.name")


@pytest.mark.parametrize("name", ["a", "pool-a", "pool.a.b", "0pool", "a" * 253])
def test_valid_names(name: str) -> None:
    validate(make("IPPool", name=name))


def test_namespace_required_for_namespaced_kinds() -> None:
    rejects(make("WorkloadEndpoint", namespace=None), "metadata.namespace", "required")


def test_namespace_must_be_a_dns1123_label() -> None:
    rejects(make("WorkloadEndpoint", namespace="kube.system"), "metadata.namespace", "label")


def test_namespace_forbidden_for_cluster_scoped_kinds() -> None:
    err = rejects(make("IPPool", namespace="default"), "metadata.namespace", "not namespaced")
    assert str(err) == (
        "IPPool(default/pool-a): metadata.namespace: must not be set: IPPool is not namespaced"
    )


@pytest.mark.parametrize(
    ("labels", "field"),
    [
        ({"bad key": "x"}, "metadata.labels.bad key"),
        ({"-key": "x"}, "metadata.labels.-key"),
        ({"Example.COM/key": "x"}, "metadata.labels.Example.COM/key"),
        ({"/key": "x"}, "metadata.labels./key"),
        ({"k" * 64: "x"}, "metadata.labels." + "k" * 64),
        ({"key": "has space"}, "metadata.labels.key"),
        ({"key": "v" * 64}, "metadata.labels.key"),
        ({"key": "-v"}, "metadata.labels.key"),
    ],
)
def test_labels_keys_and_values_must_be_kubernetes_style(labels: dict, field: str) -> None:
    rejects(make("Node", labels=labels), field)


def test_valid_labels_and_annotation_keys() -> None:
    validate(
        make(
            "Node",
            labels={"kubernetes.io/hostname": "node-1", "route-reflector": "true", "x": ""},
            annotations={"tabby.dev/note": "anything, with spaces: fine"},
        )
    )
    rejects(make("Node", annotations={"bad key": "x"}), "metadata.annotations.bad key")


# --- IPPool -------------------------------------------------------------------------


def test_pool_default_block_sizes() -> None:
    assert validate(make("IPPool")).spec.block_size == 26
    v6 = validate(make("IPPool", {"cidr": "fd00:10:65::/48"}))
    assert v6.spec.block_size == 122


@pytest.mark.parametrize("cidr", ["10.65.0.0", "10.65.0.0/33", "not-a-cidr", "fd00::/129", ""])
def test_pool_cidr_must_be_a_network(cidr: str) -> None:
    rejects(make("IPPool", {"cidr": cidr}), "spec.cidr", repr(cidr))


def test_pool_cidr_with_host_bits_suggests_the_network() -> None:
    err = rejects(make("IPPool", {"cidr": "10.65.1.0/16"}), "spec.cidr", "host bits")
    assert "did you mean '10.65.0.0/16'?" in err.reason


def test_pool_cidr_is_normalised() -> None:
    out = validate(make("IPPool", {"cidr": "FD00:0010:0065:0000::/64"}))
    assert out.spec.cidr == "fd00:10:65::/64"


@pytest.mark.parametrize("cidr", ["169.254.0.0/16", "127.0.0.0/24", "224.0.0.0/8", "fe80::/64"])
def test_pool_must_not_cover_link_local_loopback_or_multicast(cidr: str) -> None:
    rejects(make("IPPool", {"cidr": cidr, "blockSize": None}), "spec.cidr", "overlaps the")


@pytest.mark.parametrize(
    ("cidr", "block", "ok"),
    [
        ("10.0.0.0/8", 20, True),
        ("10.0.0.0/8", 32, True),
        ("10.0.0.0/8", 19, False),
        ("10.0.0.0/8", 33, False),
        ("fd00::/48", 116, True),
        ("fd00::/48", 128, True),
        ("fd00::/48", 115, False),
        ("fd00::/48", 26, False),
    ],
)
def test_pool_block_size_range_per_family(cidr: str, block: int, ok: bool) -> None:
    res = make("IPPool", {"cidr": cidr, "blockSize": block})
    if ok:
        assert validate(res).spec.block_size == block
    else:
        family = "IPv4" if "." in cidr else "IPv6"
        lo, hi = (20, 32) if family == "IPv4" else (116, 128)
        err = rejects(res, "spec.blockSize")
        assert err.reason == f"must be between {lo} and {hi} for an {family} pool"


def test_pool_block_must_not_be_larger_than_the_pool() -> None:
    rejects(make("IPPool", {"cidr": "10.65.0.0/28"}), "spec.blockSize", "pool prefix length 28")
    validate(make("IPPool", {"cidr": "10.65.0.0/28", "blockSize": 28}))


@pytest.mark.parametrize("field", ["vxlanMode", "ipipMode"])
def test_pool_encapsulation_modes(field: str) -> None:
    for mode in ("Always", "CrossSubnet", "Never"):
        validate(make("IPPool", {field: mode}))
    err = rejects(make("IPPool", {field: "always"}), f"spec.{field}")
    assert err.reason == "'always' must be one of Never, Always, CrossSubnet"


def test_pool_cannot_use_vxlan_and_ipip_together() -> None:
    rejects(
        make("IPPool", {"vxlanMode": "Always", "ipipMode": "CrossSubnet"}),
        "spec.ipipMode",
        "both VXLAN and IPIP",
    )


def test_ipip_is_ipv4_only() -> None:
    rejects(make("IPPool", {"cidr": "fd00::/48", "ipipMode": "Always"}), "spec.ipipMode", "IPv4")
    validate(make("IPPool", {"cidr": "fd00::/48", "vxlanMode": "Always"}))


def test_pool_node_selector_must_parse() -> None:
    err = rejects(make("IPPool", {"nodeSelector": "zone == "}), "spec.nodeSelector")
    assert "invalid selector: unexpected end of selector at position 8" in err.reason
    assert validate(make("IPPool", {"nodeSelector": "  "})).spec.node_selector == "all()"


# --- overlap --------------------------------------------------------------------------


def _pool(name: str, cidr: str) -> r.IPPool:
    return r.IPPool(r.ObjectMeta(name=name), r.IPPoolSpec(cidr=cidr))


def test_overlapping_pools_are_rejected_naming_the_other_pool() -> None:
    with pytest.raises(ValidationError) as exc:
        check_pool_overlap(
            _pool("new", "10.65.128.0/17"),
            [_pool("v6", "fd00::/48"), _pool("old", "10.65.0.0/16")],
        )
    assert exc.value.field == "spec.cidr"
    assert (
        str(exc.value)
        == "IPPool(new): spec.cidr: 10.65.128.0/17 overlaps IPPool(old) (10.65.0.0/16)"
    )


def test_overlap_check_of_an_invalid_pool_names_it() -> None:
    with pytest.raises(ValidationError) as exc:
        check_pool_overlap(_pool("bad", "10.65.0.1/16"), [])
    assert str(exc.value).startswith("IPPool(bad): spec.cidr: '10.65.0.1/16' has host bits set")


def test_disjoint_pools_and_the_same_pool_are_fine() -> None:
    check_pool_overlap(
        _pool("a", "10.65.0.0/16"),
        [_pool("a", "10.65.0.0/17"), _pool("b", "10.66.0.0/16"), _pool("c", "fd00::/48")],
    )


# --- Node -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bgp", "field", "reason"),
    [
        ({"ipv4Address": "10.0.1.11"}, "spec.bgp.ipv4Address", "with prefix length"),
        ({"ipv4Address": "fd00::1/64"}, "spec.bgp.ipv4Address", "IPv4"),
        ({"ipv4Address": "10.0.1.300/24"}, "spec.bgp.ipv4Address", "IPv4"),
        ({"ipv6Address": "10.0.1.11/24"}, "spec.bgp.ipv6Address", "IPv6"),
        ({"ipv6Address": "fd00::1"}, "spec.bgp.ipv6Address", "with prefix length"),
        ({"asNumber": 0}, "spec.bgp.asNumber", "between 1 and 4294967295"),
        ({"asNumber": 4294967296}, "spec.bgp.asNumber", "between 1 and 4294967295"),
        ({"routeReflectorClusterID": "1"}, "spec.bgp.routeReflectorClusterID", "dotted quad"),
        ({"routeReflectorClusterID": "1.2.3.256"}, "spec.bgp.routeReflectorClusterID", ""),
    ],
)
def test_node_bgp_fields(bgp: dict, field: str, reason: str) -> None:
    rejects(make("Node", {"bgp": {"ipv4Address": "10.0.1.11/24", **bgp}}), field, reason)


def test_node_valid_bgp_and_tunnel_fields() -> None:
    validate(
        make(
            "Node",
            {
                "bgp": {
                    "ipv4Address": "10.0.1.11/24",
                    "ipv6Address": "fd00:1::11/64",
                    "asNumber": 4200000000,
                    "routeReflectorClusterID": "224.0.0.1",
                },
                "ipv4VXLANTunnelAddr": "10.65.12.0",
                "vxlanTunnelMACAddr": "66:7A:0b:3c:11:01",
                "ipv4IPIPTunnelAddr": "10.65.12.1",
            },
        )
    )
    validate(make("Node", {"bgp": None}))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"ipv4VXLANTunnelAddr": "10.65.12.0/32"}, "spec.ipv4VXLANTunnelAddr"),
        ({"ipv4VXLANTunnelAddr": "fd00::1"}, "spec.ipv4VXLANTunnelAddr"),
        ({"ipv4IPIPTunnelAddr": "x"}, "spec.ipv4IPIPTunnelAddr"),
        ({"vxlanTunnelMACAddr": "66:7a:0b:3c:11"}, "spec.vxlanTunnelMACAddr"),
        ({"vxlanTunnelMACAddr": "66:7a:0b:3c:11:zz"}, "spec.vxlanTunnelMACAddr"),
        ({"vxlanTunnelMACAddr": "66:7a-0b:3c:11:01"}, "spec.vxlanTunnelMACAddr"),
    ],
)
def test_node_tunnel_fields(spec: dict, field: str) -> None:
    rejects(make("Node", spec), field)


# --- BGPPeer --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "peer_ip", ["192.0.2.1", "192.0.2.1:1179", "2001:db8::1", "[2001:db8::1]:179"]
)
def test_peer_ip_forms(peer_ip: str) -> None:
    validate(make("BGPPeer", {"peerIP": peer_ip}))


@pytest.mark.parametrize(
    ("peer_ip", "reason"),
    [
        ("router.example", "not an IP address"),
        ("192.0.2.1:0", "port 0"),
        ("192.0.2.1:70000", "port 70000"),
        ("192.0.2.1:bgp", "not a number"),
        ("[2001:db8::1]", "'[ipv6]:port'"),
        ("[192.0.2.1]:179", "brackets"),
        ("192.0.2.1/32", "not an IP address"),
    ],
)
def test_peer_ip_rejected(peer_ip: str, reason: str) -> None:
    rejects(make("BGPPeer", {"peerIP": peer_ip}), "spec.peerIP", reason)


def test_peer_needs_exactly_one_of_peer_ip_and_peer_selector() -> None:
    rejects(make("BGPPeer", {"peerIP": None, "asNumber": None}), "spec.peerIP", "exactly one")
    rejects(make("BGPPeer", {"peerSelector": "has(rr)"}), "spec.peerIP", "exactly one")


def test_peer_node_and_node_selector_are_exclusive() -> None:
    rejects(
        make("BGPPeer", {"node": "node-1", "nodeSelector": "has(x)"}),
        "spec.nodeSelector",
        "cannot both",
    )
    validate(make("BGPPeer", {"node": "node-1"}))


def test_peer_as_number() -> None:
    rejects(make("BGPPeer", {"asNumber": None}), "spec.asNumber", "required when peerIP")
    rejects(make("BGPPeer", {"asNumber": 0}), "spec.asNumber", "between 1 and")
    rejects(
        make("BGPPeer", {"peerIP": None, "peerSelector": "has(rr)"}),
        "spec.asNumber",
        "must not be set with peerSelector",
    )


def test_peer_selectors_must_parse() -> None:
    rejects(
        make("BGPPeer", {"peerIP": None, "asNumber": None, "peerSelector": "rr = 'x'"}),
        "spec.peerSelector",
        "position 3",
    )
    rejects(make("BGPPeer", {"nodeSelector": "has(x"}), "spec.nodeSelector", "invalid selector")
    rejects(make("BGPPeer", {"node": "Node_1"}), "spec.node", "DNS-1123")


def test_peer_max_restart_time_is_a_duration() -> None:
    validate(make("BGPPeer", {"maxRestartTime": "2m"}))
    rejects(make("BGPPeer", {"maxRestartTime": "120"}), "spec.maxRestartTime", "'120'")
    rejects(make("BGPPeer", {"maxRestartTime": "-1s"}), "spec.maxRestartTime", "negative")


def test_peer_password_fits_tcp_md5() -> None:
    validate(make("BGPPeer", {"password": "x" * 80}))
    rejects(make("BGPPeer", {"password": "x" * 81}), "spec.password", "80 bytes")


# --- BGPConfiguration ---------------------------------------------------------------


def test_bgp_configuration_fields() -> None:
    validate(make("BGPConfiguration", {"listenPort": 1179, "serviceClusterIPs": ["10.96.0.0/12"]}))
    validate(make("BGPConfiguration", name="node.node-1"))
    rejects(make("BGPConfiguration", {"asNumber": 0}), "spec.asNumber", "between 1 and")
    rejects(make("BGPConfiguration", {"listenPort": 0}), "spec.listenPort", "port 0")
    rejects(make("BGPConfiguration", {"listenPort": 65536}), "spec.listenPort", "65535")
    rejects(
        make("BGPConfiguration", {"logSeverityScreen": "Verbose"}),
        "spec.logSeverityScreen",
        "Debug, Info, Warning, Error, Fatal",
    )
    rejects(
        make("BGPConfiguration", {"serviceClusterIPs": ["10.96.0.1/12"]}),
        "spec.serviceClusterIPs[0]",
        "host bits",
    )
    rejects(make("BGPConfiguration", name="cluster"), "metadata.name", "'default' or 'node.")


# --- FelixConfiguration -------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "node.node-1", "node.a.b"])
def test_felix_configuration_names(name: str) -> None:
    validate(make("FelixConfiguration", name=name))


@pytest.mark.parametrize("name", ["global", "node-1", "nodes.node-1"])
def test_felix_configuration_bad_names(name: str) -> None:
    rejects(make("FelixConfiguration", name=name), "metadata.name", "'default' or 'node.")
    rejects(make("FelixConfiguration", name="node."), "metadata.name")


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ({"vxlanVNI": 0}, "spec.vxlanVNI", "1..16777215"),
        ({"vxlanVNI": 16777216}, "spec.vxlanVNI", "1..16777215"),
        ({"vxlanPort": 0}, "spec.vxlanPort", "port 0"),
        ({"healthPort": 70000}, "spec.healthPort", "port 70000"),
        ({"prometheusMetricsPort": -1}, "spec.prometheusMetricsPort", "port -1"),
        ({"routeRefreshInterval": "90"}, "spec.routeRefreshInterval", "invalid duration"),
        ({"routeRefreshInterval": "0s"}, "spec.routeRefreshInterval", "greater than zero"),
        ({"logSeverityScreen": "info"}, "spec.logSeverityScreen", "one of"),
        ({"deviceRouteProtocol": 0}, "spec.deviceRouteProtocol", "between 1 and 255"),
        ({"deviceRouteProtocol": 256}, "spec.deviceRouteProtocol", "between 1 and 255"),
        ({"interfacePrefix": ""}, "spec.interfacePrefix", "15 characters"),
        ({"interfacePrefix": "toolongpfx"}, "spec.interfacePrefix", "15 characters"),
        ({"vxlanMTU": 20}, "spec.vxlanMTU", "68..65535"),
        ({"ipipMTU": 70000}, "spec.ipipMTU", "68..65535"),
    ],
)
def test_felix_configuration_fields(spec: dict, field: str, reason: str) -> None:
    rejects(make("FelixConfiguration", spec), field, reason)


def test_felix_configuration_edge_values_are_valid() -> None:
    validate(
        make(
            "FelixConfiguration",
            {"vxlanVNI": 16777215, "vxlanPort": 65535, "vxlanMTU": 1450, "ipipMTU": 0},
        )
    )


# --- IPAMConfiguration ----------------------------------------------------------------


def test_ipam_configuration_must_be_named_default() -> None:
    rejects(make("IPAMConfiguration", name="node.node-1"), "metadata.name", "must be 'default'")
    rejects(
        make("IPAMConfiguration", {"maxBlocksPerHost": -1}), "spec.maxBlocksPerHost", "positive"
    )


# --- WorkloadEndpoint ---------------------------------------------------------------


def test_workload_endpoint_fields() -> None:
    rejects(make("WorkloadEndpoint", {"node": None}), "spec.node", "required")
    rejects(
        make("WorkloadEndpoint", {"ipNetworks": ["10.65.0.5/32", "10.65.0.6"]}),
        "spec.ipNetworks[1]",
        "not a CIDR",
    )
    err = rejects(
        make("WorkloadEndpoint", {"interfaceName": "cali1234567890ab"}),
        "spec.interfaceName",
        "at most 15",
    )
    assert err.resource == "WorkloadEndpoint(default/node--1-k8s-web-eth0)"
    rejects(make("WorkloadEndpoint", {"interfaceName": "cali/x"}), "spec.interfaceName")
    rejects(make("WorkloadEndpoint", {"mac": "zz"}), "spec.mac", "MAC")
    validate(
        make(
            "WorkloadEndpoint",
            {
                "interfaceName": "cali1234567890a",
                "mac": "0e:8a:1b:2c:3d:4e",
                "ipNetworks": ["10.65.0.5/32", "fd00:10:65::5/128"],
            },
        )
    )
