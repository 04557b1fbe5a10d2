"""Semantic checks on parsed resources, and the defaults they imply.

``model.codec`` guarantees the shape (types, known fields); this module guarantees the
meaning: names usable as datastore keys, CIDRs without host bits, block sizes that fit
the pool, selectors that parse, ports and AS numbers in range. The rules mirror
Calico's validator where Calico has one; each error names the field so an operator
can fix the YAML without reading code.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Callable, Iterable

from model import selector
from model.durations import parse_duration
from model.errors import ValidationError, describe_resource
from model.resources import (
    ENCAP_MODES,
    ENCAP_NEVER,
    BGPConfiguration,
    BGPPeer,
    FelixConfiguration,
    IPAMConfiguration,
    IPPool,
    Node,
    Resource,
    WorkloadEndpoint,
)

DEFAULT_BLOCK_SIZE_V4 = 26
DEFAULT_BLOCK_SIZE_V6 = 122
BLOCK_SIZE_RANGE = {4: (20, 32), 6: (116, 128)}
MAX_ASN = 4294967295
MAX_VNI = 16777215
MAX_IFNAME = 15  # IFNAMSIZ - 1
MAX_TCP_MD5_KEY = 80  # TCP_MD5SIG_MAXKEYLEN
LOG_SEVERITIES = ("Debug", "Info", "Warning", "Error", "Fatal")

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_LABEL_RE = re.compile(rf"^{_DNS_LABEL}$")
_DNS_SUBDOMAIN_RE = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")
_DOTTED_QUAD_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_INTERFACE_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")

# Ranges a pod pool must never cover: the host side of every veth answers ARP for
# 169.254.1.1 (the pods' gateway), and loopback/multicast are not routable.
_RESERVED_V4 = {
    "link-local": ipaddress.ip_network("169.254.0.0/16"),
    "loopback": ipaddress.ip_network("127.0.0.0/8"),
    "multicast": ipaddress.ip_network("224.0.0.0/4"),
}
_RESERVED_V6 = {
    "link-local": ipaddress.ip_network("fe80::/10"),
    "loopback": ipaddress.ip_network("::1/128"),
    "multicast": ipaddress.ip_network("ff00::/8"),
}


# --- field checks (each raises ValidationError naming ``path``) --------------------


def check_dns1123_subdomain(value: str, path: str) -> None:
    if not value:
        raise ValidationError(path, "required, must not be empty")
    if len(value) > 253 or not _DNS_SUBDOMAIN_RE.match(value):
        raise ValidationError(
            path,
            f"{value!r} is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.',"
            " starting and ending with a letter or digit, at most 253 characters)",
        )


def check_dns1123_label(value: str, path: str) -> None:
    if len(value) > 63 or not _DNS_LABEL_RE.match(value):
        raise ValidationError(
            path,
            f"{value!r} is not a DNS-1123 label (lowercase letters, digits and '-',"
            " starting and ending with a letter or digit, at most 63 characters)",
        )


def _check_qualified_key(key: str, path: str) -> None:
    """Kubernetes label/annotation key: ``[prefix/]name``, prefix a DNS subdomain."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        raise ValidationError(path, f"key prefix {prefix!r} must be a DNS-1123 subdomain")
    if not name or len(name) > 63 or not _QUALIFIED_NAME_RE.match(name):
        raise ValidationError(
            path,
            f"key {key!r}: the name part must be 1-63 characters of letters, digits, '-', '_'"
            " and '.', starting and ending with a letter or digit",
        )


def check_labels(labels: dict[str, str], path: str) -> None:
    for key, value in labels.items():
        where = f"{path}.{key}"
        _check_qualified_key(key, where)
        if value and (len(value) > 63 or not _QUALIFIED_NAME_RE.match(value)):
            raise ValidationError(
                where,
                f"value {value!r} must be empty or 1-63 characters of letters, digits, '-',"
                " '_' and '.', starting and ending with a letter or digit",
            )


def check_asn(value: int | None, path: str) -> None:
    if value is not None and not 1 <= value <= MAX_ASN:
        raise ValidationError(path, f"AS number {value} must be between 1 and {MAX_ASN}")


def check_port(value: int | None, path: str) -> None:
    if value is not None and not 1 <= value <= 65535:
        raise ValidationError(path, f"port {value} must be between 1 and 65535")


def check_selector(text: str, path: str) -> None:
    try:
        selector.parse(text)
    except selector.SelectorSyntaxError as e:
        raise ValidationError(path, f"invalid selector: {e}") from None


