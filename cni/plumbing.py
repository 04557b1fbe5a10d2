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
import time
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from cni import netns

log = logging.getLogger(__name__)

GATEWAY_V4 = "169.254.1.1"
RT_SCOPE_LINK = 253
IFA_F_NODAD = 0x02
LINK_LOCAL_WAIT_SECONDS = 3.0
DEFAULT_MTU = 1500

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


def _lookup(ip: IPRoute, name: str) -> int | None:
    found = ip.link_lookup(ifname=name)
    return found[0] if found else None


def _mac(ip: IPRoute, index: int) -> str:
    return ip.link("get", index=index)[0].get_attr("IFLA_ADDRESS")


def _link_local(ip: IPRoute, index: int) -> str:
    """The host end's fe80:: address; the kernel adds it as the link comes up."""
    deadline = time.monotonic() + LINK_LOCAL_WAIT_SECONDS
    while True:
        for msg in ip.get_addr(family=10, index=index):
            addr = msg.get_attr("IFA_ADDRESS")
            if addr and addr.startswith("fe80:"):
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
) -> str:
    """Inside the pod netns: addresses, gateway route, default routes. Returns the pod MAC."""
    with IPRoute() as ip:
        index = _lookup(ip, pod_ifname)
        if index is None:
            raise PlumbingError(f"pod interface {pod_ifname} missing after veth creation")
        if ipv6:
            _write_sysctl(f"/proc/sys/net/ipv6/conf/{pod_ifname}/disable_ipv6", "0")
            _write_sysctl(f"/proc/sys/net/ipv6/conf/{pod_ifname}/accept_dad", "0")
        ip.link("set", index=index, mtu=mtu, state="up")
        for addr in ipv4:
            ip.addr("add", index=index, address=str(addr.ip), prefixlen=32)
        for addr in ipv6:
            ip.addr("add", index=index, address=str(addr.ip), prefixlen=128, flags=IFA_F_NODAD)
        if ipv4:
            ip.route("add", dst=f"{GATEWAY_V4}/32", oif=index, scope=RT_SCOPE_LINK)
            ip.route("add", dst="0.0.0.0/0", gateway=GATEWAY_V4, oif=index)
        return _mac(ip, index)


def _pod_default_v6(pod_ifname: str, gateway: str) -> None:
    with IPRoute() as ip:
        index = _lookup(ip, pod_ifname)
        if index is None:
            raise PlumbingError(f"pod interface {pod_ifname} vanished")
        ip.route("add", dst="::/0", gateway=gateway, oif=index, family=10)


def setup(
    netns_path: str,
    host_ifname: str,
    pod_ifname: str,
    mtu: int,
    ipv4: list[IPv4Iface],
    ipv6: list[IPv6Iface],
) -> PodLink:
    """Create and configure the veth pair. On failure the veth is removed again."""
    try:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise PlumbingError(f"cannot open pod network namespace {netns_path}: {exc}") from exc
    with IPRoute() as ip:
        try:
            stale = _lookup(ip, host_ifname)
            if stale is not None:
                # A previous ADD for this workload died half-way; its veth is ours to replace.
                log.warning("removing stale host veth ifname=%s", host_ifname)
                ip.link("del", index=stale)
            try:
                ip.link(
                    "add",
                    ifname=host_ifname,
                    kind="veth",
                    mtu=mtu,
                    peer={"ifname": pod_ifname, "net_ns_fd": fd, "mtu": mtu},
                )
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    raise PlumbingError(
                        f"interface {pod_ifname} already exists in {netns_path}"
                    ) from exc
                raise PlumbingError(f"creating veth {host_ifname}: {exc}") from exc
        finally:
            os.close(fd)
        index = _lookup(ip, host_ifname)
        if index is None:
            raise PlumbingError(f"host veth {host_ifname} missing after creation")
        try:
            _host_sysctls(host_ifname, bool(ipv4), bool(ipv6))
            pod_mac = netns.run_in(netns_path, lambda: _pod_side(pod_ifname, mtu, ipv4, ipv6))
            ip.link("set", index=index, state="up")
            gateway6 = ""
            if ipv6:
                gateway6 = _link_local(ip, index)
                netns.run_in(netns_path, lambda: _pod_default_v6(pod_ifname, gateway6))
            for addr in ipv4:
                ip.route("replace", dst=f"{addr.ip}/32", oif=index, scope=RT_SCOPE_LINK)
            for addr in ipv6:
                ip.route("replace", dst=f"{addr.ip}/128", oif=index, family=10)
            host_mac = _mac(ip, index)
        except (NetlinkError, OSError, netns.NetnsGone, PlumbingError) as exc:
            with contextlib.suppress(NetlinkError):
                ip.link("del", index=index)
            if isinstance(exc, PlumbingError):
                raise
            raise PlumbingError(f"configuring veth {host_ifname}/{pod_ifname}: {exc}") from exc
    return PodLink(host_ifname, host_mac, pod_ifname, pod_mac, gateway6)


