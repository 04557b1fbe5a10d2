"""Parse what the runtime hands a CNI plugin: ``CNI_*`` environment and the stdin config.

Standard library only (the shim imports it under ``python3 -S``). Validation errors
are ``CNIError`` with the spec's code and a message that names the variable or field.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cni import errors
from cni.errors import CNIError

SUPPORTED_VERSIONS: tuple[str, ...] = ("0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = "1.1.0"
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
# The first spec version that defines each command; older configs may not use it.
COMMAND_SINCE = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}

DEFAULT_SERVICE_SOCKET = "/var/run/tabby/cni.sock"
DEFAULT_FELIX_SOCKET = "/var/run/tabby/felix.sock"
DEFAULT_MTU_FILE = "/var/lib/tabby/mtu"
DEFAULT_NODENAME_FILE = "/var/lib/tabby/nodename"
DEFAULT_ETCD_ENDPOINTS = "http://127.0.0.1:2379"
IPAM_TYPE = "tabby-ipam"

_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_BAD_IFNAME_CHARS = re.compile(r"[/:\s]")


def version_tuple(version: str) -> tuple[int, int, int]:
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(version)
    return int(parts[0]), int(parts[1]), int(parts[2])


def version_result(cni_version: str = LATEST_VERSION) -> dict[str, object]:
    """The VERSION command's answer."""
    if cni_version not in SUPPORTED_VERSIONS:
        cni_version = LATEST_VERSION
    return {"cniVersion": cni_version, "supportedVersions": list(SUPPORTED_VERSIONS)}


@dataclass(frozen=True)
class Invocation:
    """The ``CNI_*`` environment of one call, validated for its command."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: dict[str, str] = field(default_factory=dict)
    path: tuple[str, ...] = ()

    @property
    def pod(self) -> tuple[str, str] | None:
        """(namespace, name) when the runtime named a Kubernetes pod in CNI_ARGS."""
        ns, name = self.args.get("K8S_POD_NAMESPACE", ""), self.args.get("K8S_POD_NAME", "")
        return (ns, name) if ns and name else None


def parse_cni_args(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in raw.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CNIError(
                errors.INVALID_ENVIRONMENT,
                "invalid CNI_ARGS: expected KEY=VALUE pairs separated by ';'",
                f"bad item {item!r}",
            )
        out[key] = value
    return out


def parse_invocation(env: Mapping[str, str]) -> Invocation:
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CNIError(errors.INVALID_ENVIRONMENT, "CNI_COMMAND is not set")
    if command not in COMMANDS:
        raise CNIError(
            errors.INVALID_ENVIRONMENT,
            f"CNI_COMMAND {command!r} is not one of {', '.join(COMMANDS)}",
        )
    path = tuple(p for p in env.get("CNI_PATH", "").split(":") if p)
    if command in ("VERSION", "STATUS", "GC"):
        return Invocation(command=command, path=path)
    container_id = env.get("CNI_CONTAINERID", "")
    if not container_id:
        raise CNIError(errors.INVALID_ENVIRONMENT, "CNI_CONTAINERID is not set")
    if not _CONTAINER_ID.match(container_id):
        raise CNIError(
            errors.INVALID_ENVIRONMENT,
            "CNI_CONTAINERID must start with a letter or digit and contain only "
            "letters, digits, '_', '.', '-'",
            f"got {container_id!r}",
        )
    ifname = env.get("CNI_IFNAME", "")
    if not ifname:
        raise CNIError(errors.INVALID_ENVIRONMENT, "CNI_IFNAME is not set")
    if ifname in (".", "..") or len(ifname) > 15 or _BAD_IFNAME_CHARS.search(ifname):
        raise CNIError(
            errors.INVALID_ENVIRONMENT,
            "CNI_IFNAME is not a valid Linux interface name "
            "(at most 15 characters, no '/', ':' or whitespace)",
            f"got {ifname!r}",
        )
    netns = env.get("CNI_NETNS", "")
    if command in ("ADD", "CHECK") and not netns:
        raise CNIError(errors.INVALID_ENVIRONMENT, f"CNI_NETNS is required for {command}")
    return Invocation(
        command=command,
        container_id=container_id,
        netns=netns,
        ifname=ifname,
        args=parse_cni_args(env.get("CNI_ARGS", "")),
        path=path,
    )


def decode_config(raw: bytes | str) -> dict[str, Any]:
    """stdin -> JSON object, or error 6."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CNIError(
            errors.DECODING_FAILURE, "network configuration on stdin is not valid JSON", str(exc)
        ) from None
    if not isinstance(value, dict):
        raise CNIError(errors.DECODING_FAILURE, "network configuration must be a JSON object")
    return value


