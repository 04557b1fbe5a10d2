"""Table-driven tests of the decision process, one row per RFC 4271 9.1.2.2 step."""

from __future__ import annotations

import ipaddress

import pytest

from bgp.rib import Path, PeerRef, select_best
from bgp.wire.types import (
    AS_SEQUENCE,
    AS_SET,
    ORIGIN_EGP,
    ORIGIN_IGP,
    ORIGIN_INCOMPLETE,
    AsPathSegment,
    PathAttributes,
    Prefix,
)

LOCAL_AS = 65000
PFX = Prefix(ipaddress.ip_network("10.1.0.0/24"))


def peer(addr: str, asn: int = 65001, rid: str | None = None, ibgp: bool = False) -> PeerRef:
    return PeerRef(ipaddress.ip_address(addr), asn, ipaddress.IPv4Address(rid or addr), ibgp)


def path(src: PeerRef, *, asns=None, sets=(), **attrs) -> Path:
    if asns is None:
        asns = (src.asn,)
    segs = [AsPathSegment(AS_SEQUENCE, tuple(asns))] if asns else []
    if sets:
        segs.append(AsPathSegment(AS_SET, tuple(sets)))
    base = dict(origin=ORIGIN_IGP, next_hop=src.address, local_pref=100)
    base.update(attrs)
    return Path(PFX, PathAttributes(as_path=tuple(segs), **base), src)


A = peer("192.0.2.1", 65001)
B = peer("192.0.2.2", 65002)
C = peer("192.0.2.3", 65001)
I1 = peer("10.0.0.11", LOCAL_AS, ibgp=True)
I2 = peer("10.0.0.12", LOCAL_AS, ibgp=True)

CASES = [
    # (name, candidates, index of expected winner)
    ("higher LOCAL_PREF wins", [path(A, local_pref=100), path(B, local_pref=200)], 1),
    (
        "LOCAL_PREF beats shorter AS_PATH",
        [path(A, asns=(65001,), local_pref=100), path(B, asns=(65002, 1, 2), local_pref=150)],
        1,
    ),
    ("shorter AS_PATH wins", [path(A, asns=(65001, 7)), path(B, asns=(65002,))], 1),
    (
        "AS_SET counts as one",
        [path(A, asns=(65001,), sets=(1, 2, 3)), path(B, asns=(65002, 5, 6))],
        0,
    ),
    (
        "lower ORIGIN wins",
        [path(A, origin=ORIGIN_INCOMPLETE), path(B, origin=ORIGIN_EGP), path(C, origin=ORIGIN_IGP)],
        2,
    ),
    ("lower MED wins within one neighbour AS", [path(A, med=50), path(C, med=10)], 1),
    (
        "MED not compared across neighbour ASes: falls to router id",
        [path(A, med=500), path(B, med=10)],
        0,
    ),
    ("missing MED counts as 0", [path(A, med=5), path(C)], 1),
    (
        "eBGP over iBGP",
        [path(I1, asns=(65009,)), path(B, asns=(65009,))],
        1,
    ),
    (
        "lower router id wins",
        [
            path(peer("192.0.2.9", 65001, rid="9.9.9.9")),
            path(peer("192.0.2.8", 65002, rid="1.1.1.1")),
        ],
        1,
    ),
    (
        "ORIGINATOR_ID replaces router id (RFC 4456 9)",
        [
            path(I1, asns=(65009,), originator_id=ipaddress.IPv4Address("10.9.9.9")),
            path(I2, asns=(65009,), originator_id=ipaddress.IPv4Address("10.0.0.1")),
        ],
        1,
    ),
    (
        "shorter CLUSTER_LIST wins",
        [
            path(
                I1,
                asns=(65009,),
                originator_id=ipaddress.IPv4Address("10.5.5.5"),
                cluster_list=(ipaddress.IPv4Address("1.1.1.1"), ipaddress.IPv4Address("2.2.2.2")),
            ),
            path(
                I2,
                asns=(65009,),
                originator_id=ipaddress.IPv4Address("10.5.5.5"),
                cluster_list=(ipaddress.IPv4Address("3.3.3.3"),),
            ),
        ],
        1,
    ),
    (
        "lowest peer address breaks the last tie",
        [
            path(peer("192.0.2.20", 65001, rid="5.5.5.5")),
            path(peer("192.0.2.10", 65001, rid="5.5.5.5")),
        ],
        1,
    ),
]


@pytest.mark.parametrize(("name", "candidates", "winner"), CASES, ids=[c[0] for c in CASES])
def test_decision_process(name, candidates, winner):
    assert select_best(candidates, LOCAL_AS) is candidates[winner]
    # The outcome does not depend on the order candidates are offered in.
    assert select_best(list(reversed(candidates)), LOCAL_AS) is candidates[winner]


def test_med_is_not_transitive_and_elimination_follows_the_rfc():
    # A(65001, MED 20), C(65001, MED 10), B(65002, MED 15): C eliminates A; then B vs C by
    # router id. A pairwise sort could wrongly pick A or depend on order.
    a, c = path(A, med=20), path(C, med=10)
    b = path(peer("192.0.2.2", 65002, rid="0.0.0.1"), med=15)
    for order in ([a, b, c], [c, b, a], [b, a, c]):
        assert select_best(order, LOCAL_AS) is b


def test_local_route_beats_learned_with_same_local_pref():
    local = Path(
        PFX,
        PathAttributes(origin=ORIGIN_INCOMPLETE, local_pref=100),
        PeerRef(None, LOCAL_AS, ipaddress.IPv4Address("10.0.0.1"), ibgp=True),
    )
    assert select_best([path(A, asns=()), local], LOCAL_AS) is local


def test_unaccepted_paths_never_win():
    p = path(A)
    p.accepted = False
    assert select_best([p], LOCAL_AS) is None
    q = path(B, local_pref=10)
    assert select_best([p, q], LOCAL_AS) is q
