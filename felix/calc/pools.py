"""IPPool resources as the stream's ``IPPoolUpdate`` (keyed by CIDR, not resource name)."""

from __future__ import annotations

from collections.abc import Iterable

from felix.calc.state import canonical_net
from model.resources import ENCAP_ALWAYS, ENCAP_CROSS_SUBNET, IPPool
from model.validation import DEFAULT_BLOCK_SIZE_V4, DEFAULT_BLOCK_SIZE_V6
from proto import calc_pb2

ENCAP_MODES = {
    ENCAP_ALWAYS: calc_pb2.ENCAP_MODE_ALWAYS,
    ENCAP_CROSS_SUBNET: calc_pb2.ENCAP_MODE_CROSS_SUBNET,
}


def pool_updates(pools: Iterable[IPPool]) -> dict[str, calc_pb2.IPPoolUpdate]:
    out: dict[str, calc_pb2.IPPoolUpdate] = {}
    for pool in sorted(pools, key=lambda p: p.name):
        try:
            net = canonical_net(pool.spec.cidr)
        except ValueError:
            continue
        cidr = str(net)
        if cidr in out:  # two resources with one CIDR: the first name wins, stably
            continue
        spec = pool.spec
        # Validation fills the default on write; a pool stored without it gets the same.
        default = DEFAULT_BLOCK_SIZE_V4 if net.version == 4 else DEFAULT_BLOCK_SIZE_V6
        block_size = spec.block_size or default
        out[cidr] = calc_pb2.IPPoolUpdate(
            id=cidr,
            pool=calc_pb2.IPPool(
                cidr=cidr,
                block_size=block_size,
                vxlan_mode=ENCAP_MODES.get(spec.vxlan_mode, calc_pb2.ENCAP_MODE_NEVER),
                ipip_mode=ENCAP_MODES.get(spec.ipip_mode, calc_pb2.ENCAP_MODE_NEVER),
                nat_outgoing=spec.nat_outgoing,
                disabled=spec.disabled,
                disable_bgp_export=spec.disable_bgp_export,
            ),
        )
    return out
