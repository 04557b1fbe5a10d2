"""Pod network plumbing in the kernel, shaped like Calico's.

A veth pair per pod: the host end (``caliXXXXXXXXXXX``) carries no address and
answers ARP for the pod's gateway by proxy ARP; the pod end gets the pod's
addresses as /32 and /128, a link-scope route to 169.254.1.1 and a default route via
it (IPv6: via the host end's link-local address). On the host, ``<podIP>/32 dev
caliX scope link`` delivers traffic to the pod.

Everything runs in the calling thread's namespace (the node) except the pod side,
which runs through ``netns.run_in``. Errors are ``PlumbingError`` naming the step.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import socket
import time
from dataclasses import dataclass

from cni import netns
from cni.rtnl import IFA_F_NODAD, Link, Rtnl, RtnlError
from felix.netlink.codec import Route
from felix.netlink.constants import RT_SCOPE_LINK, RTPROT_STATIC

log = logging.getLogger(__name__)

GATEWAY_V4 = "169.254.1.1"
LINK_LOCAL_WAIT_SECONDS = 3.0
DEFAULT_MTU = 1500
ENODEV = errno.ENODEV

IPv4Iface = ipaddress.IPv4Interface
IPv6Iface = ipaddress.IPv6Interface


class PlumbingError(Exception):
    """A kernel step failed; ``str()`` names the step and the interface."""


@dataclass(frozen=True)
class PodLink:
    """What ADD reports: both ends of the veth."""

    host_ifname: str
    host_mac: str
    pod_ifname: str
    pod_mac: str
    ipv6_gateway: str = ""  # the host end's link-local address, when IPv6 is in use


def resolve_mtu(configured: int, mtu_file: str) -> int:
    """The config's ``mtu``, else the value Felix publishes in ``mtu_file``, else 1500."""
    if configured > 0:
        return configured
    try:
        with open(mtu_file, encoding="ascii") as f:
            value = int(f.read().strip())
        if value >= 68:
            return value
        log.warning("ignoring mtu file value path=%s value=%d", mtu_file, value)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.warning("unreadable mtu file path=%s error=%s", mtu_file, exc)
    return DEFAULT_MTU


def _write_sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    except OSError as exc:
        raise PlumbingError(f"cannot set {path}={value}: {exc}") from exc


def _link_local(nl: Rtnl, index: int) -> str:
    """The host end's fe80:: address; the kernel adds it as the link comes up."""
    deadline = time.monotonic() + LINK_LOCAL_WAIT_SECONDS
    while True:
        for addr, _ in nl.addrs(index, socket.AF_INET6):
            if addr.startswith("fe80:"):
                return addr
        if time.monotonic() > deadline:
            raise PlumbingError(f"no IPv6 link-local address appeared on index {index}")
        time.sleep(0.01)


def _host_sysctls(ifname: str, v4: bool, v6: bool) -> None:
    if v4:
        _write_sysctl(f"/proc/sys/net/ipv4/conf/{ifname}/proxy_arp", "1")
        _write_sysctl(f"/proc/sys/net/ipv4/conf/{ifname}/forwarding", "1")
        _write_sysctl(f"/proc/sys/net/ipv4/neigh/{ifname}/proxy_delay", "0")
    if v6:
        _write_sysctl(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "0")
        _write_sysctl(f"/proc/sys/net/ipv6/conf/{ifname}/forwarding", "1")
        _write_sysctl(f"/proc/sys/net/ipv6/conf/{ifname}/accept_ra", "0")


def _pod_side(
    pod_ifname: str,
    mtu: int,
    ipv4: list[IPv4Iface],
    ipv6: list[IPv6Iface],
) -> tuple[str, Rtnl]:
    """Inside the pod netns: addresses, gateway route, default route.

    Returns the pod MAC and the socket, still open and bound to the pod's namespace,
    for the IPv6 default route that can only follow once the host end is up.
    """
    nl = Rtnl()
    try:
        link = nl.link(name=pod_ifname)
        if link is None:
            raise PlumbingError(f"pod interface {pod_ifname} missing after veth creation")
        index = link.index
        if ipv6:
            _write_sysctl(f"/proc/sys/net/ipv6/conf/{pod_ifname}/disable_ipv6", "0")
            _write_sysctl(f"/proc/sys/net/ipv6/conf/{pod_ifname}/accept_dad", "0")
        nl.set_link(index, up=True, mtu=mtu if mtu != link.mtu else 0)
        for addr in ipv4:
            nl.add_addr(index, IPv4Iface(f"{addr.ip}/32"))
        for addr in ipv6:
            nl.add_addr(index, IPv6Iface(f"{addr.ip}/128"), IFA_F_NODAD)
        if ipv4:
            nl.add_route(
                Route(
                    dst=f"{GATEWAY_V4}/32", oif=index, scope=RT_SCOPE_LINK, protocol=RTPROT_STATIC
                )
            )
            nl.add_route(
                Route(dst="0.0.0.0/0", gateway=GATEWAY_V4, oif=index, protocol=RTPROT_STATIC)
            )
        return link.mac, nl
    except BaseException:
        nl.close()
        raise


