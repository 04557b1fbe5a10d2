"""BGP full-table benchmark: one command, not a test.

    sudo python3 bench/bgp/run.py [--count 100000] [--per-update 800]

Builds a LAN of network namespaces; for each of tabby-bgpd, BIRD 2, GoBGP and FRR in
turn, starts the daemon alone on its node, lets a feeder (our codec, pre-encoded
UPDATEs) announce the table over one eBGP session, and measures the seconds from the
first UPDATE until the daemon reports every prefix received, and its RSS after. Prints
a table with ratios against GoBGP. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from bgp.interop.harness import REPO, Bird, Frr, GoBgp, Tabby, lan, workdir

FEEDER_AS = 65100
TARGET_AS = 65000


def rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_target(kind: str, net, i: int, d: pathlib.Path):
    """(handle, pid, count-probe) for one daemon on node ``i`` peering with node 0."""
    feeder, me = net.v4(0), net.v4(i)
    ns = net.nodes[i].ns
    if kind == "tabby-bgpd":
        conf = f"""
localAS: {TARGET_AS}
routerID: {me}
listenAddress: 0.0.0.0
peers:
  - {{address: {feeder}, asNumber: {FEEDER_AS}, passive: true}}
"""
        t = Tabby(ns, d, conf).start()

        def count_tabby() -> int:
            p = t.peers().get(feeder)
            return p.prefixes_accepted if p else 0

        return t, t.proc.p.pid, count_tabby
    if kind == "bird":
        b = Bird(
            ns,
            d,
            f"""
router id {me};
protocol device {{ }}
protocol bgp feeder {{
  local {me} as {TARGET_AS}; neighbor {feeder} as {FEEDER_AS}; passive on;
  ipv4 {{ import all; export none; }};
}}
""",
        )

        def count_bird() -> int:
            out = b.cli("show", "protocols", "all", "feeder")
            for line in out.splitlines():
                if "Routes:" in line:
                    return int(line.split()[1])
            return 0

        return b, b.proc.p.pid, count_bird
    if kind == "gobgp":
        g = GoBgp(
            ns,
            d,
            f"""
[global.config]
  as = {TARGET_AS}
  router-id = "{me}"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{feeder}"
    peer-as = {FEEDER_AS}
  [neighbors.transport.config]
    passive-mode = true
""",
        )

        def count_gobgp() -> int:
            out = g.cli("neighbor", feeder, "-j")
            try:
                state = json.loads(out).get("afi_safis", [])
            except ValueError:
                return 0
            return sum(int(s.get("state", {}).get("received", 0) or 0) for s in state)

        return g, g.proc.p.pid, count_gobgp
    f = Frr(
        ns,
        d,
        f"""
frr defaults traditional
router bgp {TARGET_AS}
 bgp router-id {me}
 no bgp ebgp-requires-policy
 neighbor {feeder} remote-as {FEEDER_AS}
 neighbor {feeder} passive
!
""",
    )

    def count_frr() -> int:
        peers = f.json("show bgp ipv4 unicast summary").get("peers", {})
        return int(peers.get(feeder, {}).get("pfxRcd", 0))

    return f, f.proc.p.pid, count_frr


def measure(kind: str, net, i: int, d: pathlib.Path, count: int, per_update: int) -> dict:
    handle, pid, probe = start_target(kind, net, i, d)
    feeder = None
    try:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        feeder = subprocess.Popen(
            [
                "ip", "netns", "exec", net.nodes[0].ns, sys.executable,
                str(REPO / "bench" / "bgp" / "feeder.py"), "--target", net.v4(i),
                "--source", net.v4(0), "--count", str(count), "--per-update", str(per_update),
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        line = feeder.stdout.readline()  # "start <epoch> updates <n>"
        if not line.startswith("start"):
            raise RuntimeError(f"feeder failed for {kind}: {feeder.stderr.read()[-2000:]}")
        start = float(line.split()[1])
        n = 0
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                n = probe()
            except Exception:  # a CLI hiccup while the daemon is busy: poll again
                n = n
            if n >= count:
                break
            time.sleep(0.05)
        elapsed = time.time() - start
        return {"daemon": kind, "seconds": elapsed, "prefixes": n, "rss_mib": rss_mib(pid)}
    finally:
        if feeder is not None:
            feeder.kill()
            feeder.wait()
        handle.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--per-update", type=int, default=800)
    ap.add_argument("--only", nargs="*", default=["tabby-bgpd", "bird", "gobgp", "frr"])
    args = ap.parse_args()
    results = []
    with workdir() as d, lan(2) as net:
        for kind in args.only:
            r = measure(kind, net, 1, d, args.count, args.per_update)
            results.append(r)
            print(f"{kind}: {r['seconds']:.2f} s, {r['rss_mib']:.1f} MiB", flush=True)
    base = next((r for r in results if r["daemon"] == "gobgp"), None)
    print(f"\n{args.count} IPv4 prefixes, {args.per_update} per UPDATE, one eBGP session")
    print(f"{'daemon':<12} {'seconds':>8} {'RSS MiB':>8} {'time/GoBGP':>11} {'RSS/GoBGP':>10}")
    for r in results:
        tr = f"{r['seconds'] / base['seconds']:.2f}x" if base else "-"
        mr = f"{r['rss_mib'] / base['rss_mib']:.2f}x" if base else "-"
        ok = "" if r["prefixes"] >= args.count else f"  (only {r['prefixes']} prefixes!)"
        print(f"{r['daemon']:<12} {r['seconds']:>8.2f} {r['rss_mib']:>8.1f} {tr:>11} {mr:>10}{ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
