"""Adj-RIB-In -> Loc-RIB -> Adj-RIB-Out behaviour a peer on the wire would notice."""

from __future__ import annotations

import ipaddress

from bgp.rib import (
    AdjRibOut,
    ExportTarget,
    LocalSettings,
    PeerRef,
    PrefixFilter,
    Rib,
)
from bgp.wire.types import (
    AFI_IPV4,
    AFI_IPV6,
    AS_SEQUENCE,
    NO_ADVERTISE,
    NO_EXPORT,
    ORIGIN_IGP,
    AsPathSegment,
    PathAttributes,
    Prefix,
)

LOCAL = LocalSettings(65000, ipaddress.IPv4Address("10.0.0.1"))
MY_V4 = ipaddress.IPv4Address("10.0.0.1")
MY_V6 = ipaddress.IPv6Address("fd00::1")


def pfx(s: str) -> Prefix:
    return Prefix(ipaddress.ip_network(s))


def attrs(asns=(65001,), nh="192.0.2.1", **kw) -> PathAttributes:
    base = dict(
        origin=ORIGIN_IGP,
        as_path=(AsPathSegment(AS_SEQUENCE, tuple(asns)),) if asns else (),
        next_hop=ipaddress.ip_address(nh) if nh else None,
    )
    base.update(kw)
    return PathAttributes(**base)


class Net:
    """A Rib with named peers brought up, for readable tests."""

    def __init__(self, local: LocalSettings = LOCAL) -> None:
        self.rib = Rib(local)
        self.changes: list[tuple[str, str | None]] = []
        self.rib.best_listeners.append(
            lambda p, best: self.changes.append((str(p), best and best.source.name))
        )

    def up(self, addr: str, asn: int, *, client=False, rid=None, keep_nh=False, **kw) -> str:
        ip = ipaddress.ip_address(addr)
        self.rib.add_peer(addr, **kw)
        ref = PeerRef(
            ip, asn, ipaddress.IPv4Address(rid or addr), ibgp=asn == 65000, rr_client=client
        )
        target = ExportTarget(
            ref, next_hop_v4=MY_V4, next_hop_v6=MY_V6, keep_original_next_hop=keep_nh
        )
        self.rib.peer_up(addr, ref, target)
        return addr

    def sent(self, key: str) -> dict[str, PathAttributes | None]:
        out = self.rib.flush(key)
        result: dict[str, PathAttributes | None] = {}
        for a, prefixes in out.announce:
            for p in prefixes:
                result[str(p)] = a
        for p in out.withdraw:
            result[str(p)] = None
        return result


def test_ebgp_route_is_advertised_to_ebgp_with_prepend_and_next_hop_self():
    n = Net()
    a = n.up("192.0.2.1", 65001)
    b = n.up("192.0.2.2", 65002)
    n.rib.apply_update(a, [], attrs(med=7, local_pref=300), [pfx("10.1.0.0/24")])
    out = n.sent(b)["10.1.0.0/24"]
    assert out is not None
    assert out.as_path == (AsPathSegment(AS_SEQUENCE, (65000, 65001)),)
    assert out.next_hop == MY_V4
    assert out.med is None and out.local_pref is None
    # Never sent back to the peer it came from.
    assert n.sent(a) == {}


def test_keep_original_next_hop_towards_ebgp():
    n = Net()
    a = n.up("192.0.2.1", 65001)
    b = n.up("192.0.2.2", 65002, keep_nh=True)
    n.rib.apply_update(a, [], attrs(nh="192.0.2.77"), [pfx("10.1.0.0/24")])
    assert n.sent(b)["10.1.0.0/24"].next_hop == ipaddress.ip_address("192.0.2.77")


def test_ebgp_route_to_ibgp_keeps_next_hop_and_gets_local_pref():
    n = Net()
    a = n.up("192.0.2.1", 65001)
    i = n.up("10.0.0.2", 65000)
    n.rib.apply_update(a, [], attrs(local_pref=999), [pfx("10.1.0.0/24")])
    out = n.sent(i)["10.1.0.0/24"]
    assert out.next_hop == ipaddress.ip_address("192.0.2.1")
    assert out.local_pref == 100  # eBGP LOCAL_PREF ignored, default applied
    assert out.as_path == (AsPathSegment(AS_SEQUENCE, (65001,)),)


def test_ibgp_split_horizon_without_route_reflection():
    n = Net()
    i1 = n.up("10.0.0.2", 65000)
    i2 = n.up("10.0.0.3", 65000)
    e = n.up("192.0.2.2", 65002)
    n.rib.apply_update(i1, [], attrs(asns=(65009,), local_pref=100), [pfx("10.1.0.0/24")])
    assert n.sent(i2) == {}
    assert "10.1.0.0/24" in n.sent(e)