def random_mac() -> str:
    """A unicast, locally administered MAC, chosen here so ADD knows it before the kernel."""
    b = bytearray(os.urandom(6))
    b[0] = (b[0] & 0xFE) | 0x02
    return ":".join(f"{x:02x}" for x in b)


def create_veth(
    netns_path: str, host_ifname: str, pod_ifname: str, mtu: int, pod_mac: str = ""
) -> None:
    """Step 1 of ADD, before the addresses are known: the veth pair, host end configured.

    Split from ``configure`` so ADD can run it while IPAM talks to the datastore.
    On failure nothing is left behind.
    """
    try:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise PlumbingError(f"cannot open pod network namespace {netns_path}: {exc}") from exc
    with Rtnl() as nl:
        try:
            stale = nl.index(host_ifname)
            if stale is not None:
                # A previous ADD for this workload died half-way; its veth is ours to replace.
                log.warning("removing stale host veth ifname=%s", host_ifname)
                nl.del_link(stale)
            try:
                nl.add_veth(host_ifname, pod_ifname, mtu, fd, pod_mac)
            except RtnlError as exc:
                if exc.errno == errno.EEXIST:
                    raise PlumbingError(
                        f"interface {pod_ifname} already exists in {netns_path}"
                    ) from exc
                raise PlumbingError(f"creating veth {host_ifname}: {exc}") from exc
        finally:
            os.close(fd)
        index = nl.index(host_ifname)
        if index is None:
            raise PlumbingError(f"host veth {host_ifname} missing after creation")
        try:
            _host_sysctls(host_ifname, v4=True, v6=False)
        except PlumbingError:
            with contextlib.suppress(RtnlError):
                nl.del_link(index)
            raise


# Felix's route protocol (FelixConfiguration deviceRouteProtocol, default 80). The host
# route is written with it so Felix adopts the route as its own instead of colliding with
# it (EEXIST) when it programs the same /32 for the endpoint.
HOST_ROUTE_PROTOCOL = 80


def configure(
    netns_path: str,
    host_ifname: str,
    pod_ifname: str,
    mtu: int,
    ipv4: list[IPv4Iface],
    ipv6: list[IPv6Iface],
) -> PodLink:
    """Step 2 of ADD: addresses and routes on both ends. On failure the veth is removed."""
    with Rtnl() as nl:
        host = nl.link(name=host_ifname)
        if host is None:
            raise PlumbingError(f"host veth {host_ifname} vanished before configuration")
        index = host.index
        pod_nl: Rtnl | None = None
        try:
            if ipv6:
                _host_sysctls(host_ifname, v4=False, v6=True)
            pod_mac, pod_nl = netns.run_in(
                netns_path, lambda: _pod_side(pod_ifname, mtu, ipv4, ipv6)
            )
            nl.set_link(index, up=True)
            gateway6 = ""
            if ipv6:
                gateway6 = _link_local(nl, index)
                pod_index = pod_nl.index(pod_ifname)
                if pod_index is None:
                    raise PlumbingError(f"pod interface {pod_ifname} vanished")
                pod_nl.add_route(
                    Route(dst="::/0", gateway=gateway6, oif=pod_index, protocol=RTPROT_STATIC)
                )
            for addr in ipv4:
                nl.add_route(
                    Route(
                        dst=f"{addr.ip}/32",
                        oif=index,
                        scope=RT_SCOPE_LINK,
                        protocol=HOST_ROUTE_PROTOCOL,
                    ),
                    replace=True,
                )
            for addr in ipv6:
                nl.add_route(
                    Route(dst=f"{addr.ip}/128", oif=index, protocol=HOST_ROUTE_PROTOCOL),
                    replace=True,
                )
        except (OSError, netns.NetnsGone, PlumbingError) as exc:
            with contextlib.suppress(RtnlError):
                nl.del_link(index)
            if isinstance(exc, PlumbingError):
                raise
            raise PlumbingError(f"configuring veth {host_ifname}/{pod_ifname}: {exc}") from exc
        finally:
            if pod_nl is not None:
                pod_nl.close()
    return PodLink(host_ifname, host.mac, pod_ifname, pod_mac, gateway6)


