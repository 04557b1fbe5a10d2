"""Effective Felix configuration for one node: defaults <- ``default`` <- ``node.<name>``.

A field of a FelixConfiguration counts as set when it differs from the class
default (the resource dataclasses do not record which fields the YAML named), so a
node-specific resource cannot force a field back to its default value over a global
override. ``vxlanEnabled``/``ipipEnabled`` left unset are resolved from the pools
(on when any pool uses that encapsulation), as Calico does. One key is not a
FelixConfiguration field: ``IpInIpTunnelAddr``, this node's IPIP tunnel address from
its Node resource, under Calico's name, which the IPIP manager puts on tunl0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from model.resources import (
    ENCAP_NEVER,
    FelixConfiguration,
    FelixConfigurationSpec,
    IPPool,
    Node,
)
from proto import calc_pb2

_DEFAULTS = FelixConfigurationSpec()
IPIP_TUNNEL_ADDR = "IpInIpTunnelAddr"


def _render(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def effective_config(
    hostname: str,
    configs: Mapping[str, FelixConfiguration],
    pools: Iterable[IPPool],
    node: Node | None = None,
) -> calc_pb2.ConfigUpdate:
    """Keys are the snake_case field names of ``FelixConfigurationSpec``, plus
    ``IpInIpTunnelAddr`` when ``node`` (this node's Node) has one."""
    values: dict[str, object] = {
        f.name: getattr(_DEFAULTS, f.name) for f in dataclasses.fields(_DEFAULTS)
    }
    for name in ("default", f"node.{hostname}"):
        res = configs.get(name)
        if res is None:
            continue
        for f in dataclasses.fields(res.spec):
            value = getattr(res.spec, f.name)
            if value != getattr(_DEFAULTS, f.name):
                values[f.name] = value
    pools = list(pools)
    if values["vxlan_enabled"] is None:
        values["vxlan_enabled"] = any(
            p.spec.vxlan_mode != ENCAP_NEVER and not p.spec.disabled for p in pools
        )
    if values["ipip_enabled"] is None:
        values["ipip_enabled"] = any(
            p.spec.ipip_mode != ENCAP_NEVER and not p.spec.disabled for p in pools
        )
    if node is not None and node.spec.ipv4_ipip_tunnel_addr:
        values[IPIP_TUNNEL_ADDR] = node.spec.ipv4_ipip_tunnel_addr
    return calc_pb2.ConfigUpdate(config={k: _render(v) for k, v in values.items()})
