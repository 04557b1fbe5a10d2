"""The daemon's configuration: plain values, parsed from YAML (standalone, publisher) or
built from Felix's stream (``bgp.daemon.cluster``), validated with errors that name the
field at fault."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from bgp.rib.policy import PrefixFilter

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A configuration value is wrong; the message starts with the field's path."""


@dataclass(frozen=True)
class PeerConfig:
    address: IPAddress
    as_number: int
    port: int = 179
    local_address: IPAddress | None = None  # source address of our connections
    password: str | None = None
    multihop_ttl: int | None = None  # None: directly connected (TTL 1 for eBGP)
    passive: bool = False
    route_reflector_client: bool = False
    keep_original_next_hop: bool = False
    max_prefixes: int | None = None
    import_filter: PrefixFilter = field(default_factory=PrefixFilter)
    export_filter: PrefixFilter = field(default_factory=PrefixFilter)
    hold_time: int | None = None
    # Helper side of graceful restart: how long this peer's stale routes are kept after
    # it drops (never longer than the restart time it advertised); None: the speaker's
    # gracefulRestart.restartTime. Cluster mode: BGPPeer maxRestartTime.
    restart_time: int | None = None
    dynamic: bool = False  # accepted from a listen range, not configured
    kind: str = ""  # how it was configured, for the admin API: mesh, node, global


@dataclass(frozen=True)
class ListenRange:
    cidr: Network
    as_number: int
    password: str | None = None


@dataclass(frozen=True)
class Originate:
    prefix: Network
    communities: tuple[int, ...] = ()
    med: int | None = None
    # An explicit next hop (a route publisher speaking for another node); None: the
    # session's own next hop, as for any route this speaker originates for itself.
    next_hop: IPAddress | None = None


@dataclass(frozen=True)
class GracefulRestart:
    enabled: bool = False
    restart_time: int = 120


@dataclass(frozen=True)
class DaemonConfig:
    local_as: int
    router_id: ipaddress.IPv4Address
    listen_address: str = "0.0.0.0"
    listen_port: int = 179
    peers: tuple[PeerConfig, ...] = ()
    listen_ranges: tuple[ListenRange, ...] = ()
    cluster_id: ipaddress.IPv4Address | None = None
    originate: tuple[Originate, ...] = ()
    graceful_restart: GracefulRestart = field(default_factory=GracefulRestart)
    admin_socket: str | None = None
    metrics_port: int = 0  # Prometheus text on http://metrics_address:port/metrics; 0 = off
    metrics_address: str = "127.0.0.1"
    hold_time: int = 90
    connect_retry_time: int = 5
    next_hop_v4: ipaddress.IPv4Address | None = None
    next_hop_v6: ipaddress.IPv6Address | None = None


