"""Result JSON per spec version, and reading prevResult back."""

from __future__ import annotations

import ipaddress

import pytest

from cni import result
from cni.errors import CNIError

RES = result.Result(
    interfaces=[
        result.Interface("cali0123456789a", "aa:bb:cc:dd:ee:01"),
        result.Interface("eth0", "aa:bb:cc:dd:ee:02", "/var/run/netns/p", 1400),
    ],
    ips=[
        result.IPConfig(ipaddress.ip_interface("10.0.0.5/32"), "169.254.1.1", 1),
        result.IPConfig(ipaddress.ip_interface("fd00::5/128"), "fe80::1", 1),
    ],
    routes=[result.Route("0.0.0.0/0", "169.254.1.1")],
)


def test_1_1_0_has_mtu_and_no_ip_version():
    out = result.render(RES, "1.1.0")
    assert out["interfaces"][1] == {
        "name": "eth0",
        "mac": "aa:bb:cc:dd:ee:02",
        "mtu": 1400,
        "sandbox": "/var/run/netns/p",
    }
    assert out["ips"][0] == {"address": "10.0.0.5/32", "interface": 1, "gateway": "169.254.1.1"}
    assert out["dns"] == {} and out["cniVersion"] == "1.1.0"


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0"])
def test_pre_1_0_results_carry_ip_version_and_no_mtu(version):
    out = result.render(RES, version)
    assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
    assert "mtu" not in out["interfaces"][1]


def test_ipam_result_has_no_interfaces():
    out = result.render(
        result.Result(ips=[result.IPConfig(ipaddress.ip_interface("10.0.0.5/32"))]), "1.0.0"
    )
    assert "interfaces" not in out and out["ips"] == [{"address": "10.0.0.5/32"}]


def test_prev_result_round_trip_and_sandbox_lookup():
    back = result.parse(result.render(RES, "0.4.0"))
    index, iface = result.sandbox_interface(back, "eth0")
    assert index == 1 and iface.mac == "aa:bb:cc:dd:ee:02"
    assert [str(a) for a in result.addresses_of(back, 1)] == ["10.0.0.5/32", "fd00::5/128"]
    assert result.sandbox_interface(back, "net1") is None


@pytest.mark.parametrize(
    ("prev", "needle"),
    [
        ({"ips": [{"address": "nope"}]}, "not a CIDR"),
        ({"interfaces": [], "ips": [{"address": "10.0.0.1/32", "interface": 3}]}, "out of range"),
        ({"interfaces": "eth0"}, "interfaces must be a list"),
    ],
)
def test_bad_prev_result_is_error_7(prev, needle):
    with pytest.raises(CNIError) as info:
        result.parse(prev)
    assert info.value.code == 7 and needle in info.value.msg