def test_route_reflector_reflects_client_routes_to_everyone_with_originator_and_cluster():
    n = Net()
    c1 = n.up("10.0.0.2", 65000, client=True)
    c2 = n.up("10.0.0.3", 65000, client=True)
    nc = n.up("10.0.0.4", 65000)
    n.rib.apply_update(c1, [], attrs(asns=(), nh="10.0.0.2", local_pref=100), [pfx("10.2.0.0/26")])
    for target in (c2, nc):
        out = n.sent(target)["10.2.0.0/26"]
        assert out.originator_id == ipaddress.IPv4Address("10.0.0.2")
        assert out.cluster_list == (LOCAL.router_id,)
        assert out.next_hop == ipaddress.ip_address("10.0.0.2")


def test_route_reflector_sends_non_client_routes_only_to_clients():
    n = Net()
    c1 = n.up("10.0.0.2", 65000, client=True)
    nc1 = n.up("10.0.0.4", 65000)
    nc2 = n.up("10.0.0.5", 65000)
    n.rib.apply_update(nc1, [], attrs(asns=(), nh="10.0.0.4", local_pref=100), [pfx("10.4.0.0/26")])
    assert "10.4.0.0/26" in n.sent(c1)
    assert n.sent(nc2) == {}


def test_cluster_list_loop_and_own_originator_are_rejected():
    n = Net(
        LocalSettings(65000, ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv4Address("7.7.7.7"))
    )
    i = n.up("10.0.0.2", 65000)
    r1 = n.rib.apply_update(
        i,
        [],
        attrs(asns=(), cluster_list=(ipaddress.IPv4Address("7.7.7.7"),)),
        [pfx("10.5.0.0/24")],
    )
    r2 = n.rib.apply_update(
        i, [], attrs(asns=(), originator_id=ipaddress.IPv4Address("10.0.0.1")), [pfx("10.6.0.0/24")]
    )
    assert r1.rejected == 1 and r2.rejected == 1
    assert n.rib.best == {}


def test_as_path_loop_on_receipt_is_not_used_but_kept_in_adj_rib_in():
    n = Net()
    a = n.up("192.0.2.1", 65001)
    result = n.rib.apply_update(a, [], attrs(asns=(65001, 65000, 3)), [pfx("10.1.0.0/24")])
    assert result.rejected == 1 and result.announced == 0
    assert n.rib.best == {}
    assert not n.rib.peers[a].adj_in[pfx("10.1.0.0/24")].accepted


def test_no_export_stays_out_of_ebgp_and_no_advertise_stays_everywhere():
    n = Net()
    a = n.up("192.0.2.1", 65001)
    b = n.up("192.0.2.2", 65002)
    i = n.up("10.0.0.2", 65000)
    n.rib.apply_update(a, [], attrs(communities=(NO_EXPORT,)), [pfx("10.1.0.0/24")])
    n.rib.apply_update(a, [], attrs(communities=(NO_ADVERTISE,)), [pfx("10.2.0.0/24")])
    assert list(n.sent(b)) == []
    assert list(n.sent(i)) == ["10.1.0.0/24"]


def test_better_path_replaces_and_withdrawal_falls_back_then_withdraws():
    n = Net()
    a = n.up("192.0.2.1", 65001)
    b = n.up("192.0.2.2", 65002)
    i = n.up("10.0.0.2", 65000)
    p = pfx("10.1.0.0/24")
    n.rib.apply_update(a, [], attrs(asns=(65001, 1, 2)), [p])
    assert n.sent(i)[str(p)].next_hop == ipaddress.ip_address("192.0.2.1")
    n.rib.apply_update(b, [], attrs(asns=(65002,), nh="192.0.2.2"), [p])
    assert n.sent(i)[str(p)].next_hop == ipaddress.ip_address("192.0.2.2")
    n.rib.apply_update(b, [p], None, [])
    assert n.sent(i)[str(p)].next_hop == ipaddress.ip_address("192.0.2.1")
    n.rib.apply_update(a, [p], None, [])
    assert n.sent(i) == {str(p): None}
    assert n.changes == [
        (str(p), "192.0.2.1"),
        (str(p), "192.0.2.2"),
        (str(p), "192.0.2.1"),
        (str(p), None),
    ]


def test_treat_as_withdraw_removes_the_previous_route():
    n = Net()
    a = n.up("192.0.2.1", 65001)
    p = pfx("10.1.0.0/24")
    n.rib.apply_update(a, [], attrs(), [p])
    result = n.rib.apply_update(a, [], attrs(), [p], treat_as_withdraw=True)
    assert result.withdrawn == 1 and n.rib.best == {}


def test_import_prefix_filter_and_max_prefixes():
    n = Net()
    a = n.up(
        "192.0.2.1",
        65001,
        import_filter=PrefixFilter.parse(["10.0.0.0/8", {"cidr": "0.0.0.0/0", "action": "reject"}]),
        max_prefixes=2,
    )
    r = n.rib.apply_update(a, [], attrs(), [pfx("10.1.0.0/24"), pfx("172.16.0.0/16")])
    assert (r.announced, r.rejected, r.max_prefix_exceeded) == (1, 1, False)
    r = n.rib.apply_update(a, [], attrs(), [pfx("10.2.0.0/24"), pfx("10.3.0.0/24")])
    assert r.max_prefix_exceeded


