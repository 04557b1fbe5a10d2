"""One configured (or dynamic) neighbour: its session(s), collision handling, and the
glue between a session and the RIB (updates in, Adj-RIB-Out flushes out)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import time
from typing import TYPE_CHECKING

from bgp.daemon.config import PeerConfig
from bgp.daemon.metrics import PeerCounters
from bgp.daemon.session import Session
from bgp.fsm import (
    Connection,
    Fsm,
    FsmConfig,
    ManualStart,
    ManualStop,
    MessageError,
    OpenCollisionDump,
    OpenInfo,
    State,
    TcpConnectionConfirmed,
    resolve_collision,
)
from bgp.rib import ExportTarget, PeerRef
from bgp.wire import (
    GracefulRestart,
    Negotiated,
    Notification,
    Open,
    Update,
    encode_message,
    end_of_rib,
    errors,
    pack_updates,
    pack_withdrawals,
)
from bgp.wire.types import AFI_IPV4, AFI_IPV6, SAFI_UNICAST

if TYPE_CHECKING:
    from bgp.daemon.speaker import Speaker

log = logging.getLogger("bgp.peer")


class Peer:
    def __init__(self, speaker: Speaker, config: PeerConfig) -> None:
        self.speaker = speaker
        self.config = config
        self.name = str(config.address)
        self.key = self.name
        dc = speaker.config
        self.fsm_config = FsmConfig(
            local_as=dc.local_as,
            router_id=dc.router_id,
            peer_as=config.as_number,
            hold_time=config.hold_time if config.hold_time is not None else dc.hold_time,
            connect_retry_time=dc.connect_retry_time,
            idle_hold_time=min(5, dc.connect_retry_time),
            passive=config.passive or config.dynamic,
            auto_restart=not config.dynamic,
        )
        self.session = Session(self, Fsm(self.fsm_config), incoming=False)
        self.other: Session | None = None  # second connection during a collision
        self.established: Session | None = None
        self.established_since = 0.0
        self.last_error = ""
        self.counters = PeerCounters()  # for /metrics
        self.router_id: ipaddress.IPv4Address | None = None
        self._wake = asyncio.Event()
        self._writer_task: asyncio.Task | None = None
        self._eor_sent = False
        self.eor_received: set[int] = set()  # AFIs whose End-of-RIB arrived this session
        self._stale_timer: asyncio.TimerHandle | None = None
        self.rib_peer = speaker.rib.add_peer(self.key, config.import_filter, config.max_prefixes)

    @property
    def ibgp(self) -> bool:
        return self.config.as_number == self.speaker.config.local_as

    @property
    def ttl(self) -> int:
        if self.config.multihop_ttl is not None:
            return self.config.multihop_ttl
        return 64 if self.ibgp else 1

    def source_address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """Bind outgoing connections to localAddress, else to a specific listen address."""
        if self.config.local_address is not None:
            return self.config.local_address
        listen = ipaddress.ip_address(self.speaker.config.listen_address)
        if not listen.is_unspecified and listen.version == self.config.address.version:
            return listen
        return None

    @property
    def state(self) -> State:
        return self.session.state

    @property
    def initial_table_received(self) -> bool:
        """Established, and End-of-RIB arrived for every negotiated family: what this
        peer had to say after (re)connecting is in the RIB."""
        s = self.established
        if s is None or s.ctx is None:
            return False
        return {afi for afi, _ in s.ctx.families} <= self.eor_received

    # ---- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self.session.feed(ManualStart())

    def stop(self, subcode: int = errors.CEASE_ADMIN_SHUTDOWN) -> None:
        for s in (self.session, self.other):
            if s is not None:
                s.feed(ManualStop(subcode))
                s.shutdown()
        self.other = None
        if self._writer_task is not None:
            self._writer_task.cancel()
            self._writer_task = None
        if self._stale_timer is not None:
            self._stale_timer.cancel()
            self._stale_timer = None

    def build_open(self, hold_time: int) -> Open:
        dc = self.speaker.config
        gr = None
        if dc.graceful_restart.enabled:
            # F bit set: Felix keeps forwarding state while we restart.
            gr = GracefulRestart(
                restart_time=dc.graceful_restart.restart_time,
                families=((AFI_IPV4, SAFI_UNICAST, True), (AFI_IPV6, SAFI_UNICAST, True)),
            )
        return Open.for_speaker(dc.local_as, dc.router_id, hold_time, graceful_restart=gr)

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The listener accepted a connection from this peer (RFC 4271 6.8 for clashes)."""
        s = self.session
        if s.state is State.IDLE:
            s.feed(ManualStart())
        if s.state is State.ACTIVE or (s.state is State.CONNECT and not s.connecting):
            s.incoming = True
            s.attach(reader, writer)
            s.feed(TcpConnectionConfirmed())
            return
        if s.state is State.ESTABLISHED or self.other is not None:
            log.info("connection collision peer=%s action=reject-new state=%s", self.name, s.state)
            note = Notification(errors.CEASE, errors.CEASE_CONNECTION_COLLISION)
            writer.write(encode_message(note))
            writer.close()
            return
        # Connect (our own attempt in flight), OpenSent, OpenConfirm: keep both until an
        # OPEN tells us the peer's identifier. Closing our attempt now could close the
        # very connection the peer has just accepted and adopted.
        fsm = Fsm(dataclasses.replace(self.fsm_config, passive=True, auto_restart=False))
        other = Session(self, fsm, incoming=True)
        self.other = other
        other.feed(ManualStart())
        other.attach(reader, writer)
        other.feed(TcpConnectionConfirmed())

    def collision_check(self, session: Session, info: OpenInfo) -> bool:
        """Called when ``session`` got an OPEN. False if it lost and was closed."""
        if self.other is None:
            return True
        partner = self.other if session is self.session else self.session
        if partner.state in (State.IDLE, State.ACTIVE) or (
            partner.state is State.CONNECT and not partner.connecting
        ):
            # The partner has no live connection: no collision, just keep this one.
            if session is self.other:
                self._promote(session)
            else:
                partner.shutdown()
                self.other = None
            return True
        close = resolve_collision(self.speaker.config.router_id, info.bgp_id)
        loser = session if (close is Connection.INCOMING) == session.incoming else partner
        log.info(
            "connection collision peer=%s local_id=%s remote_id=%s closing=%s",
            self.name,
            self.speaker.config.router_id,
            info.bgp_id,
            close.value,
        )
        loser.feed(OpenCollisionDump())
        loser.shutdown()
        winner = partner if loser is session else session
        self._promote(winner)
        return loser is not session

    def _promote(self, winner: Session) -> None:
        if winner is not self.session:
            self.session.shutdown()
            winner.fsm.config = self.fsm_config
            self.session = winner
        self.other = None

    # ---- session events -------------------------------------------------------------

    def on_established(self, session: Session) -> None:
        assert session.local_open is not None and session.remote_open is not None
        if session.ctx is None:
            session.ctx = Negotiated.from_opens(session.local_open, session.remote_open)
        ctx = session.ctx
        self.established = session
        self.established_since = time.time()
        self.router_id = session.remote_open.bgp_id
        self.last_error = ""
        dc = self.speaker.config
        ref = PeerRef(
            self.config.address,
            self.config.as_number,
            session.remote_open.bgp_id,
            ibgp=self.ibgp,
            rr_client=self.config.route_reflector_client,
        )
        local = session.local_address
        nh4 = dc.next_hop_v4 or (local if isinstance(local, ipaddress.IPv4Address) else None)
        nh6 = dc.next_hop_v6 or (local if isinstance(local, ipaddress.IPv6Address) else None)
        afis = frozenset(afi for afi, _ in ctx.families)
        target = ExportTarget(
            ref,
            next_hop_v4=nh4,
            next_hop_v6=nh6,
            keep_original_next_hop=self.config.keep_original_next_hop,
            export_filter=self.config.export_filter,
            afis=afis,
        )
        log.info(
            "session established peer=%s asn=%d router_id=%s hold=%d families=%s incoming=%s",
            self.name,
            self.config.as_number,
            ref.router_id,
            ctx.hold_time,
            sorted(ctx.families),
            session.incoming,
        )
        self.speaker.rib.peer_up(self.key, ref, target)
        self._eor_sent = False
        self.eor_received = set()
        if self._writer_task is not None:
            self._writer_task.cancel()
        self._writer_task = asyncio.get_running_loop().create_task(self._writer(session))
        self._wake.set()

    def on_down(self, session: Session, reason: str, graceful: bool) -> None:
        if session is not self.established:
            return
        self.established = None
        self.established_since = 0.0
        if self._writer_task is not None:
            self._writer_task.cancel()
            self._writer_task = None
        gr = session.graceful_restart_capability()
        keep = graceful and gr is not None and self.speaker.config.graceful_restart.enabled
        count = self.speaker.rib.peer_down(self.key, keep_stale=keep)
        log.warning(
            "session down peer=%s reason=%r routes=%d kept_stale=%s",
            self.name,
            reason,
            count,
            keep,
        )
        if keep and gr is not None:
            # RFC 4724 4.2: keep stale routes for the peer's restart time at most, and no
            # longer than configured for this peer (or the speaker's default).
            limit = self.config.restart_time or self.speaker.config.graceful_restart.restart_time
            keep_for = max(min(gr.restart_time, limit), 1)
            log.info("stale routes kept peer=%s seconds=%d advertised=%d", self.name,
                     keep_for, gr.restart_time)  # fmt: skip
            if self._stale_timer is not None:
                self._stale_timer.cancel()
            self._stale_timer = asyncio.get_running_loop().call_later(
                keep_for, self._restart_timer_expired
            )
        if self.config.dynamic:
            self.speaker.remove_peer(self)

    def _restart_timer_expired(self) -> None:
        self._stale_timer = None
        swept = self.speaker.rib.sweep_stale(self.key)
        if swept:
            log.warning("graceful restart expired peer=%s stale_removed=%d", self.name, swept)

    def on_update(self, session: Session, update: Update) -> None:
        rib = self.speaker.rib
        eor = update.is_end_of_rib()
        if eor is not None:
            self.eor_received.add(eor[0])
            swept = rib.sweep_stale(self.key, eor[0])
            log.info("end-of-rib peer=%s afi=%d stale_removed=%d", self.name, eor[0], swept)
            return
        withdrawn = update.withdrawals()
        nlri = update.announcements()
        fam = update.mp_reach_family
        if fam is None or not nlri:
            result = rib.apply_update(self.key, withdrawn, update.attributes, nlri)
        else:
            result = rib.apply_update(self.key, withdrawn, None, [])
            for afi in (AFI_IPV4, AFI_IPV6):
                part = [p for p in nlri if p.afi == afi]
                if part:
                    r = rib.apply_update(self.key, (), update.attributes_for(afi), part)
                    result.max_prefix_exceeded |= r.max_prefix_exceeded
        if result.max_prefix_exceeded:
            log.warning(
                "max prefixes exceeded peer=%s limit=%s", self.name, self.config.max_prefixes
            )
            session.feed(MessageError(errors.CEASE, errors.CEASE_MAX_PREFIXES))

    def on_route_refresh(self, session: Session, message: object) -> None:
        peer = self.speaker.rib.peers[self.key]
        if peer.ref is not None and peer.target is not None:
            self.speaker.rib.peer_up(self.key, peer.ref, peer.target)

    # ---- Adj-RIB-Out to the wire ----------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def _writer(self, session: Session) -> None:
        rib = self.speaker.rib
        ctx = session.ctx
        assert ctx is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if session is not self.established:
                return
            out = rib.flush(self.key)
            messages: list[bytes] = []
            for attrs, prefixes in out.announce:
                try:
                    messages.extend(pack_updates(attrs, prefixes, ctx))
                except ValueError as e:
                    log.error("cannot encode update peer=%s error=%r", self.name, str(e))
            if out.withdraw:
                messages.extend(pack_withdrawals(out.withdraw, ctx))
            if not self._eor_sent:
                # RFC 4724 2: End-of-RIB after the initial table, per family.
                messages.extend(end_of_rib(afi, safi) for afi, safi in sorted(ctx.families))
                self._eor_sent = True
            if messages:
                log.debug(
                    "sending peer=%s updates=%d prefixes=%d",
                    self.name,
                    len(messages),
                    out.prefix_count,
                )
                self.counters.updates_out += len(messages)
                session.send_raw(messages)
                await session.drain()
