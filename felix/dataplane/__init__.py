"""Felix dataplane managers: the calc stream in, kernel state out.

Every manager has the same two steps, so the daemon can drive them alike:
``on_update(msg)`` records desired state (no I/O) and ``apply()`` does the deferred
kernel work, raising on failure so the daemon retries.
"""

from __future__ import annotations

from felix.dataplane.config import DataplaneConfig
from felix.dataplane.kernel import Kernel
from felix.dataplane.routes import RouteApplyError, RouteManager
from felix.dataplane.tunnels import IPIPManager, VXLANManager
from felix.dataplane.workloads import WorkloadInterfaceManager
from felix.manager import Manager

__all__ = [
    "DataplaneConfig",
    "IPIPManager",
    "Kernel",
    "Manager",
    "RouteApplyError",
    "RouteManager",
    "VXLANManager",
    "WorkloadInterfaceManager",
    "build_managers",
]


def build_managers(config: DataplaneConfig, kernel: Kernel | None = None) -> list[Manager]:
    """The managers in apply order: devices first, so routes can point at them.

    The RouteManager (last) also takes learned routes: find it with
    ``next(m for m in managers if isinstance(m, RouteManager))``.
    """
    kernel = kernel or Kernel(config.netns, config.sysctl_root)
    managers: list[Manager] = [WorkloadInterfaceManager(config, kernel)]
    if config.vxlan_enabled:
        managers.append(VXLANManager(config, kernel))
    if config.ipip_enabled:
        managers.append(IPIPManager(config, kernel))
    managers.append(RouteManager(config, kernel.routes))
    return managers
