"""Cluster mode, the I/O part: follow Felix's stream, run the speaker, push routes back.

Two loops share one asyncio loop and one gRPC channel to Felix's unix socket:

* subscribe: ``CalcGraph.Subscribe``. A subscription starts with a snapshot and
  InSync; the snapshot is collected aside and only replaces the current view at
  InSync, so a Felix restart never withdraws anything and sessions whose
  configuration did not change never flap. After InSync every change is applied live
  (coalesced for a moment so a burst costs one reconcile).
* push: ``LearnedRoutes.Push`` streams ``Speaker.routes()`` (selected paths learned
  from peers; withdrawals) and ``end_of_rib`` once the table is complete: every peer
  has sent its End-of-RIB, or ``eor_deferral`` seconds passed. Until then Felix keeps
  the learned routes it already programmed (our graceful restart: the kernel keeps
  forwarding while we come back). A broken stream is reopened and the whole table
  resent.

Both reconnect with capped exponential backoff while Felix is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc

from bgp.daemon.cluster import Settings, StreamView, daemon_config, needs_restart
from bgp.daemon.config import ConfigError, DaemonConfig
from bgp.daemon.speaker import RouteUpdate, Speaker
from proto import felix_services_pb2 as fpb
from proto import felix_services_pb2_grpc as fpb_grpc

log = logging.getLogger("bgp.felix")

SUBSCRIBER = "tabby-bgpd"
_CHANNEL_OPTIONS = [
    # Felix restarts in about a second; do not let gRPC's default backoff (up to 2 min)
    # stand between us and the new socket.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
_END = object()
_EOR = object()


def learned_message(u: RouteUpdate, own: frozenset[str]) -> fpb.LearnedRouteMessage:
    """A selected route as Felix wants it: no usable next hop means withdrawn."""
    hops = [str(h) for h in u.next_hops if str(h) not in own]
    if not hops:
        return fpb.LearnedRouteMessage(withdraw=str(u.dst))
    return fpb.LearnedRouteMessage(
        update=fpb.LearnedRoute(dst=str(u.dst), next_hops=hops, peer=u.peer)
    )


class Backoff:
    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi, self.delay = lo, hi, lo

    def reset(self) -> None:
        self.delay = self.lo

    async def sleep(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.hi, self.delay * 2)


class ClusterRunner:
    """Owns the speaker in cluster mode; see the module docstring."""

    def __init__(
        self,
        felix_socket: str,
        settings: Settings,
        *,
        eor_deferral: float = 30.0,
        coalesce: float = 0.05,
        min_backoff: float = 0.2,
        max_backoff: float = 5.0,
    ) -> None:
        self.felix_socket = felix_socket
        self.settings = settings
        self.eor_deferral = eor_deferral
        self.coalesce = coalesce
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.speaker: Speaker | None = None
        self.config: DaemonConfig | None = None
        self.view = StreamView()
        self.subscriptions = 0  # snapshots taken over (for tests and logs)
        self.push_streams = 0
        self._lock = asyncio.Lock()
        self._reconcile_handle: asyncio.TimerHandle | None = None
        self._speaker_changed = asyncio.Event()
        self._push_queues: set[asyncio.Queue] = set()
        self._ready: set[int] = set()  # id() of speakers whose initial table is complete
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()
        self._channel: grpc.aio.Channel | None = None

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._channel = grpc.aio.insecure_channel(
            f"unix:{self.felix_socket}", options=_CHANNEL_OPTIONS
        )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._subscribe_loop(), name="felix-subscribe"),
            loop.create_task(self._push_loop(), name="felix-push"),
        ]
        log.info("cluster mode started felix_socket=%s", self.felix_socket)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._reconcile_handle is not None:
            self._reconcile_handle.cancel()
        async with self._lock:
            if self.speaker is not None:
                await self.speaker.stop()
                self.speaker = None
        if self._channel is not None:
            await self._channel.close()

    # ---- Felix -> speaker -----------------------------------------------------------

    async def _subscribe_loop(self) -> None:
        assert self._channel is not None
        stub = fpb_grpc.CalcGraphStub(self._channel)
        backoff = Backoff(self.min_backoff, self.max_backoff)
        while True:
            fresh = StreamView()
            synced = False
            count = 0
            try:
                call = stub.Subscribe(fpb.SubscribeRequest(subscriber=SUBSCRIBER))
                async for msg in call:
                    count += 1
                    if not synced:
                        fresh.apply(msg)
                        if fresh.in_sync:
                            synced = True
                            self.view = fresh
                            self.subscriptions += 1
                            backoff.reset()
                            log.info(
                                "felix in sync messages=%d peers=%d advertise=%d bgp=%s",
                                count,
                                len(fresh.peers),
                                len(fresh.advertise),
                                fresh.bgp is not None,
                            )
                            await self.reconcile()
                    elif self.view.apply(msg):
                        self._schedule_reconcile()
                log.warning("felix stream ended messages=%d; resubscribing", count)
            except grpc.aio.AioRpcError as e:
                log.warning(
                    "felix stream failed code=%s details=%r retry_in_s=%.1f",
                    e.code().name,
                    e.details(),
                    backoff.delay,
                )
            await backoff.sleep()

    def _schedule_reconcile(self) -> None:
        if self._reconcile_handle is not None:
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._reconcile_handle = None
            task = loop.create_task(self.reconcile())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

        self._reconcile_handle = loop.call_later(self.coalesce, fire)

    async def reconcile(self) -> None:
        """Bring the speaker in line with the current view (live where possible)."""
        async with self._lock:
            try:
                new = daemon_config(self.view, self.settings)
            except ConfigError as e:
                log.error("bgp config rejected (speaker unchanged) error=%s", e)
                return
            old, speaker = self.config, self.speaker
            if new is None:
                if speaker is not None:
                    log.warning("no bgp config for this node any more; stopping the speaker")
                    await self._replace_speaker(None)
                    self.config = None
                return
            if speaker is None or old is None or needs_restart(old, new):
                if speaker is not None:
                    log.warning("bgp settings changed; restarting the speaker")
                    await self._replace_speaker(None)
                fresh = Speaker(new)
                try:
                    await fresh.start()
                except OSError as e:
                    log.error("cannot start the speaker error=%r; retrying", str(e))
                    asyncio.get_running_loop().call_later(
                        self.max_backoff, self._schedule_reconcile
                    )
                    return
                await self._replace_speaker(fresh)
            else:
                speaker.set_peers(new.peers)
                speaker.set_originate(new.originate)
            self.config = new

    async def _replace_speaker(self, speaker: Speaker | None) -> None:
        old, self.speaker = self.speaker, speaker
        for q in self._push_queues:
            q.put_nowait(_END)
        if old is not None:
            self._ready.discard(id(old))
            await old.stop()
        self._speaker_changed.set()

    # ---- speaker -> Felix -----------------------------------------------------------

    async def _push_loop(self) -> None:
        assert self._channel is not None
        stub = fpb_grpc.LearnedRoutesStub(self._channel)
        backoff = Backoff(self.min_backoff, self.max_backoff)
        while True:
            speaker = self.speaker
            if speaker is None:
                self._speaker_changed.clear()
                await self._speaker_changed.wait()
                continue
            try:
                self.push_streams += 1
                await stub.Push(self._messages(speaker))
                backoff.reset()
                log.info("learned-routes stream closed (speaker replaced)")
                continue
            except grpc.aio.AioRpcError as e:
                log.warning(
                    "learned-routes stream failed code=%s details=%r retry_in_s=%.1f",
                    e.code().name,
                    e.details(),
                    backoff.delay,
                )
            await backoff.sleep()

    async def table_ready(self, speaker: Speaker) -> None:
        """Until every configured peer has sent its End-of-RIB, or the deferral ends."""
        if id(speaker) in self._ready:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.eor_deferral
        while loop.time() < deadline:
            peers = [p for p in speaker.peers.values() if not p.config.dynamic]
            if all(p.initial_table_received for p in peers):
                break
            await asyncio.sleep(0.1)
        else:
            waiting = [
                p.name
                for p in speaker.peers.values()
                if not p.config.dynamic and not p.initial_table_received
            ]
            log.warning("end-of-rib deferral expired waiting_for=%s", ",".join(waiting))
        self._ready.add(id(speaker))

    async def _messages(self, speaker: Speaker) -> AsyncIterator[fpb.LearnedRouteMessage]:
        q: asyncio.Queue = asyncio.Queue()
        own = own_addresses(speaker.config)

        async def forward() -> None:
            async for u in speaker.routes():
                q.put_nowait(u)

        async def ready() -> None:
            await self.table_ready(speaker)
            q.put_nowait(_EOR)

        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(forward()), loop.create_task(ready())]
        self._push_queues.add(q)
        if self.speaker is not speaker:
            q.put_nowait(_END)
        sent = 0
        log.info("learned-routes stream open")
        try:
            while True:
                item = await q.get()
                if item is _END:
                    return
                if item is _EOR:
                    log.info("learned routes end-of-rib sent routes=%d", sent)
                    yield fpb.LearnedRouteMessage(end_of_rib=True)
                    continue
                sent += 1
                msg = learned_message(item, own)
                if msg.HasField("update"):
                    log.debug("learned route dst=%s via=%s", item.dst, msg.update.next_hops)
                yield msg
        finally:
            self._push_queues.discard(q)
            for t in tasks:
                t.cancel()


def own_addresses(config: DaemonConfig) -> frozenset[str]:
    """The node's own addresses: a path pointing back at us is no route for Felix."""
    return frozenset(str(a) for a in (config.next_hop_v4, config.next_hop_v6) if a is not None)