def _asn(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 0xFFFFFFFF:
        raise ConfigError(f"{where}: must be an AS number 1..4294967295, got {value!r}")
    return value


def _int(where: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where}: must be an integer {lo}..{hi}, got {value!r}")
    return value


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false, got {value!r}")
    return value


def _ip(where: str, value: Any) -> IPAddress:
    try:
        return ipaddress.ip_address(str(value))
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def _ipv4(where: str, value: Any) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError as e:
        raise ConfigError(f"{where}: must be an IPv4 address ({e})") from None


def _net(where: str, value: Any) -> Network:
    try:
        return ipaddress.ip_network(str(value), strict=True)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def _filter(where: str, value: Any) -> PrefixFilter:
    if value is None:
        return PrefixFilter()
    if not isinstance(value, list):
        raise ConfigError(f"{where}: must be a list of prefixes")
    try:
        return PrefixFilter.parse(value)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _hold(where: str, value: Any) -> int:
    hold = _int(where, value, 0, 65535)
    if hold in (1, 2):
        raise ConfigError(f"{where}: must be 0 or at least 3 (RFC 4271 4.2), got {hold}")
    return hold


def _check_keys(where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}{unknown[0]}: unknown field")


_PEER_KEYS = {
    "address",
    "asNumber",
    "port",
    "localAddress",
    "password",
    "multihop",
    "ttl",
    "passive",
    "routeReflectorClient",
    "keepOriginalNextHop",
    "maxPrefixes",
    "importPrefixes",
    "exportPrefixes",
    "holdTime",
}


def parse_peer(where: str, data: Any) -> PeerConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: must be a mapping")
    _check_keys(f"{where}.", data, _PEER_KEYS)
    if "address" not in data:
        raise ConfigError(f"{where}.address: required")
    if "asNumber" not in data:
        raise ConfigError(f"{where}.asNumber: required")
    ttl = data.get("multihop", data.get("ttl"))
    password = data.get("password")
    if password is not None and (not isinstance(password, str) or len(password) > 80):
        raise ConfigError(f"{where}.password: must be a string of at most 80 bytes")
    max_prefixes = data.get("maxPrefixes")
    return PeerConfig(
        address=_ip(f"{where}.address", data["address"]),
        as_number=_asn(f"{where}.asNumber", data["asNumber"]),
        port=_int(f"{where}.port", data.get("port", 179), 1, 65535),
        local_address=None
        if data.get("localAddress") is None
        else _ip(f"{where}.localAddress", data["localAddress"]),
        password=password,
        multihop_ttl=None if ttl is None else _int(f"{where}.multihop", ttl, 1, 255),
        passive=_bool(f"{where}.passive", data.get("passive", False)),
        route_reflector_client=_bool(
            f"{where}.routeReflectorClient", data.get("routeReflectorClient", False)
        ),
        keep_original_next_hop=_bool(
            f"{where}.keepOriginalNextHop", data.get("keepOriginalNextHop", False)
        ),
        max_prefixes=None
        if max_prefixes is None
        else _int(f"{where}.maxPrefixes", max_prefixes, 1, 1 << 32),
        import_filter=_filter(f"{where}.importPrefixes", data.get("importPrefixes")),
        export_filter=_filter(f"{where}.exportPrefixes", data.get("exportPrefixes")),
        hold_time=None if "holdTime" not in data else _hold(f"{where}.holdTime", data["holdTime"]),
    )


_TOP_KEYS = {
    "localAS",
    "routerID",
    "listenAddress",
    "listenPort",
    "peers",
    "listenRanges",
    "clusterID",
    "originate",
    "gracefulRestart",
    "adminSocket",
    "metricsPort",
    "metricsAddress",
    "holdTime",
    "connectRetryTime",
    "nextHopV4",
    "nextHopV6",
}


def parse_config(data: Any) -> DaemonConfig:
    """Validate a decoded YAML/JSON document into a ``DaemonConfig``."""
    if not isinstance(data, Mapping):
        raise ConfigError("config: must be a mapping")
    _check_keys("", data, _TOP_KEYS)
    if "localAS" not in data:
        raise ConfigError("localAS: required")
    if "routerID" not in data:
        raise ConfigError("routerID: required")
    peers = tuple(parse_peer(f"peers[{i}]", p) for i, p in enumerate(data.get("peers") or []))
    seen: set[IPAddress] = set()
    for i, p in enumerate(peers):
        if p.address in seen:
            raise ConfigError(f"peers[{i}].address: duplicate peer {p.address}")
        seen.add(p.address)
    ranges = []
    for i, r in enumerate(data.get("listenRanges") or []):
        where = f"listenRanges[{i}]"
        if not isinstance(r, Mapping):
            raise ConfigError(f"{where}: must be a mapping")
        _check_keys(f"{where}.", r, {"cidr", "asNumber", "password"})
        if "cidr" not in r or "asNumber" not in r:
            raise ConfigError(f"{where}.{'cidr' if 'cidr' not in r else 'asNumber'}: required")
        ranges.append(
            ListenRange(
                _net(f"{where}.cidr", r["cidr"]),
                _asn(f"{where}.asNumber", r["asNumber"]),
                r.get("password"),
            )
        )
    originate = []
    for i, o in enumerate(data.get("originate") or []):
        where = f"originate[{i}]"
        if isinstance(o, str):
            originate.append(Originate(_net(where, o)))
            continue
        if not isinstance(o, Mapping) or "prefix" not in o:
            raise ConfigError(f"{where}.prefix: required")
        _check_keys(f"{where}.", o, {"prefix", "communities", "med"})
        comms = []
        for j, c in enumerate(o.get("communities") or []):
            try:
                hi, lo = (int(x) for x in str(c).split(":"))
                if not (0 <= hi <= 0xFFFF and 0 <= lo <= 0xFFFF):
                    raise ValueError
            except ValueError:
                raise ConfigError(f"{where}.communities[{j}]: must be 'A:B', got {c!r}") from None
            comms.append(hi << 16 | lo)
        med = o.get("med")
        originate.append(
            Originate(
                _net(f"{where}.prefix", o["prefix"]),
                tuple(comms),
                None if med is None else _int(f"{where}.med", med, 0, 0xFFFFFFFF),
            )
        )
    gr = data.get("gracefulRestart") or {}
    if not isinstance(gr, Mapping):
        raise ConfigError("gracefulRestart: must be a mapping")
    _check_keys("gracefulRestart.", gr, {"enabled", "restartTime"})
    return DaemonConfig(
        local_as=_asn("localAS", data["localAS"]),
        router_id=_ipv4("routerID", data["routerID"]),
        listen_address=str(data.get("listenAddress", "0.0.0.0")),
        listen_port=_int("listenPort", data.get("listenPort", 179), 0, 65535),
        peers=peers,
        listen_ranges=tuple(ranges),
        cluster_id=None if "clusterID" not in data else _ipv4("clusterID", data["clusterID"]),
        originate=tuple(originate),
        graceful_restart=GracefulRestart(
            _bool("gracefulRestart.enabled", gr.get("enabled", False)),
            _int("gracefulRestart.restartTime", gr.get("restartTime", 120), 1, 4095),
        ),
        admin_socket=data.get("adminSocket"),
        metrics_port=_int("metricsPort", data.get("metricsPort", 0), 0, 65535),
        metrics_address=str(_ip("metricsAddress", data.get("metricsAddress", "127.0.0.1"))),
        hold_time=_hold("holdTime", data.get("holdTime", 90)),
        connect_retry_time=_int("connectRetryTime", data.get("connectRetryTime", 5), 1, 65535),
        next_hop_v4=None if "nextHopV4" not in data else _ipv4("nextHopV4", data["nextHopV4"]),
        next_hop_v6=None
        if "nextHopV6" not in data
        else ipaddress.IPv6Address(str(data["nextHopV6"])),
    )


def load_config(path: str) -> DaemonConfig:
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return parse_config(data)
