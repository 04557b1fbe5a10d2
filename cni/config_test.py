"""Parsing the runtime's environment and config: the spec's rules and error codes."""

from __future__ import annotations

import pytest

from cni import config
from cni.errors import CNIError

ADD_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "abc123",
    "CNI_NETNS": "/var/run/netns/x",
    "CNI_IFNAME": "eth0",
    "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0",
    "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
}
CONF = {"cniVersion": "1.1.0", "name": "net", "type": "tabby", "ipam": {"type": "tabby-ipam"}}


def code_of(fn, *args, **kw) -> tuple[int, str]:
    with pytest.raises(CNIError) as info:
        fn(*args, **kw)
    return info.value.code, info.value.msg


def test_add_env_parsed_with_pod_from_cni_args_in_any_order():
    inv = config.parse_invocation(ADD_ENV)
    assert inv.pod == ("shop", "web-0")
    assert inv.path == ("/opt/cni/bin", "/usr/lib/cni")
    reordered = {**ADD_ENV, "CNI_ARGS": "K8S_POD_NAME=web-0;K8S_POD_UID=u;K8S_POD_NAMESPACE=shop"}
    assert config.parse_invocation(reordered).pod == ("shop", "web-0")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"CNI_COMMAND": ""}, "CNI_COMMAND is not set"),
        ({"CNI_COMMAND": "add"}, "CNI_COMMAND 'add'"),
        ({"CNI_CONTAINERID": "-bad"}, "CNI_CONTAINERID must start"),
        ({"CNI_IFNAME": "a" * 16}, "CNI_IFNAME"),
        ({"CNI_IFNAME": ".."}, "CNI_IFNAME"),
        ({"CNI_NETNS": ""}, "CNI_NETNS is required for ADD"),
        ({"CNI_ARGS": "a=b;junk"}, "CNI_ARGS"),
    ],
)
def test_bad_environment_is_error_4_naming_the_variable(change, needle):
    code, msg = code_of(config.parse_invocation, {**ADD_ENV, **change})
    assert code == 4 and needle in msg


def test_del_allows_empty_netns_and_gc_needs_no_container():
    assert config.parse_invocation({**ADD_ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}).netns == ""
    assert config.parse_invocation({"CNI_COMMAND": "GC"}).container_id == ""


def test_version_gates():
    assert code_of(config.parse_netconf, {**CONF, "cniVersion": "0.2.0"}, "ADD")[0] == 1
    assert code_of(config.parse_netconf, {**CONF, "cniVersion": "1.0.0"}, "STATUS")[0] == 1
    assert code_of(config.parse_netconf, {**CONF, "cniVersion": "0.3.1"}, "CHECK")[0] == 1
    assert config.parse_netconf({**CONF, "cniVersion": "0.3.1"}, "ADD").cni_version == "0.3.1"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"cniVersion": None}, "field cniVersion is missing"),
        ({"name": ""}, "field name is missing"),
        ({"type": None}, "field type is missing"),
        ({"ipam": None}, "field ipam is missing"),
        ({"ipam": {"assign_ipv4": "true"}}, "field ipam.type is missing"),
        ({"ipam": {"type": "tabby-ipam", "assign_ipv6": "maybe"}}, "field ipam.assign_ipv6"),
        ({"ipam": {"type": "tabby-ipam", "ipv4_pools": "a"}}, "field ipam.ipv4_pools"),
        ({"mtu": -1}, "field mtu"),
        ({"policy_setup_timeout_seconds": "5"}, "field policy_setup_timeout_seconds"),
        ({"etcd_endpoints": 5}, "field etcd_endpoints"),
        ({"cni.dev/valid-attachments": [{"ifname": "eth0"}]}, "cni.dev/valid-attachments"),
    ],
)
def test_bad_config_is_error_7_naming_the_field(change, needle):
    raw = {k: v for k, v in {**CONF, **change}.items() if v is not None}
    code, msg = code_of(config.parse_netconf, raw, "ADD")
    assert code == 7 and needle in msg


def test_calico_style_config_values():
    conf = config.parse_netconf(
        {
            **CONF,
            "nodename": "node-1",
            "etcd_endpoints": "http://10.0.0.1:2379, http://10.0.0.2:2379",
            "mtu": 1440,
            "ipam": {"type": "tabby-ipam", "assign_ipv6": "true", "ipv4_pools": ["p1"]},
        },
        "ADD",
    )
    assert conf.nodename == "node-1" and conf.mtu == 1440
    assert conf.etcd_endpoints == ("http://10.0.0.1:2379", "http://10.0.0.2:2379")
    assert conf.ipam.assign_ipv4 and conf.ipam.assign_ipv6 and conf.ipam.ipv4_pools == ("p1",)


def test_nodename_from_file_when_not_in_config(tmp_path):
    f = tmp_path / "nodename"
    f.write_text("node-from-file\n")
    conf = config.parse_netconf({**CONF, "nodename_file": str(f)}, "ADD")
    assert conf.nodename == "node-from-file"


def test_gc_accepts_both_attachment_spellings():
    att = [{"containerID": "c1", "ifname": "eth0"}]
    for key in ("cni.dev/valid-attachments", "cni.dev/attachments"):
        conf = config.parse_netconf({**CONF, key: att}, "GC", need_ipam=False)
        assert conf.valid_attachments == (("c1", "eth0"),)


def test_decode_config_errors_are_6():
    assert code_of(config.decode_config, b"{")[0] == 6
    assert code_of(config.decode_config, b"[1]")[0] == 6
    assert config.decode_config(b'{"a": 1}') == {"a": 1}