def check_version(raw: Mapping[str, Any], command: str) -> str:
    """The config's cniVersion if we speak it and it allows ``command``; else error 1."""
    version = raw.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise CNIError(errors.INVALID_NETWORK_CONFIG, "field cniVersion is missing")
    if version not in SUPPORTED_VERSIONS:
        raise CNIError(
            errors.INCOMPATIBLE_VERSION,
            f"cniVersion {version} is not supported",
            f"supported versions: {', '.join(SUPPORTED_VERSIONS)}",
        )
    since = COMMAND_SINCE.get(command)
    if since and version_tuple(version) < version_tuple(since):
        raise CNIError(
            errors.INCOMPATIBLE_VERSION,
            f"{command} needs cniVersion {since} or later, config has {version}",
        )
    return version


@dataclass(frozen=True)
class IPAMConfig:
    type: str
    assign_ipv4: bool = True
    assign_ipv6: bool = False
    ipv4_pools: tuple[str, ...] = ()
    ipv6_pools: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NetConf:
    """A plugin's network configuration (Calico's keys, Tabby's names)."""

    cni_version: str
    name: str
    type: str
    nodename: str
    ipam: IPAMConfig
    etcd_endpoints: tuple[str, ...] = (DEFAULT_ETCD_ENDPOINTS,)
    etcd_timeout_seconds: float = 5.0
    mtu: int = 0  # 0: read mtu_file, else 1500
    mtu_file: str = DEFAULT_MTU_FILE
    interface_prefix: str = "cali"
    policy_setup_timeout_seconds: int = 0
    felix_socket: str = DEFAULT_FELIX_SOCKET
    cni_service_socket: str = DEFAULT_SERVICE_SOCKET
    log_level: str = "info"
    prev_result: dict[str, Any] | None = None
    valid_attachments: tuple[tuple[str, str], ...] | None = None  # GC: (containerID, ifname)
    raw: dict[str, Any] = field(default_factory=dict)


def _field_error(name: str, expected: str, got: object) -> CNIError:
    return CNIError(
        errors.INVALID_NETWORK_CONFIG,
        f"field {name} must be {expected}",
        f"got {json.dumps(got)[:200]}",
    )


def _str(raw: Mapping[str, Any], name: str, default: str) -> str:
    value = raw.get(name, default)
    if not isinstance(value, str):
        raise _field_error(name, "a string", value)
    return value


def _int(raw: Mapping[str, Any], name: str, default: int, minimum: int = 0) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _field_error(name, f"an integer >= {minimum}", value)
    return value