def _del_in_pod(pod_ifname: str) -> bool:
    with IPRoute() as ip:
        index = _lookup(ip, pod_ifname)
        if index is None:
            return False
        ip.link("del", index=index)
        return True


def teardown(netns_path: str, host_ifname: str, pod_ifname: str) -> None:
    """Remove the pod's veth from whichever side still has it. Missing pieces are fine."""
    if netns.exists(netns_path):
        try:
            netns.run_in(netns_path, lambda: _del_in_pod(pod_ifname))
        except netns.NetnsGone:
            pass
        except NetlinkError as exc:
            raise PlumbingError(f"deleting {pod_ifname} in {netns_path}: {exc}") from exc
    with IPRoute() as ip:
        index = _lookup(ip, host_ifname)
        if index is not None:
            try:
                ip.link("del", index=index)
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    raise PlumbingError(f"deleting host veth {host_ifname}: {exc}") from exc


def host_link_exists(host_ifname: str) -> bool:
    with IPRoute() as ip:
        return _lookup(ip, host_ifname) is not None


# --- CHECK ---------------------------------------------------------------------------


def _pod_state(pod_ifname: str) -> dict[str, object]:
    with IPRoute() as ip:
        index = _lookup(ip, pod_ifname)
        if index is None:
            return {"exists": False}
        link = ip.link("get", index=index)[0]
        addrs = {
            f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}"
            for m in ip.get_addr(index=index)
            if not str(m.get_attr("IFA_ADDRESS")).startswith("fe80:")
        }
        routes = []
        for family in (2, 10):
            for r in ip.get_routes(family=family, oif=index, table=254):
                dst = r.get_attr("RTA_DST")
                default = "0.0.0.0/0" if family == 2 else "::/0"
                key = f"{dst}/{r['dst_len']}" if dst else default
                routes.append((key, r.get_attr("RTA_GATEWAY") or ""))
        return {
            "exists": True,
            "up": bool(link["flags"] & 1),
            "mac": link.get_attr("IFLA_ADDRESS"),
            "addrs": addrs,
            "routes": routes,
        }


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
    if not state["exists"]:
        return [f"interface {pod_ifname} is missing in {netns_path}"]
    if not state["up"]:
        problems.append(f"interface {pod_ifname} is down")
    if pod_mac and str(state["mac"]).lower() != pod_mac.lower():
        problems.append(f"interface {pod_ifname} has MAC {state['mac']}, expected {pod_mac}")
    have_addrs = state["addrs"]
    routes = state["routes"]
    dsts = {dst for dst, _ in routes}
    for addr in addresses:
        plen = 32 if addr.version == 4 else 128
        if f"{addr.ip}/{plen}" not in have_addrs:  # type: ignore[operator]
            problems.append(f"address {addr.ip}/{plen} missing on {pod_ifname}")
    if any(a.version == 4 for a in addresses):
        if f"{GATEWAY_V4}/32" not in dsts:
            problems.append(f"route {GATEWAY_V4}/32 dev {pod_ifname} missing in the pod")
        if ("0.0.0.0/0", GATEWAY_V4) not in routes:  # type: ignore[operator]
            problems.append(f"default route via {GATEWAY_V4} missing in the pod")
    if any(a.version == 6 for a in addresses) and "::/0" not in dsts:
        problems.append("IPv6 default route missing in the pod")
    with IPRoute() as ip:
        index = _lookup(ip, host_ifname)
        if index is None:
            problems.append(f"host interface {host_ifname} is missing")
            return problems
        for addr in addresses:
            family = 2 if addr.version == 4 else 10
            plen = 32 if addr.version == 4 else 128
            found = ip.get_routes(family=family, oif=index, table=254)
            if not any(
                r["dst_len"] == plen and r.get_attr("RTA_DST") == str(addr.ip) for r in found
            ):
                problems.append(f"host route {addr.ip}/{plen} dev {host_ifname} missing")
    return problems