def test_export_prefix_filter():
    n = Net()
    a = n.up("192.0.2.1", 65001)
    ref = PeerRef(ipaddress.ip_address("192.0.2.2"), 65002, ipaddress.IPv4Address("2.2.2.2"), False)
    n.rib.add_peer("b")
    n.rib.peer_up(
        "b", ref, ExportTarget(ref, MY_V4, MY_V6, export_filter=PrefixFilter.parse(["10.1.0.0/16"]))
    )
    n.rib.apply_update(a, [], attrs(), [pfx("10.1.2.0/24"), pfx("10.9.0.0/24")])
    assert list(n.sent("b")) == ["10.1.2.0/24"]


def test_originated_routes_go_out_with_next_hop_self_per_family():
    n = Net()
    n.rib.originate(pfx("10.244.1.0/26"), PathAttributes(origin=ORIGIN_IGP))
    n.rib.originate(pfx("fd00:244::/64"), PathAttributes(origin=ORIGIN_IGP))
    i = n.up("10.0.0.2", 65000)
    e = n.up("192.0.2.2", 65002)
    si, se = n.sent(i), n.sent(e)
    assert si["10.244.1.0/26"].next_hop == MY_V4 and si["10.244.1.0/26"].local_pref == 100
    assert si["fd00:244::/64"].next_hop == MY_V6
    assert se["10.244.1.0/26"].as_path == (AsPathSegment(AS_SEQUENCE, (65000,)),)
    n.rib.withdraw_originated(pfx("10.244.1.0/26"))
    assert n.sent(i) == {"10.244.1.0/26": None}


def test_no_next_hop_of_the_family_means_not_advertised():
    n = Net()
    n.rib.originate(pfx("fd00:244::/64"), PathAttributes(origin=ORIGIN_IGP))
    ref = PeerRef(ipaddress.ip_address("192.0.2.2"), 65002, ipaddress.IPv4Address("2.2.2.2"), False)
    n.rib.add_peer("b")
    n.rib.peer_up("b", ref, ExportTarget(ref, next_hop_v4=MY_V4))
    assert n.sent("b") == {}


def test_peer_down_withdraws_its_routes_from_others():
    n = Net()
    a = n.up("192.0.2.1", 65001)
    i = n.up("10.0.0.2", 65000)
    n.rib.apply_update(a, [], attrs(), [pfx("10.1.0.0/24"), pfx("10.2.0.0/24")])
    n.sent(i)
    assert n.rib.peer_down(a, keep_stale=False) == 2
    assert n.sent(i) == {"10.1.0.0/24": None, "10.2.0.0/24": None}


def test_graceful_restart_keeps_stale_routes_until_end_of_rib():
    n = Net()
    a = n.up("192.0.2.1", 65001)
    i = n.up("10.0.0.2", 65000)
    keep, gone, v6 = pfx("10.1.0.0/24"), pfx("10.2.0.0/24"), pfx("2001:db8::/48")
    n.rib.apply_update(a, [], attrs(), [keep, gone])
    n.rib.apply_update(a, [], attrs(nh="2001:db8::1"), [v6])
    n.sent(i)
    n.rib.peer_down(a, keep_stale=True)
    assert n.sent(i) == {}  # nothing withdrawn while the peer restarts
    assert all(p.stale for p in n.rib.peers[a].adj_in.values())
    n.up("192.0.2.1", 65001)
    n.rib.apply_update(a, [], attrs(), [keep])
    assert not n.rib.peers[a].adj_in[keep].stale
    assert n.rib.sweep_stale(a, AFI_IPV4) == 1
    assert n.sent(i) == {str(gone): None}
    assert n.rib.peers[a].adj_in[v6].stale  # other family waits for its own End-of-RIB
    assert n.rib.sweep_stale(a, AFI_IPV6) == 1


def test_adj_rib_out_groups_prefixes_by_equal_attributes_and_suppresses_duplicates():
    out = AdjRibOut()
    a1, a2, b = attrs(), attrs(), attrs(med=5)
    for i in range(300):
        out.stage(pfx(f"10.{i // 256}.{i % 256}.0/24"), a1 if i % 2 else a2)
    out.stage(pfx("172.16.0.0/16"), b)
    batch = out.flush()
    assert sorted(len(p) for _, p in batch.announce) == [1, 300]
    # Re-staging the same attributes sends nothing; a flap before flush sends nothing.
    out.stage(pfx("10.0.0.0/24"), attrs())
    out.stage(pfx("192.168.0.0/24"), b)
    out.stage(pfx("192.168.0.0/24"), None)
    assert not out.flush()


def test_full_table_to_a_peer_that_comes_up_later():
    n = Net()
    a = n.up("192.0.2.1", 65001)
    prefixes = [pfx(f"10.{i // 256}.{i % 256}.0/24") for i in range(2000)]
    n.rib.apply_update(a, [], attrs(), prefixes)
    late = n.up("192.0.2.9", 65009)
    batch = n.rib.flush(late)
    assert len(batch.announce) == 1 and len(batch.announce[0][1]) == 2000
