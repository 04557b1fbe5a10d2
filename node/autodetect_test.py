"""Address autodetection, as an operator configures it with IP_AUTODETECTION_METHOD."""

from __future__ import annotations

import ipaddress
import secrets
import subprocess

import pytest

from node.autodetect import AutodetectError, InterfaceAddresses, autodetect, choose

IF = ipaddress.ip_interface

HOST = [
    InterfaceAddresses("lo", (IF("127.0.0.1/8"), IF("::1/128"))),
    InterfaceAddresses("docker0", (IF("172.17.0.1/16"),)),
    InterfaceAddresses("cali1234567890a", (IF("169.254.1.1/32"),)),
    InterfaceAddresses("eth0", (IF("fe80::1/64"), IF("10.0.1.5/24"), IF("fd00::5/64"))),
    InterfaceAddresses("eth1", (IF("192.168.50.7/24"),)),
]


def test_first_found_skips_loopback_container_and_link_local_interfaces():
    assert choose("first-found", HOST) == IF("10.0.1.5/24")
    assert choose("first-found", HOST, version=6) == IF("fd00::5/64")


def test_interface_regex_picks_the_named_interface():
    assert choose("interface=eth1", HOST) == IF("192.168.50.7/24")
    assert choose("interface=eth.*", HOST) == IF("10.0.1.5/24")


def test_skip_interface_excludes_matches():
    assert choose("skip-interface=eth0|lo|docker0|cali.*", HOST) == IF("192.168.50.7/24")


def test_cidr_picks_the_address_inside():
    assert choose("cidr=192.168.0.0/16", HOST) == IF("192.168.50.7/24")
    assert choose("cidr=10.9.0.0/16, 10.0.0.0/8", HOST) == IF("10.0.1.5/24")


def test_can_reach_keeps_the_prefix_length_of_the_source_interface():
    assert choose("can-reach=192.168.50.1", HOST, reach_source=IF("192.168.50.7")) == IF(
        "192.168.50.7/24"
    )


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("nearest", "unknown autodetection method"),
        ("interface=", "needs a regular expression"),
        ("interface=(", "bad regular expression"),
        ("cidr=10.0.0.0/33", "cidr=10.0.0.0/33"),
        ("interface=wlan.*", "no IPv4 address found"),
        ("can-reach=10.99.0.1", "no route"),
    ],
)
def test_bad_methods_and_no_match_are_clear_errors(method, message):
    with pytest.raises(AutodetectError, match=message.replace("(", r"\(")):
        choose(method, HOST)


@pytest.fixture()
def netns():
    name = f"tad-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_autodetect_reads_the_kernel_of_a_namespace(netns):
    def ip(*args: str) -> None:
        subprocess.run(["ip", "-n", netns, *args], check=True)

    ip("link", "add", "eth7", "type", "veth", "peer", "name", "cali7")
    ip("addr", "add", "10.44.0.2/24", "dev", "eth7")
    ip("addr", "add", "169.254.1.1/32", "dev", "cali7")
    ip("link", "set", "eth7", "up")
    ip("link", "set", "cali7", "up")
    assert autodetect("first-found", netns=netns) == IF("10.44.0.2/24")
    assert autodetect("can-reach=10.44.0.9", netns=netns) == IF("10.44.0.2/24")
    with pytest.raises(AutodetectError):
        autodetect("interface=eth9", netns=netns)
