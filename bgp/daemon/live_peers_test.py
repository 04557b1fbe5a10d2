"""Peers added, changed and removed on a running speaker (cluster mode follows Felix),
over real loopback TCP."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket

import pytest

from bgp.daemon.config import PeerConfig, parse_config
from bgp.daemon.testing import speaker, until
from bgp.wire.types import Prefix

pytestmark = pytest.mark.timeout(60)


def pc(addr: str, asn: int, port: int, **kw) -> PeerConfig:
    return PeerConfig(address=ipaddress.ip_address(addr), as_number=asn, port=port, **kw)


def has(s, prefix: str) -> bool:
    return Prefix(ipaddress.ip_network(prefix)) in s.rib.best


def test_peers_added_changed_removed_live_without_flapping_the_others():
    async def main():
        a = speaker(65001, "127.0.0.1", [], originate=["10.1.0.0/24"])
        b = speaker(65002, "127.0.0.2", [{"address": "127.0.0.1", "asNumber": 65001}])
        c = speaker(65003, "127.0.0.3", [{"address": "127.0.0.1", "asNumber": 65001}])
        for s in (a, b, c):
            await s.start()
        try:
            # The peers connect to A's port; A learns of them only now.
            b_peer = b.peers["127.0.0.1"]
            c_peer = c.peers["127.0.0.1"]
            b.set_peers((dataclasses.replace(b_peer.config, port=a.listen_port),))
            c.set_peers((dataclasses.replace(c_peer.config, port=a.listen_port),))
            a.set_peers((pc("127.0.0.2", 65002, b.listen_port, kind="mesh"),))
            await until("B learns A's route", lambda: has(b, "10.1.0.0/24"))
            since_b = a.peers["127.0.0.2"].established_since
            assert a.peers["127.0.0.2"].config.kind == "mesh"

            # Add C: B's session is untouched.
            a.set_peers(
                (
                    pc("127.0.0.2", 65002, b.listen_port, kind="mesh"),
                    pc("127.0.0.3", 65003, c.listen_port),
                )
            )
            await until("C learns A's route", lambda: has(c, "10.1.0.0/24"))
            assert a.peers["127.0.0.2"].established_since == since_b

            # Change C (it becomes keepOriginalNextHop): C is reset and comes back.
            since_c = a.peers["127.0.0.3"].established_since
            a.set_peers(
                (
                    pc("127.0.0.2", 65002, b.listen_port, kind="mesh"),
                    pc("127.0.0.3", 65003, c.listen_port, keep_original_next_hop=True),
                )
            )
            assert a.peers["127.0.0.3"].config.keep_original_next_hop
            await until(
                "C re-established",
                lambda: (
                    a.peers["127.0.0.3"].established is not None
                    and a.peers["127.0.0.3"].established_since != since_c
                ),
            )
            await until("C has A's route again", lambda: has(c, "10.1.0.0/24"))
            assert a.peers["127.0.0.2"].established_since == since_b

            # Remove B: it is told why, and loses A's route; C keeps it.
            a.set_peers((pc("127.0.0.3", 65003, c.listen_port, keep_original_next_hop=True),))
            assert "127.0.0.2" not in a.peers and "127.0.0.2" not in a.rib.peers
            await until("B lost A's route", lambda: not has(b, "10.1.0.0/24"))
            b_side = b.peers["127.0.0.1"]
            await until("B saw Peer De-configured", lambda: "De-configured" in b_side.last_error)
            assert has(c, "10.1.0.0/24")
        finally:
            for s in (a, b, c):
                await s.stop()

    asyncio.run(main())


def test_removed_peer_reconnecting_is_rejected():
    async def main():
        a = speaker(65001, "127.0.0.4", [], originate=["10.4.0.0/24"])
        await a.start()
        b = speaker(65002, "127.0.0.5", [{"address": "127.0.0.4", "asNumber": 65001,
                                          "port": a.listen_port}])  # fmt: skip
        await b.start()
        try:
            a.set_peers((pc("127.0.0.5", 65002, b.listen_port),))
            await until("B learns A's route", lambda: has(b, "10.4.0.0/24"))
            a.set_peers(())
            await until("B lost it", lambda: not has(b, "10.4.0.0/24"))
            await asyncio.sleep(1.5)  # B retries (connectRetryTime 1): A refuses it
            assert not has(b, "10.4.0.0/24")
            assert b.peers["127.0.0.4"].established is None
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())


def test_originated_route_with_explicit_next_hop_keeps_it_to_ibgp_and_ebgp():
    """A route publisher speaks for other nodes: their address is the next hop."""

    async def main():
        pub = speaker(
            64512,
            "127.0.0.6",
            [],
            originate=[{"prefix": "10.244.7.0/26"}],
        )
        cfg = parse_config(
            {
                "localAS": 64512,
                "routerID": "127.0.0.6",
                "originate": ["10.244.7.0/26"],
            }
        )
        orig = dataclasses.replace(cfg.originate[0], next_hop=ipaddress.ip_address("10.0.0.7"))
        await pub.start()
        pub.set_originate((orig,))
        ebgp = speaker(65000, "127.0.0.7", [{"address": "127.0.0.6", "asNumber": 64512,
                                             "port": pub.listen_port}])  # fmt: skip
        ibgp = speaker(64512, "127.0.0.8", [{"address": "127.0.0.6", "asNumber": 64512,
                                             "port": pub.listen_port}])  # fmt: skip
        await ebgp.start()
        await ibgp.start()
        try:
            pub.set_peers(
                (
                    pc("127.0.0.7", 65000, ebgp.listen_port),
                    pc("127.0.0.8", 64512, ibgp.listen_port),
                )
            )
            key = Prefix(ipaddress.ip_network("10.244.7.0/26"))
            await until("both learn it", lambda: key in ebgp.rib.best and key in ibgp.rib.best)
            assert str(ebgp.rib.best[key].attrs.next_hop) == "10.0.0.7"
            assert str(ibgp.rib.best[key].attrs.next_hop) == "10.0.0.7"
        finally:
            for s in (pub, ebgp, ibgp):
                await s.stop()

    asyncio.run(main())


def test_cluster_runner_reconciles_live_rebuilds_on_as_change_and_keeps_speaker_on_bad_config():
    from bgp.daemon.cluster import Settings, StreamView
    from bgp.daemon.felix_client import ClusterRunner
    from proto import calc_pb2

    with socket.socket() as s:
        s.bind(("127.0.0.31", 0))
        port = s.getsockname()[1]

    def cfg(**kw) -> calc_pb2.ToDataplane:
        base = {"as_number": 64512, "router_id": "127.0.0.31", "node_ipv4": "127.0.0.31",
                "listen_port": port}  # fmt: skip
        base.update(kw)
        return calc_pb2.ToDataplane(bgp_config_update=calc_pb2.BGPConfigUpdate(**base))

    def route(dst: str) -> calc_pb2.ToDataplane:
        return calc_pb2.ToDataplane(route_update=calc_pb2.RouteUpdate(dst=dst, advertise=True))

    async def main():
        runner = ClusterRunner("/nonexistent/felix.sock", Settings(listen_address="node"))
        view = StreamView()
        view.apply(cfg())
        runner.view = view
        await runner.reconcile()
        first = runner.speaker
        assert first is not None and first.listen_port == port
        try:
            view.apply(route("10.244.31.0/26"))
            await runner.reconcile()
            assert runner.speaker is first  # a new route is applied live
            assert has(first, "10.244.31.0/26")
            view.apply(cfg(rr_cluster_id="not-an-address"))
            await runner.reconcile()
            assert runner.speaker is first  # rejected: nothing changes, nothing is lost
            assert runner.config is not None and runner.config.cluster_id is None
            assert has(first, "10.244.31.0/26")
            view.apply(cfg(as_number=65031))
            await runner.reconcile()
            second = runner.speaker
            assert second is not None and second is not first
            assert second.config.local_as == 65031 and has(second, "10.244.31.0/26")
            view.bgp = None  # the node lost its BGP settings
            await runner.reconcile()
            assert runner.speaker is None
        finally:
            await runner.stop()

    asyncio.run(main())