def setup(
    netns_path: str,
    host_ifname: str,
    pod_ifname: str,
    mtu: int,
    ipv4: list[IPv4Iface],
    ipv6: list[IPv6Iface],
) -> PodLink:
    """Create and configure the veth pair. On failure the veth is removed again."""
    create_veth(netns_path, host_ifname, pod_ifname, mtu)
    return configure(netns_path, host_ifname, pod_ifname, mtu, ipv4, ipv6)


def _del_in_pod(pod_ifname: str) -> bool:
    with Rtnl() as nl:
        index = nl.index(pod_ifname)
        if index is None:
            return False
        nl.del_link(index)
        return True


def _del_quietly_missing(nl: Rtnl, index: int) -> None:
    try:
        nl.del_link(index)
    except RtnlError as exc:
        if exc.errno != ENODEV:  # gone meanwhile (its peer was deleted): fine
            raise


def teardown(netns_path: str, host_ifname: str, pod_ifname: str) -> bool:
    """Remove the pod's veth from whichever side still has it. Missing pieces are fine.

    True when the pod end was found and deleted (the kernel removed its host peer too).
    """
    deleted = False
    if netns.exists(netns_path):
        try:
            deleted = netns.run_in(netns_path, lambda: _del_in_pod(pod_ifname))
        except netns.NetnsGone:
            pass
        except RtnlError as exc:
            if exc.errno != ENODEV:
                raise PlumbingError(f"deleting {pod_ifname} in {netns_path}: {exc}") from exc
    if not host_ifname:
        return deleted
    with Rtnl() as nl:
        index = nl.index(host_ifname)
        if index is not None:
            try:
                _del_quietly_missing(nl, index)
            except RtnlError as exc:
                raise PlumbingError(f"deleting host veth {host_ifname}: {exc}") from exc
    return deleted


# --- CHECK ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _PodState:
    """The pod interface as CHECK finds it (read inside the pod's namespace)."""

    link: Link
    addrs: set[str]  # "<ip>/<prefixlen>", link-local excluded
    routes: list[tuple[str, str]]  # (dst, gateway or "") through the interface


def _pod_state(pod_ifname: str) -> _PodState | None:
    with Rtnl() as nl:
        link = nl.link(name=pod_ifname)
        if link is None:
            return None
        addrs = {f"{a}/{plen}" for a, plen in nl.addrs(link.index) if not a.startswith("fe80:")}
        routes = [
            (r.dst, r.gateway or "")
            for family in (socket.AF_INET, socket.AF_INET6)
            for r in nl.routes(family, oif=link.index)
        ]
        return _PodState(link, addrs, routes)


def check(
    netns_path: str,
    host_ifname: str,
    pod_ifname: str,
    addresses: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface],
    pod_mac: str = "",
) -> list[str]:
    """Compare the kernel with what ADD set up. Returns problems; empty means healthy."""
    problems: list[str] = []
    try:
        state = netns.run_in(netns_path, lambda: _pod_state(pod_ifname))
    except netns.NetnsGone as exc:
        return [str(exc)]
    if state is None:
        return [f"interface {pod_ifname} is missing in {netns_path}"]
    if not state.link.up:
        problems.append(f"interface {pod_ifname} is down")
    if pod_mac and state.link.mac.lower() != pod_mac.lower():
        problems.append(f"interface {pod_ifname} has MAC {state.link.mac}, expected {pod_mac}")
    dsts = {dst for dst, _ in state.routes}
    for addr in addresses:
        plen = 32 if addr.version == 4 else 128
        if f"{addr.ip}/{plen}" not in state.addrs:
            problems.append(f"address {addr.ip}/{plen} missing on {pod_ifname}")
    if any(a.version == 4 for a in addresses):
        if f"{GATEWAY_V4}/32" not in dsts:
            problems.append(f"route {GATEWAY_V4}/32 dev {pod_ifname} missing in the pod")
        if ("0.0.0.0/0", GATEWAY_V4) not in state.routes:
            problems.append(f"default route via {GATEWAY_V4} missing in the pod")
    if any(a.version == 6 for a in addresses) and "::/0" not in dsts:
        problems.append("IPv6 default route missing in the pod")
    with Rtnl() as nl:
        index = nl.index(host_ifname)
        if index is None:
            problems.append(f"host interface {host_ifname} is missing")
            return problems
        for addr in addresses:
            family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
            plen = 32 if addr.version == 4 else 128
            found = {r.dst for r in nl.routes(family, oif=index)}
            if f"{addr.ip}/{plen}" not in found:
                problems.append(f"host route {addr.ip}/{plen} dev {host_ifname} missing")
    return problems
