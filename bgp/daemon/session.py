"""One TCP connection to a peer, driven by its own FSM: the I/O half of a BGP session.

The FSM decides; this class only carries out its actions (write a message, arm a timer,
connect or close) and turns what arrives (bytes, EOF, timer expiry) into FSM events.
A peer normally has one session; during a connection collision it briefly has two.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from bgp.daemon.sockopts import set_md5, set_ttl
from bgp.fsm import (
    Action,
    ConnectRetryTimerExpires,
    DeliverRouteRefresh,
    DeliverUpdate,
    DropConnection,
    Event,
    Fsm,
    HoldTimerExpires,
    IdleHoldTimerExpires,
    InitiateConnection,
    KeepaliveReceived,
    KeepaliveTimerExpires,
    MessageError,
    NotificationReceived,
    OpenInfo,
    OpenReceived,
    RouteRefreshReceived,
    SendKeepalive,
    SendNotification,
    SendOpen,
    SessionDown,
    SessionEstablished,
    StartTimer,
    State,
    StopTimer,
    TcpConnectionConfirmed,
    TcpConnectionFails,
    Timer,
    UpdateReceived,
)
from bgp.wire import (
    BgpError,
    GracefulRestart,
    Keepalive,
    MessageReader,
    Negotiated,
    Notification,
    Open,
    RouteRefresh,
    Update,
    encode_message,
)
from bgp.wire.errors import CEASE, CEASE_OUT_OF_RESOURCES, notification_name

if TYPE_CHECKING:
    from bgp.daemon.peer import Peer

log = logging.getLogger("bgp.session")

_TIMER_EVENTS: dict[Timer, Callable[[], Event]] = {
    Timer.CONNECT_RETRY: ConnectRetryTimerExpires,
    Timer.HOLD: HoldTimerExpires,
    Timer.KEEPALIVE: KeepaliveTimerExpires,
    Timer.IDLE_HOLD: IdleHoldTimerExpires,
}

CONNECT_TIMEOUT = 10.0
_KEEPALIVE_BYTES = encode_message(Keepalive())


class Session:
    def __init__(self, peer: Peer, fsm: Fsm, incoming: bool) -> None:
        self.peer = peer
        self.fsm = fsm
        self.incoming = incoming
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.local_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        self.local_open: Open | None = None
        self.remote_open: Open | None = None
        self.ctx: Negotiated | None = None
        self._msg_reader: MessageReader | None = None
        self._timers: dict[Timer, asyncio.TimerHandle] = {}
        self._connect_task: asyncio.Task | None = None
        self._read_task: asyncio.Task | None = None
        self.closed = False

    # ---- FSM plumbing ---------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.fsm.state

    @property
    def connecting(self) -> bool:
        """An outgoing connection attempt is in flight."""
        return self._connect_task is not None

    def feed(self, event: Event) -> None:
        before = self.fsm.state
        actions = self.fsm.handle(event)
        after = self.fsm.state
        if before is not after:
            log.info(
                "peer state peer=%s from=%s to=%s event=%s reason=%r",
                self.peer.name,
                before,
                after,
                type(event).__name__,
                self.fsm.transitions[-1][2] if self.fsm.transitions else "",
            )
        for action in actions:
            self._execute(action)

    def _execute(self, action: Action) -> None:
        if isinstance(action, StartTimer):
            self._arm(action.timer, action.seconds)
        elif isinstance(action, StopTimer):
            handle = self._timers.pop(action.timer, None)
            if handle is not None:
                handle.cancel()
        elif isinstance(action, SendOpen):
            self.local_open = self.peer.build_open(action.hold_time)
            self._msg_reader = MessageReader(local_open=self.local_open)
            self._write(encode_message(self.local_open, None))
        elif isinstance(action, SendKeepalive):
            self._write(_KEEPALIVE_BYTES)
        elif isinstance(action, SendNotification):
            log.warning(
                "notification sent peer=%s code=%d subcode=%d name=%r",
                self.peer.name,
                action.code,
                action.subcode,
                action.name,
            )
            self.peer.last_error = f"sent {action.name}"
            self.peer.counters.notification_sent(action.code, action.subcode)
            self._write(encode_message(Notification(action.code, action.subcode, action.data)))
        elif isinstance(action, InitiateConnection):
            self._connect_task = asyncio.get_running_loop().create_task(self._connect())
        elif isinstance(action, DropConnection):
            self.close()
        elif isinstance(action, SessionEstablished):
            self.peer.on_established(self)
        elif isinstance(action, SessionDown):
            self.peer.on_down(self, action.reason, action.graceful)
        elif isinstance(action, DeliverUpdate):
            self.peer.on_update(self, action.update)
        elif isinstance(action, DeliverRouteRefresh):
            self.peer.on_route_refresh(self, action.message)

    def _arm(self, timer: Timer, seconds: float) -> None:
        old = self._timers.pop(timer, None)
        if old is not None:
            old.cancel()
        make = _TIMER_EVENTS[timer]
        self._timers[timer] = asyncio.get_running_loop().call_later(
            seconds, lambda: self.feed(make())
        )

    def cancel_timers(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    # ---- connection -----------------------------------------------------------------

    async def _connect(self) -> None:
        cfg = self.peer.config
        family = socket.AF_INET6 if cfg.address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            if cfg.password:
                set_md5(sock, cfg.address, cfg.password)
            set_ttl(sock, self.peer.ttl)
            source = self.peer.source_address()
            if source is not None:
                sock.bind((str(source), 0))
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(
                loop.sock_connect(sock, (str(cfg.address), cfg.port)), CONNECT_TIMEOUT
            )
            reader, writer = await asyncio.open_connection(sock=sock)
        except (OSError, TimeoutError) as e:
            sock.close()
            log.debug("connect failed peer=%s error=%r", self.peer.name, str(e))
            self._connect_task = None
            self.feed(TcpConnectionFails(str(e) or type(e).__name__))
            return
        except asyncio.CancelledError:
            sock.close()
            raise
        self._connect_task = None
        if self.state not in (State.CONNECT, State.ACTIVE) or self.closed:
            writer.close()
            return
        self.attach(reader, writer)
        self.feed(TcpConnectionConfirmed())

    def attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Take over a connected stream (ours or one the listener accepted)."""
        if self._connect_task is not None:
            self._connect_task.cancel()
            self._connect_task = None
        self.reader, self.writer = reader, writer
        sockname = writer.get_extra_info("sockname")
        addr = ipaddress.ip_address(sockname[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        self.local_address = addr
        self._read_task = asyncio.get_running_loop().create_task(self._read_loop(reader))

    def _write(self, data: bytes | list[bytes]) -> None:
        writer = self.writer
        if writer is None or writer.is_closing():
            return
        if isinstance(data, list):
            writer.writelines(data)
        else:
            writer.write(data)

    async def drain(self) -> None:
        writer = self.writer
        if writer is not None and not writer.is_closing():
            try:
                await writer.drain()
            except (ConnectionError, OSError) as e:
                self.feed(TcpConnectionFails(str(e)))

    def send_raw(self, data: list[bytes]) -> None:
        self._write(data)

    def close(self) -> None:
        """Drop the TCP connection; queued bytes (a NOTIFICATION) are still flushed."""
        if self._connect_task is not None:
            self._connect_task.cancel()
            self._connect_task = None
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        self.writer = None
        self.reader = None
        task = self._read_task
        self._read_task = None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def shutdown(self) -> None:
        """Gone for good (collision loser, peer removed): no timers, no connection."""
        self.closed = True
        self.cancel_timers()
        self.close()

    # ---- reading --------------------------------------------------------------------

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    self.feed(TcpConnectionFails("connection closed by peer"))
                    return
                if self._msg_reader is None:
                    self._msg_reader = MessageReader()
                try:
                    messages = self._msg_reader.feed(data)
                except BgpError as e:
                    self._log_error(e)
                    self.feed(MessageError(e.code, e.subcode, e.data))
                    return
                for msg in messages:
                    if self._read_task is not asyncio.current_task():
                        return  # the connection was dropped while handling a message
                    self._dispatch(msg)
                if self._read_task is not asyncio.current_task():
                    return
        except (ConnectionError, OSError) as e:
            self.feed(TcpConnectionFails(str(e)))
        except asyncio.CancelledError:
            pass
        except Exception:
            # A bug, not the peer's fault: say so loudly and reset the session cleanly.
            log.exception("internal error peer=%s", self.peer.name)
            self.feed(MessageError(CEASE, CEASE_OUT_OF_RESOURCES))

    def _log_error(self, e: BgpError) -> None:
        log.warning(
            "message error peer=%s code=%d subcode=%d name=%r reason=%r",
            self.peer.name,
            e.code,
            e.subcode,
            notification_name(e.code, e.subcode),
            str(e),
        )

    def _dispatch(self, msg: object) -> None:
        if isinstance(msg, Update):
            self.peer.counters.update_received(msg)
            if msg.errors:
                log.warning(
                    "update errors peer=%s treat_as_withdraw=%s errors=%r",
                    self.peer.name,
                    msg.treat_as_withdraw,
                    msg.errors,
                )
            self.feed(UpdateReceived(msg))
        elif isinstance(msg, Keepalive):
            self.feed(KeepaliveReceived())
        elif isinstance(msg, Open):
            self.remote_open = msg
            if self._msg_reader is not None and self._msg_reader.ctx is not None:
                self.ctx = self._msg_reader.ctx
            info = OpenInfo(
                version=msg.version,
                asn=msg.asn,
                hold_time=msg.hold_time,
                bgp_id=msg.bgp_id,
                capabilities=frozenset(c.cap_code() for c in msg.capabilities),
                message=msg,
            )
            if self.peer.collision_check(self, info):
                self.feed(OpenReceived(info))
        elif isinstance(msg, Notification):
            name = notification_name(msg.code, msg.subcode)
            log.warning(
                "notification received peer=%s code=%d subcode=%d name=%r",
                self.peer.name,
                msg.code,
                msg.subcode,
                name,
            )
            self.peer.last_error = f"received {name}"
            self.peer.counters.notification_received(msg.code, msg.subcode)
            self.feed(NotificationReceived(msg.code, msg.subcode, msg.data))
        elif isinstance(msg, RouteRefresh):
            self.feed(RouteRefreshReceived(msg))

    def graceful_restart_capability(self) -> GracefulRestart | None:
        return self.ctx.graceful_restart if self.ctx is not None else None
