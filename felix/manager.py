"""The interface between Felix's daemon and its dataplane managers.

Kept apart from both so the daemon does not import the dataplane (pyroute2, netlink)
and the dataplane does not import the daemon.
"""

from __future__ import annotations

from typing import Protocol

from proto import calc_pb2


class Manager(Protocol):
    """One dataplane concern (routes, VXLAN, workload interfaces ...).

    ``on_update`` records desired state from the calculation-graph stream (no I/O);
    ``apply`` does the deferred kernel work and raises on failure so the daemon retries.
    Optional: ``on_learned(msg)`` and ``on_learned_reset()`` to receive routes pushed by
    the BGP daemon.
    """

    def on_update(self, msg: calc_pb2.ToDataplane) -> None: ...

    def apply(self) -> None: ...
