"""Configuration parsing: what an operator's YAML turns into, and errors naming the field."""

from __future__ import annotations

import ipaddress

import pytest

from bgp.daemon.config import ConfigError, load_config, parse_config
from bgp.wire.types import Prefix

FULL = """
localAS: 65000
routerID: 10.0.0.1
listenAddress: "::"
listenPort: 1179
clusterID: 1.2.3.4
holdTime: 9
peers:
  - address: 10.0.0.2
    asNumber: 65001
    password: s3cret
    multihop: 3
    passive: true
    routeReflectorClient: true
    keepOriginalNextHop: true
    maxPrefixes: 100
    importPrefixes: ["10.0.0.0/8", {cidr: "0.0.0.0/0", action: reject}]
    exportPrefixes: [{cidr: "10.244.0.0/16", match: orlonger}]
listenRanges:
  - {cidr: 10.1.0.0/24, asNumber: 65002, password: x}
originate:
  - 10.244.1.0/26
  - {prefix: "fd00::/64", communities: ["65000:1"], med: 5}
gracefulRestart: {enabled: true, restartTime: 30}
adminSocket: /run/tabby-bgpd.sock
"""


def test_full_config_round_trip(tmp_path):
    path = tmp_path / "bgpd.yaml"
    path.write_text(FULL)
    c = load_config(str(path))
    assert (c.local_as, str(c.router_id), c.listen_port, c.hold_time) == (
        65000,
        "10.0.0.1",
        1179,
        9,
    )
    p = c.peers[0]
    assert (p.password, p.multihop_ttl, p.passive, p.route_reflector_client) == (
        "s3cret",
        3,
        True,
        True,
    )
    assert p.keep_original_next_hop and p.max_prefixes == 100
    assert p.import_filter.allows(Prefix(ipaddress.ip_network("10.5.0.0/16")))
    assert not p.import_filter.allows(Prefix(ipaddress.ip_network("192.168.0.0/16")))
    assert p.export_filter.allows(Prefix(ipaddress.ip_network("10.244.3.0/26")))
    assert not p.export_filter.allows(Prefix(ipaddress.ip_network("10.245.0.0/26")))
    assert c.listen_ranges[0].as_number == 65002
    assert c.originate[1].communities == (65000 << 16 | 1,) and c.originate[1].med == 5
    assert c.graceful_restart.enabled and c.graceful_restart.restart_time == 30
    assert str(c.cluster_id) == "1.2.3.4" and c.admin_socket == "/run/tabby-bgpd.sock"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"routerID": "1.1.1.1"}, "localAS: required"),
        ({"localAS": 0, "routerID": "1.1.1.1"}, "localAS: must be an AS number"),
        ({"localAS": 1, "routerID": "fd00::1"}, "routerID: must be an IPv4 address"),
        ({"localAS": 1, "routerID": "1.1.1.1", "holdTime": 2}, "holdTime: must be 0 or at least 3"),
        ({"localAS": 1, "routerID": "1.1.1.1", "bogus": 1}, "bogus: unknown field"),
        (
            {"localAS": 1, "routerID": "1.1.1.1", "peers": [{"address": "10.0.0.2"}]},
            "peers[0].asNumber: required",
        ),
        (
            {"localAS": 1, "routerID": "1.1.1.1", "peers": [{"address": "x", "asNumber": 2}]},
            "peers[0].address:",
        ),
        (
            {
                "localAS": 1,
                "routerID": "1.1.1.1",
                "peers": [{"address": "10.0.0.2", "asNumber": 2, "importPrefixes": ["10.0.0.1/8"]}],
            },
            "peers[0].importPrefixes:",
        ),
        (
            {
                "localAS": 1,
                "routerID": "1.1.1.1",
                "peers": [
                    {"address": "10.0.0.2", "asNumber": 2},
                    {"address": "10.0.0.2", "asNumber": 3},
                ],
            },
            "peers[1].address: duplicate",
        ),
        (
            {
                "localAS": 1,
                "routerID": "1.1.1.1",
                "originate": [{"prefix": "10.0.0.0/8", "communities": ["1"]}],
            },
            "originate[0].communities[0]",
        ),
        (
            {"localAS": 1, "routerID": "1.1.1.1", "listenRanges": [{"cidr": "10.0.0.0/8"}]},
            "listenRanges[0].asNumber",
        ),
    ],
)
def test_config_errors_name_the_field(doc, message):
    with pytest.raises(ConfigError) as e:
        parse_config(doc)
    assert message in str(e.value)


def test_bad_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("localAS: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(path))