def check_duration(text: str, path: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise ValidationError(path, str(e)) from None
    if seconds < 0:
        raise ValidationError(path, f"duration {text!r} must not be negative")
    return seconds


def check_ip(text: str, version: int, path: str) -> None:
    family = f"IPv{version}"
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ValidationError(path, f"{text!r} is not an {family} address") from None
    if addr.version != version:
        raise ValidationError(path, f"{text!r} is not an {family} address")


def check_ip_with_prefix(text: str, version: int, path: str) -> None:
    """An interface address with its prefix length, e.g. ``10.0.1.5/24``."""
    family = f"IPv{version}"
    example = "10.0.1.5/24" if version == 4 else "fd00:1::5/64"
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise ValidationError(
            path, f"{text!r} is not an {family} address with prefix length (e.g. {example})"
        ) from None
    if iface.version != version or "/" not in text:
        raise ValidationError(
            path, f"{text!r} is not an {family} address with prefix length (e.g. {example})"
        )


def check_cidr(text: str, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A network with no host bits set; returns it."""
    if "/" not in text:
        raise ValidationError(path, f"{text!r} is not a CIDR (expected e.g. 10.65.0.0/16)")
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValidationError(
            path, f"{text!r} is not a valid CIDR (expected e.g. 10.65.0.0/16)"
        ) from None
    raise ValidationError(path, f"{text!r} has host bits set (did you mean '{loose}'?)")


def check_mac(text: str, path: str) -> None:
    if not _MAC_RE.match(text):
        raise ValidationError(path, f"{text!r} is not a MAC address (e.g. 66:1a:2b:3c:4d:5e)")


def check_one_of(value: str, allowed: Iterable[str], path: str) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValidationError(path, f"{value!r} must be one of {', '.join(allowed)}")


# --- per kind -----------------------------------------------------------------------


def _validate_metadata(res: Resource) -> None:
    meta = res.metadata
    check_dns1123_subdomain(meta.name, "metadata.name")
    if res.NAMESPACED:
        if not meta.namespace:
            raise ValidationError("metadata.namespace", f"required for a {res.KIND}")
        check_dns1123_label(meta.namespace, "metadata.namespace")
    elif meta.namespace:
        raise ValidationError(
            "metadata.namespace", f"must not be set: {res.KIND} is not namespaced"
        )
    check_labels(meta.labels, "metadata.labels")
    for key in meta.annotations:
        _check_qualified_key(key, f"metadata.annotations.{key}")


def _validate_ippool(pool: IPPool) -> None:
    spec = pool.spec
    net = check_cidr(spec.cidr, "spec.cidr")
    spec.cidr = str(net)  # canonical text: keys and overlap checks compare it
    reserved = _RESERVED_V4 if net.version == 4 else _RESERVED_V6
    for what, rnet in reserved.items():
        if net.overlaps(rnet):
            raise ValidationError("spec.cidr", f"{net} overlaps the {what} range {rnet}")
    lo, hi = BLOCK_SIZE_RANGE[net.version]
    if spec.block_size is None:
        spec.block_size = DEFAULT_BLOCK_SIZE_V4 if net.version == 4 else DEFAULT_BLOCK_SIZE_V6
    if not lo <= spec.block_size <= hi:
        raise ValidationError(
            "spec.blockSize", f"must be between {lo} and {hi} for an IPv{net.version} pool"
        )
    if spec.block_size < net.prefixlen:
        raise ValidationError(
            "spec.blockSize",
            f"/{spec.block_size} blocks do not fit in the /{net.prefixlen} pool: the block"
            f" size must be at least the pool prefix length {net.prefixlen}",
        )
    check_one_of(spec.vxlan_mode, ENCAP_MODES, "spec.vxlanMode")
    check_one_of(spec.ipip_mode, ENCAP_MODES, "spec.ipipMode")
    if spec.vxlan_mode != ENCAP_NEVER and spec.ipip_mode != ENCAP_NEVER:
        raise ValidationError(
            "spec.ipipMode", "a pool cannot use both VXLAN and IPIP; set one of them to Never"
        )
    if net.version == 6 and spec.ipip_mode != ENCAP_NEVER:
        raise ValidationError("spec.ipipMode", "IPIP is only supported for IPv4 pools")
    if not spec.node_selector.strip():
        spec.node_selector = "all()"
    check_selector(spec.node_selector, "spec.nodeSelector")


def _validate_node(node: Node) -> None:
    spec = node.spec
    if spec.bgp is not None:
        bgp = spec.bgp
        if bgp.ipv4_address:
            check_ip_with_prefix(bgp.ipv4_address, 4, "spec.bgp.ipv4Address")
        if bgp.ipv6_address:
            check_ip_with_prefix(bgp.ipv6_address, 6, "spec.bgp.ipv6Address")
        check_asn(bgp.as_number, "spec.bgp.asNumber")
        if bgp.route_reflector_cluster_id:
            rr = bgp.route_reflector_cluster_id
            if not _DOTTED_QUAD_RE.match(rr):
                raise ValidationError(
                    "spec.bgp.routeReflectorClusterID",
                    f"{rr!r} is not a dotted quad (e.g. 224.0.0.1)",
                )
            check_ip(rr, 4, "spec.bgp.routeReflectorClusterID")
    if spec.ipv4_vxlan_tunnel_addr:
        check_ip(spec.ipv4_vxlan_tunnel_addr, 4, "spec.ipv4VXLANTunnelAddr")
    if spec.ipv4_ipip_tunnel_addr:
        check_ip(spec.ipv4_ipip_tunnel_addr, 4, "spec.ipv4IPIPTunnelAddr")
    if spec.vxlan_tunnel_mac_addr:
        check_mac(spec.vxlan_tunnel_mac_addr, "spec.vxlanTunnelMACAddr")


def _check_peer_ip(text: str, path: str) -> None:
    """``ip``, ``ipv4:port`` or ``[ipv6]:port``."""
    host, port = text, None
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or not text[close + 1 :].startswith(":"):
            raise ValidationError(path, f"{text!r}: expected '[ipv6]:port'")
        host, port = text[1:close], text[close + 2 :]
        version = 6
    elif text.count(":") == 1:
        host, port = text.split(":")
        version = 4
    else:
        version = 6 if ":" in text else 4
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValidationError(
            path, f"{text!r} is not an IP address, 'ip:port' or '[ipv6]:port'"
        ) from None
    if addr.version != version:
        raise ValidationError(path, f"{text!r}: an IPv6 address with a port needs brackets")
    if port is not None:
        if not port.isdigit():
            raise ValidationError(path, f"{text!r}: port {port!r} is not a number")
        check_port(int(port), path)


def _validate_bgppeer(peer: BGPPeer) -> None:
    spec = peer.spec
    if bool(spec.peer_ip) == bool(spec.peer_selector):
        raise ValidationError("spec.peerIP", "exactly one of peerIP and peerSelector must be set")
    if spec.node and spec.node_selector:
        raise ValidationError("spec.nodeSelector", "node and nodeSelector cannot both be set")
    if spec.node:
        check_dns1123_subdomain(spec.node, "spec.node")
    if spec.node_selector:
        check_selector(spec.node_selector, "spec.nodeSelector")
    if spec.peer_ip:
        _check_peer_ip(spec.peer_ip, "spec.peerIP")
        if spec.as_number is None:
            raise ValidationError("spec.asNumber", "required when peerIP is set")
    else:
        check_selector(spec.peer_selector, "spec.peerSelector")
        if spec.as_number is not None:
            raise ValidationError(
                "spec.asNumber",
                "must not be set with peerSelector (the selected nodes' own AS is used)",
            )
    check_asn(spec.as_number, "spec.asNumber")
    if len(spec.password.encode()) > MAX_TCP_MD5_KEY:
        raise ValidationError("spec.password", f"a TCP MD5 key is at most {MAX_TCP_MD5_KEY} bytes")
    if spec.max_restart_time:
        check_duration(spec.max_restart_time, "spec.maxRestartTime")


def _check_default_or_node_name(res: Resource) -> None:
    name = res.metadata.name
    if name == "default":
        return
    if not name.startswith("node.") or len(name) == len("node."):
        raise ValidationError(
            "metadata.name", f"must be 'default' or 'node.<nodename>' for a {res.KIND}"
        )


def _validate_bgpconfiguration(cfg: BGPConfiguration) -> None:
    _check_default_or_node_name(cfg)
    spec = cfg.spec
    check_asn(spec.as_number, "spec.asNumber")
    check_port(spec.listen_port, "spec.listenPort")
    check_one_of(spec.log_severity_screen, LOG_SEVERITIES, "spec.logSeverityScreen")
    for i, cidr in enumerate(spec.service_cluster_ips):
        check_cidr(cidr, f"spec.serviceClusterIPs[{i}]")


def _validate_felixconfiguration(cfg: FelixConfiguration) -> None:
    _check_default_or_node_name(cfg)
    spec = cfg.spec
    check_one_of(spec.log_severity_screen, LOG_SEVERITIES, "spec.logSeverityScreen")
    seconds = check_duration(spec.route_refresh_interval, "spec.routeRefreshInterval")
    if seconds == 0:
        raise ValidationError("spec.routeRefreshInterval", "must be greater than zero")
    if not 1 <= spec.device_route_protocol <= 255:
        raise ValidationError(
            "spec.deviceRouteProtocol",
            f"{spec.device_route_protocol} must be a route protocol number between 1 and 255",
        )
    if not _INTERFACE_PREFIX_RE.match(spec.interface_prefix):
        raise ValidationError(
            "spec.interfacePrefix",
            f"{spec.interface_prefix!r} must be 1-8 lowercase letters/digits starting with a"
            " letter (interface names are limited to 15 characters)",
        )
    if not 1 <= spec.vxlan_vni <= MAX_VNI:
        raise ValidationError("spec.vxlanVNI", f"VNI {spec.vxlan_vni} must be 1..{MAX_VNI}")
    check_port(spec.vxlan_port, "spec.vxlanPort")
    check_port(spec.health_port, "spec.healthPort")
    check_port(spec.prometheus_metrics_port, "spec.prometheusMetricsPort")
    for path, mtu in (("spec.vxlanMTU", spec.vxlan_mtu), ("spec.ipipMTU", spec.ipip_mtu)):
        if mtu != 0 and not 68 <= mtu <= 65535:
            raise ValidationError(path, f"MTU {mtu} must be 0 (detect) or 68..65535")


def _validate_ipamconfiguration(cfg: IPAMConfiguration) -> None:
    if cfg.metadata.name != "default":
        raise ValidationError(
            "metadata.name", "must be 'default' (there is one IPAM configuration)"
        )
    if cfg.spec.max_blocks_per_host < 0:
        raise ValidationError("spec.maxBlocksPerHost", "must be 0 (unlimited) or positive")


def _validate_workloadendpoint(wep: WorkloadEndpoint) -> None:
    spec = wep.spec
    if not spec.node:
        raise ValidationError("spec.node", "required: the node the workload runs on")
    check_dns1123_subdomain(spec.node, "spec.node")
    for i, cidr in enumerate(spec.ip_networks):
        check_cidr(cidr, f"spec.ipNetworks[{i}]")
    name = spec.interface_name
    if name:
        if len(name) > MAX_IFNAME:
            raise ValidationError(
                "spec.interfaceName",
                f"{name!r} is {len(name)} characters; Linux allows at most {MAX_IFNAME}",
            )
        if name in (".", "..") or any(c in name for c in "/: \t\n"):
            raise ValidationError("spec.interfaceName", f"{name!r} is not a valid interface name")
    if spec.mac:
        check_mac(spec.mac, "spec.mac")


_VALIDATORS: dict[type[Resource], Callable] = {
    IPPool: _validate_ippool,
    Node: _validate_node,
    BGPPeer: _validate_bgppeer,
    BGPConfiguration: _validate_bgpconfiguration,
    FelixConfiguration: _validate_felixconfiguration,
    IPAMConfiguration: _validate_ipamconfiguration,
    WorkloadEndpoint: _validate_workloadendpoint,
}


def validate(res: Resource) -> Resource:
    """A checked copy of ``res`` with defaults filled; ValidationError on the first problem.

    The input is never modified, so a caller can report the error against what the
    operator wrote.
    """
    out = copy.deepcopy(res)
    where = describe_resource(res)
    try:
        _validate_metadata(out)
        _VALIDATORS[type(out)](out)
    except ValidationError as err:
        raise err.with_resource(where) from None
    return out


def check_pool_overlap(pool: IPPool, others: Iterable[IPPool]) -> None:
    """Raise on ``spec.cidr`` if ``pool`` overlaps another pool (same name: same pool)."""
    where = describe_resource(pool)
    try:
        net = check_cidr(pool.spec.cidr, "spec.cidr")
    except ValidationError as err:
        raise err.with_resource(where) from None
    for other in others:
        if other.metadata.name == pool.metadata.name:
            continue
        try:
            other_net = ipaddress.ip_network(other.spec.cidr, strict=False)
        except ValueError:
            continue  # an invalid stored pool cannot be overlapped; validate reports it
        if net.version == other_net.version and net.overlaps(other_net):
            raise ValidationError(
                "spec.cidr",
                f"{net} overlaps {describe_resource(other)} ({other_net})",
                where,
            )