def _pools(raw: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = raw.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _field_error(f"ipam.{name}", "a list of strings", value)
    return tuple(value)


def _flag(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    """Calico writes these as strings ("true"); accept JSON booleans too."""
    value = raw.get(name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _field_error(f"ipam.{name}", 'true, false, "true" or "false"', value)


def parse_ipam(raw: Any) -> IPAMConfig:
    if not isinstance(raw, dict):
        raise _field_error("ipam", "an object", raw)
    ipam_type = raw.get("type")
    if not isinstance(ipam_type, str) or not ipam_type:
        raise CNIError(errors.INVALID_NETWORK_CONFIG, "field ipam.type is missing")
    return IPAMConfig(
        type=ipam_type,
        assign_ipv4=_flag(raw, "assign_ipv4", True),
        assign_ipv6=_flag(raw, "assign_ipv6", False),
        ipv4_pools=_pools(raw, "ipv4_pools"),
        ipv6_pools=_pools(raw, "ipv6_pools"),
        raw=dict(raw),
    )


def _read_first_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().strip()
    except OSError:
        return ""


def _endpoints(raw: Mapping[str, Any]) -> tuple[str, ...]:
    value = raw.get("etcd_endpoints", DEFAULT_ETCD_ENDPOINTS)
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise _field_error("etcd_endpoints", "a comma-separated string or a list", value)
    if not items:
        raise _field_error("etcd_endpoints", "non-empty", value)
    return tuple(items)


def _valid_attachments(raw: Mapping[str, Any]) -> tuple[tuple[str, str], ...] | None:
    # libcni sends both spellings (the spec once named it cni.dev/attachments).
    value = raw.get("cni.dev/valid-attachments", raw.get("cni.dev/attachments"))
    if value is None:
        return None
    if not isinstance(value, list):
        raise _field_error("cni.dev/valid-attachments", "a list", value)
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("containerID"), str):
            raise _field_error(
                "cni.dev/valid-attachments", 'a list of {"containerID", "ifname"}', item
            )
        out.append((item["containerID"], str(item.get("ifname", ""))))
    return tuple(out)


def parse_netconf(raw: Mapping[str, Any], command: str, need_ipam: bool = True) -> NetConf:
    """Validate a plugin config for ``command``. Errors name the field (code 7) or version (1)."""
    version = check_version(raw, command)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise CNIError(errors.INVALID_NETWORK_CONFIG, "field name is missing")
    plugin_type = raw.get("type")
    if not isinstance(plugin_type, str) or not plugin_type:
        raise CNIError(errors.INVALID_NETWORK_CONFIG, "field type is missing")
    if "ipam" in raw or need_ipam:
        if "ipam" not in raw:
            raise CNIError(errors.INVALID_NETWORK_CONFIG, "field ipam is missing")
        ipam = parse_ipam(raw["ipam"])
    else:
        ipam = IPAMConfig(type="")
    nodename = _str(raw, "nodename", "")
    if not nodename:
        nodename = _read_first_line(_str(raw, "nodename_file", DEFAULT_NODENAME_FILE))
    if not nodename:
        nodename = socket.gethostname()
    prev = raw.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise _field_error("prevResult", "an object", prev)
    timeout = raw.get("etcd_timeout_seconds", 5.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise _field_error("etcd_timeout_seconds", "a positive number", timeout)
    prefix = _str(raw, "interface_prefix", "cali")
    if not prefix or len(prefix) > 10:
        raise _field_error("interface_prefix", "1 to 10 characters", prefix)
    return NetConf(
        cni_version=version,
        name=name,
        type=plugin_type,
        nodename=nodename,
        ipam=ipam,
        etcd_endpoints=_endpoints(raw),
        etcd_timeout_seconds=float(timeout),
        mtu=_int(raw, "mtu", 0),
        mtu_file=_str(raw, "mtu_file", DEFAULT_MTU_FILE),
        interface_prefix=prefix,
        policy_setup_timeout_seconds=_int(raw, "policy_setup_timeout_seconds", 0),
        felix_socket=_str(raw, "felix_socket", DEFAULT_FELIX_SOCKET),
        cni_service_socket=_str(raw, "cni_service_socket", DEFAULT_SERVICE_SOCKET),
        log_level=_str(raw, "log_level", "info"),
        prev_result=prev,
        valid_attachments=_valid_attachments(raw),
        raw=dict(raw),
    )
