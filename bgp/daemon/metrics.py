"""Prometheus text metrics for tabby-bgpd: the numbers ``tabbyctl bgp peers`` shows, plus
per-peer message counters, served over plain HTTP by asyncio (no extra dependency).

Counters live on each ``Peer`` (``PeerCounters``) and survive session resets; a dynamic
peer's series disappear with the peer. ``render`` is pure (speaker state in, text out);
``serve_metrics`` is the only I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bgp.fsm import State
from bgp.wire.errors import notification_name
from bgp.wire.types import AFI_IPV4, AFI_IPV6

if TYPE_CHECKING:
    from bgp.daemon.speaker import Speaker
    from bgp.wire import Update

log = logging.getLogger("bgp.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_AFI_NAMES = {AFI_IPV4: "ipv4", AFI_IPV6: "ipv6"}


@dataclass
class PeerCounters:
    """Message counters of one peer, across all of its sessions."""

    updates_in: int = 0
    updates_out: int = 0
    treat_as_withdraw: int = 0
    notifications_sent: Counter[tuple[int, int]] = field(default_factory=Counter)
    notifications_received: Counter[tuple[int, int]] = field(default_factory=Counter)
    attributes_discarded: Counter[int] = field(default_factory=Counter)

    def update_received(self, update: Update) -> None:
        self.updates_in += 1
        if update.treat_as_withdraw:
            self.treat_as_withdraw += 1
        self.attributes_discarded.update(update.discarded_attributes)

    def notification_sent(self, code: int, subcode: int) -> None:
        self.notifications_sent[(code, subcode)] += 1

    def notification_received(self, code: int, subcode: int) -> None:
        self.notifications_received[(code, subcode)] += 1


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, object]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


class _Family:
    """One metric family: HELP and TYPE once, then its samples."""

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name, self.kind, self.help = name, kind, help_text
        self.samples: list[tuple[dict[str, object], float]] = []

    def add(self, value: float, **labels: object) -> None:
        self.samples.append((labels, value))

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in self.samples:
            number = repr(float(value)) if isinstance(value, float) else str(value)
            yield f"{self.name}{_labels(labels)} {number}"


def render(speaker: Speaker | None, now: float | None = None) -> str:
    """The exposition text for ``speaker`` (only the families, no samples, if None)."""
    now = time.time() if now is None else now
    f = {
        "state": _Family(
            "tabby_bgp_peer_state", "gauge", "1 for the peer's current BGP FSM state, else 0."
        ),
        "up": _Family("tabby_bgp_peer_up", "gauge", "1 if the session is Established."),
        "uptime": _Family(
            "tabby_bgp_peer_uptime_seconds",
            "gauge",
            "Seconds since the session became Established (0 when down).",
        ),
        "received": _Family(
            "tabby_bgp_peer_prefixes_received",
            "gauge",
            "Prefixes in the peer's Adj-RIB-In.",
        ),
        "accepted": _Family(
            "tabby_bgp_peer_prefixes_accepted",
            "gauge",
            "Prefixes from the peer that passed import policy.",
        ),
        "advertised": _Family(
            "tabby_bgp_peer_prefixes_advertised", "gauge", "Prefixes advertised to the peer."
        ),
        "upd_in": _Family(
            "tabby_bgp_peer_updates_received_total", "counter", "UPDATE messages received."
        ),
        "upd_out": _Family(
            "tabby_bgp_peer_updates_sent_total",
            "counter",
            "UPDATE messages sent (End-of-RIB included).",
        ),
        "taw": _Family(
            "tabby_bgp_peer_updates_treat_as_withdraw_total",
            "counter",
            "Received UPDATEs handled as withdrawals because of an attribute error (RFC 7606).",
        ),
        "discard": _Family(
            "tabby_bgp_peer_attributes_discarded_total",
            "counter",
            "Malformed path attributes discarded from received UPDATEs (RFC 7606), by type code.",
        ),
        "n_sent": _Family(
            "tabby_bgp_peer_notifications_sent_total",
            "counter",
            "NOTIFICATION messages sent, by error code and subcode.",
        ),
        "n_recv": _Family(
            "tabby_bgp_peer_notifications_received_total",
            "counter",
            "NOTIFICATION messages received, by error code and subcode.",
        ),
        "loc": _Family(
            "tabby_bgp_loc_rib_prefixes", "gauge", "Destinations with a best path in the Loc-RIB."
        ),
        "loc_paths": _Family(
            "tabby_bgp_loc_rib_paths", "gauge", "Candidate paths in the Loc-RIB (all peers)."
        ),
    }
    if speaker is not None:
        _fill(f, speaker, now)
    out: list[str] = []
    for fam in f.values():
        out.extend(fam.lines())
    return "\n".join(out) + "\n"


def _fill(f: dict[str, _Family], speaker: Speaker, now: float) -> None:
    rib = speaker.rib
    for peer in sorted(speaker.peers.values(), key=lambda p: p.name):
        base = {"peer": peer.name, "asn": peer.config.as_number}
        state = peer.state
        for s in State:
            f["state"].add(1 if s is state else 0, **base, state=s.value)
        up = peer.established is not None
        f["up"].add(1 if up else 0, **base)
        since = peer.established_since
        f["uptime"].add(round(max(0.0, now - since), 3) if up and since else 0.0, **base)
        rp = rib.peers.get(peer.key)
        f["received"].add(len(rp.adj_in) if rp else 0, **base)
        f["accepted"].add(rp.accepted if rp else 0, **base)
        f["advertised"].add(len(rp.adj_out) if rp else 0, **base)
        c: PeerCounters | None = getattr(peer, "counters", None)
        if c is None:
            continue
        f["upd_in"].add(c.updates_in, **base)
        f["upd_out"].add(c.updates_out, **base)
        f["taw"].add(c.treat_as_withdraw, **base)
        for code, n in sorted(c.attributes_discarded.items()):
            f["discard"].add(n, **base, attribute=code)
        for key, counter in (
            ("n_sent", c.notifications_sent),
            ("n_recv", c.notifications_received),
        ):
            for (code, subcode), n in sorted(counter.items()):
                name = notification_name(code, subcode)
                f[key].add(n, **base, code=code, subcode=subcode, name=name)
    per_afi: Counter[int] = Counter()
    paths: Counter[int] = Counter()
    for dest in rib.best:
        per_afi[dest.afi] += 1
        paths[dest.afi] += len(rib.loc.get(dest, ()))
    for afi, name in _AFI_NAMES.items():
        f["loc"].add(per_afi[afi], afi=name)
        f["loc_paths"].add(paths[afi], afi=name)


SpeakerSource = Callable[[], "Speaker | None"]


class MetricsServer:
    """A tiny HTTP/1.0 server: ``GET /metrics`` returns ``render``; anything else 404."""

    def __init__(self, source: SpeakerSource) -> None:
        self._source = source
        self._server: asyncio.AbstractServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return self._server.sockets[0].getsockname()[1]

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)
        log.info("metrics listening address=%s port=%d", host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            line = request.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(line) < 2 or line[0] not in ("GET", "HEAD"):
                status, body, ctype = "405 Method Not Allowed", b"GET only\n", "text/plain"
            elif line[1].split("?", 1)[0] not in ("/metrics", "/"):
                status, body, ctype = "404 Not Found", b"try /metrics\n", "text/plain"
            else:
                status, ctype = "200 OK", CONTENT_TYPE
                body = render(self._source()).encode()
            head = (
                f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if line and line[0] == "HEAD" else body))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except (ConnectionError, OSError) as e:
            log.debug("metrics client error error=%r", str(e))
        finally:
            writer.close()


async def serve_metrics(speaker: Speaker | SpeakerSource, host: str, port: int) -> MetricsServer:
    """Serve ``/metrics`` for a speaker (or whichever one a callable returns)."""
    source: SpeakerSource = speaker if callable(speaker) else (lambda: speaker)
    server = MetricsServer(source)
    await server.start(host, port)
    return server
