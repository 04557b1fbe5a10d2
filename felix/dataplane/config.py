"""Dataplane configuration: what the daemon tells the managers before any message."""

from __future__ import annotations

from dataclasses import dataclass

from felix.netlink.constants import RT_TABLE_MAIN


@dataclass(frozen=True)
class DataplaneConfig:
    hostname: str
    netns: str | None = None  # `ip netns` name or /proc/PID/ns/net path; None: current
    route_protocol: int = 80  # rtm_protocol marking the routes we own
    route_table: int = RT_TABLE_MAIN
    route_metric: int = 0  # 0: the kernel default (IPv6 reports 1024)
    interface_prefix: str = "cali"
    vxlan_device: str = "vxlan.tabby"
    vxlan_vni: int = 4096
    vxlan_port: int = 4789
    vxlan_mtu: int = 0  # 0: smallest uplink MTU minus VXLAN overhead (50)
    vxlan_enabled: bool = True
    ipip_device: str = "tunl0"
    ipip_enabled: bool = False
    mtu_file: str = "/var/lib/tabby/mtu"  # published for the CNI plugin
    resync_interval: float = 90.0  # seconds between full dump+diff resyncs
    # Kernel routes of ours that nothing claims are kept this long after start-up
    # unless the BGP daemon's end_of_rib arrives first: they may be learned routes
    # about to be re-announced.
    learned_routes_grace: float = 90.0
    sysctl_root: str = "/proc/sys"
