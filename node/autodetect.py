"""Which address a node registers: Calico's IP autodetection methods.

``first-found`` (default), ``interface=REGEX``, ``skip-interface=REGEX``,
``can-reach=DEST`` and ``cidr=CIDR[,CIDR...]``. The choice (``choose``) is pure; the
kernel is read by ``read_interfaces`` and ``source_address_towards``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from dataclasses import dataclass

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

# Interfaces never chosen by first-found: container plumbing and tunnels, as Calico.
DEFAULT_EXCLUDES = (
    r"^lo$",
    r"^docker.*",
    r"^cbr.*",
    r"^dummy.*",
    r"^virbr.*",
    r"^lxcbr.*",
    r"^veth.*",
    r"^cali.*",
    r"^tunl.*",
    r"^flannel.*",
    r"^kube-ipvs.*",
    r"^cni.*",
    r"^vxlan.*",
    r"^nodelocaldns.*",
)


class AutodetectError(ValueError):
    """The method is malformed or found no address; the message says which."""


@dataclass(frozen=True)
class InterfaceAddresses:
    name: str
    addresses: tuple[IPInterface, ...]


def _usable(addr: IPInterface) -> bool:
    ip = addr.ip
    return not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified)


def _of_family(interfaces: list[InterfaceAddresses], version: int):
    for iface in interfaces:
        for addr in iface.addresses:
            if addr.version == version and _usable(addr):
                yield iface.name, addr


def choose(
    method: str,
    interfaces: list[InterfaceAddresses],
    version: int = 4,
    reach_source: IPInterface | None = None,
) -> IPInterface:
    """The address ``method`` picks among ``interfaces`` (in kernel order).

    ``reach_source`` is the answer of ``source_address_towards`` for ``can-reach``.
    """
    kind, _, arg = method.partition("=")
    kind = kind.strip()
    if kind == "first-found":
        excludes = [re.compile(p) for p in DEFAULT_EXCLUDES]
        candidates = [
            a for n, a in _of_family(interfaces, version) if not any(x.match(n) for x in excludes)
        ]
    elif kind in ("interface", "skip-interface"):
        if not arg:
            raise AutodetectError(f"{kind} needs a regular expression, e.g. {kind}=eth.*")
        try:
            pattern = re.compile(arg)
        except re.error as exc:
            raise AutodetectError(f"{kind}={arg}: bad regular expression: {exc}") from None
        want = kind == "interface"
        candidates = [
            a for n, a in _of_family(interfaces, version) if bool(pattern.fullmatch(n)) == want
        ]
    elif kind == "cidr":
        try:
            nets = [ipaddress.ip_network(c.strip(), strict=False) for c in arg.split(",")]
        except ValueError as exc:
            raise AutodetectError(f"cidr={arg}: {exc}") from None
        candidates = [a for _, a in _of_family(interfaces, version) if any(a.ip in n for n in nets)]
    elif kind == "can-reach":
        if not arg:
            raise AutodetectError("can-reach needs a destination, e.g. can-reach=8.8.8.8")
        if reach_source is None:
            raise AutodetectError(f"can-reach={arg}: no route to the destination")
        candidates = [a for _, a in _of_family(interfaces, version) if a.ip == reach_source.ip] or [
            reach_source
        ]
    else:
        raise AutodetectError(
            f"unknown autodetection method {method!r} (first-found, interface=REGEX, "
            "skip-interface=REGEX, can-reach=DEST, cidr=CIDR)"
        )
    if not candidates:
        raise AutodetectError(f"{method}: no IPv{version} address found")
    return candidates[0]


def _ip_json(args: list[str], netns: str | None) -> list[dict]:
    cmd = ["ip", "-j"] + (["-n", netns] if netns else []) + args
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout
    return json.loads(out or "[]")


def read_interfaces(netns: str | None = None) -> list[InterfaceAddresses]:
    """Every interface with its addresses, as the kernel lists them."""
    result = []
    for link in _ip_json(["addr", "show"], netns):
        addrs = tuple(
            ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}")
            for a in link.get("addr_info", [])
            if a.get("family") in ("inet", "inet6")
        )
        result.append(InterfaceAddresses(link["ifname"], addrs))
    return result


def source_address_towards(dest: str, netns: str | None = None) -> IPInterface | None:
    """The source address the kernel would use to reach ``dest`` (no packet is sent)."""
    try:
        routes = _ip_json(["route", "get", dest], netns)
    except subprocess.CalledProcessError:
        return None
    for route in routes:
        if "prefsrc" in route:
            return ipaddress.ip_interface(route["prefsrc"])
    return None


def autodetect(method: str, version: int = 4, netns: str | None = None) -> IPInterface:
    interfaces = read_interfaces(netns)
    reach = None
    if method.startswith("can-reach="):
        reach = source_address_towards(method.partition("=")[2], netns)
    return choose(method, interfaces, version, reach)
