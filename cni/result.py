"""CNI result JSON for each spec version, and reading a prevResult back.

Pure: values in, dicts out. 0.3.1/0.4.0 results carry ``version`` on each IP; 1.0.0+
dropped it; ``mtu`` on interfaces is new in 1.1.0.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cni import errors
from cni.config import version_tuple
from cni.errors import CNIError

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int = 0


@dataclass(frozen=True)
class IPConfig:
    address: IPInterface
    gateway: str = ""
    interface: int | None = None


@dataclass(frozen=True)
class Route:
    dst: str
    gw: str = ""


@dataclass
class Result:
    interfaces: list[Interface] = field(default_factory=list)
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: dict[str, Any] = field(default_factory=dict)


def render(result: Result, cni_version: str) -> dict[str, Any]:
    v = version_tuple(cni_version)
    out: dict[str, Any] = {"cniVersion": cni_version}
    if result.interfaces:
        ifaces = []
        for i in result.interfaces:
            d: dict[str, Any] = {"name": i.name}
            if i.mac:
                d["mac"] = i.mac
            if i.mtu and v >= (1, 1, 0):
                d["mtu"] = i.mtu
            if i.sandbox:
                d["sandbox"] = i.sandbox
            ifaces.append(d)
        out["interfaces"] = ifaces
    ips = []
    for ip in result.ips:
        d = {"address": str(ip.address)}
        if v < (1, 0, 0):
            d["version"] = str(ip.address.version)
        if ip.interface is not None:
            d["interface"] = ip.interface
        if ip.gateway:
            d["gateway"] = ip.gateway
        ips.append(d)
    out["ips"] = ips
    if result.routes:
        out["routes"] = [{"dst": r.dst, **({"gw": r.gw} if r.gw else {})} for r in result.routes]
    out["dns"] = dict(result.dns)
    return out


def _bad(msg: str) -> CNIError:
    return CNIError(errors.INVALID_NETWORK_CONFIG, f"prevResult: {msg}")


def parse(prev: Mapping[str, Any]) -> Result:
    """Read a prevResult of any supported version; errors (code 7) name the field."""
    interfaces = []
    raw_ifaces = prev.get("interfaces", [])
    if not isinstance(raw_ifaces, list):
        raise _bad("interfaces must be a list")
    for i in raw_ifaces:
        if not isinstance(i, dict) or not isinstance(i.get("name"), str):
            raise _bad("each interface needs a name")
        interfaces.append(
            Interface(
                name=i["name"],
                mac=str(i.get("mac", "")),
                sandbox=str(i.get("sandbox", "")),
                mtu=int(i.get("mtu", 0) or 0),
            )
        )
    ips = []
    raw_ips = prev.get("ips", [])
    if not isinstance(raw_ips, list):
        raise _bad("ips must be a list")
    for ip in raw_ips:
        if not isinstance(ip, dict):
            raise _bad("each ips entry must be an object")
        try:
            address = ipaddress.ip_interface(ip.get("address", ""))
        except ValueError:
            raise _bad(f"ips address {ip.get('address')!r} is not a CIDR") from None
        index = ip.get("interface")
        if index is not None and (not isinstance(index, int) or index >= len(interfaces)):
            raise _bad(f"ips interface index {index!r} is out of range")
        ips.append(IPConfig(address=address, gateway=str(ip.get("gateway", "")), interface=index))
    routes = [
        Route(dst=str(r.get("dst", "")), gw=str(r.get("gw", "")))
        for r in prev.get("routes", []) or []
        if isinstance(r, dict)
    ]
    dns = prev.get("dns", {}) if isinstance(prev.get("dns", {}), dict) else {}
    return Result(interfaces=interfaces, ips=ips, routes=routes, dns=dns)


def sandbox_interface(result: Result, ifname: str) -> tuple[int, Interface] | None:
    for index, i in enumerate(result.interfaces):
        if i.name == ifname and i.sandbox:
            return index, i
    return None


def addresses_of(result: Result, index: int | None) -> Sequence[IPInterface]:
    return [ip.address for ip in result.ips if index is None or ip.interface == index]
