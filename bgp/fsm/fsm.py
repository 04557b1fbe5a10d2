"""The per-connection BGP finite state machine of RFC 4271 section 8, without I/O or a clock.

The daemon feeds events (``ManualStart``, ``TcpConnectionConfirmed``, ``OpenReceived``,
``HoldTimerExpires``, ...) into :meth:`Fsm.handle` and carries out the actions it gets
back (send a message, start or stop a timer, open or drop the TCP connection, tell the
RIB the session came up or went down). Time never enters except as timer-expiry events,
so every transition is testable with plain function calls.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from bgp.wire import errors

# RFC 4271 10: suggested values.
DEFAULT_CONNECT_RETRY_TIME = 120
DEFAULT_HOLD_TIME = 90
LARGE_HOLD_TIME = 240  # hold timer while waiting for the peer's OPEN (RFC 4271 8.2.2)
DEFAULT_IDLE_HOLD_TIME = 5  # delay before an automatic restart after an error


class State(enum.Enum):
    IDLE = "Idle"
    CONNECT = "Connect"
    ACTIVE = "Active"
    OPEN_SENT = "OpenSent"
    OPEN_CONFIRM = "OpenConfirm"
    ESTABLISHED = "Established"

    def __str__(self) -> str:
        return self.value


class Timer(enum.Enum):
    CONNECT_RETRY = "ConnectRetry"
    HOLD = "Hold"
    KEEPALIVE = "Keepalive"
    IDLE_HOLD = "IdleHold"


@dataclass(frozen=True)
class FsmConfig:
    """What the FSM needs to know about the local side and the configured peer.

    ``peer_as`` None accepts any AS (only for callers that check it elsewhere).
    ``required_capabilities`` are capability codes the peer's OPEN must carry.
    """

    local_as: int
    router_id: ipaddress.IPv4Address
    peer_as: int | None
    hold_time: int = DEFAULT_HOLD_TIME
    connect_retry_time: int = DEFAULT_CONNECT_RETRY_TIME
    idle_hold_time: int = DEFAULT_IDLE_HOLD_TIME
    passive: bool = False
    auto_restart: bool = True
    required_capabilities: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if self.hold_time in (1, 2) or not 0 <= self.hold_time <= 65535:
            raise ValueError(f"hold_time: must be 0 or 3..65535, got {self.hold_time}")


@dataclass(frozen=True)
class OpenInfo:
    """The parts of a received OPEN the FSM validates; ``message`` is the codec's object."""

    version: int
    asn: int  # the effective (4-octet capability if present) AS number
    hold_time: int
    bgp_id: ipaddress.IPv4Address
    capabilities: frozenset[int] = frozenset()
    message: Any = None


# ---- events -------------------------------------------------------------------------


@dataclass(frozen=True)
class ManualStart:
    pass


@dataclass(frozen=True)
class ManualStop:
    subcode: int = errors.CEASE_ADMIN_SHUTDOWN


@dataclass(frozen=True)
class TcpConnectionConfirmed:
    """The TCP connection is up (we connected, or we accepted the peer's connection)."""


@dataclass(frozen=True)
class TcpConnectionFails:
    reason: str = ""


@dataclass(frozen=True)
class ConnectRetryTimerExpires:
    pass


@dataclass(frozen=True)
class HoldTimerExpires:
    pass


@dataclass(frozen=True)
class KeepaliveTimerExpires:
    pass


@dataclass(frozen=True)
class IdleHoldTimerExpires:
    pass


@dataclass(frozen=True)
class OpenReceived:
    open: OpenInfo


@dataclass(frozen=True)
class KeepaliveReceived:
    pass


@dataclass(frozen=True)
class UpdateReceived:
    update: Any


@dataclass(frozen=True)
class RouteRefreshReceived:
    message: Any


@dataclass(frozen=True)
class NotificationReceived:
    code: int
    subcode: int
    data: bytes = b""


@dataclass(frozen=True)
class MessageError:
    """A received message failed to decode (header, OPEN or fatal UPDATE error)."""

    code: int
    subcode: int
    data: bytes = b""


@dataclass(frozen=True)
class OpenCollisionDump:
    """Collision resolution (RFC 4271 6.8) chose to close this connection."""


Event = (
    ManualStart
    | ManualStop
    | TcpConnectionConfirmed
    | TcpConnectionFails
    | ConnectRetryTimerExpires
    | HoldTimerExpires
    | KeepaliveTimerExpires
    | IdleHoldTimerExpires
    | OpenReceived
    | KeepaliveReceived
    | UpdateReceived
    | RouteRefreshReceived
    | NotificationReceived
    | MessageError
    | OpenCollisionDump
)

# ---- actions ------------------------------------------------------------------------


@dataclass(frozen=True)
class InitiateConnection:
    pass


@dataclass(frozen=True)
class DropConnection:
    pass


@dataclass(frozen=True)
class SendOpen:
    hold_time: int


@dataclass(frozen=True)
class SendKeepalive:
    pass


@dataclass(frozen=True)
class SendNotification:
    code: int
    subcode: int
    data: bytes = b""

    @property
    def name(self) -> str:
        return errors.notification_name(self.code, self.subcode)


@dataclass(frozen=True)
class StartTimer:
    timer: Timer
    seconds: float


@dataclass(frozen=True)
class StopTimer:
    timer: Timer


@dataclass(frozen=True)
class SessionEstablished:
    open: OpenInfo
    hold_time: int
    keepalive_time: int


@dataclass(frozen=True)
class SessionDown:
    """The session left Established. ``graceful`` is True when no NOTIFICATION was sent
    or received (the TCP connection just broke), the case where RFC 4724 keeps the
    peer's routes as stale. A hold timer expiry sends one, so it is not graceful."""

    reason: str
    graceful: bool


@dataclass(frozen=True)
class DeliverUpdate:
    update: Any


@dataclass(frozen=True)
class DeliverRouteRefresh:
    message: Any


Action = (
    InitiateConnection
    | DropConnection
    | SendOpen
    | SendKeepalive
    | SendNotification
    | StartTimer
    | StopTimer
    | SessionEstablished
    | SessionDown
    | DeliverUpdate
    | DeliverRouteRefresh
)

_FSM_SUBCODE = {
    State.OPEN_SENT: errors.FSM_UNEXPECTED_IN_OPENSENT,
    State.OPEN_CONFIRM: errors.FSM_UNEXPECTED_IN_OPENCONFIRM,
    State.ESTABLISHED: errors.FSM_UNEXPECTED_IN_ESTABLISHED,
}


def negotiate_hold_time(local: int, remote: int) -> int:
    """RFC 4271 4.2: the smaller of both; 0 (no keepalives, no hold timer) if either is 0."""
    return min(local, remote)


@dataclass
class Fsm:
    """One BGP connection's state machine. ``handle`` returns the actions to carry out."""

    config: FsmConfig
    state: State = State.IDLE
    peer_open: OpenInfo | None = None
    hold_time: int = 0
    keepalive_time: int = 0
    last_error: str = ""
    connect_retry_counter: int = 0
    transitions: list[tuple[State, State, str]] = field(default_factory=list)

    # -- helpers ---------------------------------------------------------------------

    def _goto(self, new: State, why: str) -> None:
        if new is not self.state:
            self.transitions.append((self.state, new, why))
            self.state = new

    def _to_idle(
        self, out: list[Action], why: str, *, notified: bool, restart: bool = True
    ) -> None:
        """Release everything and go to Idle; schedule an automatic restart after errors.

        ``notified``: a NOTIFICATION was sent or received on the way (not graceful)."""
        out.append(StopTimer(Timer.CONNECT_RETRY))
        out.append(StopTimer(Timer.HOLD))
        out.append(StopTimer(Timer.KEEPALIVE))
        out.append(DropConnection())
        if self.state is State.ESTABLISHED:
            out.append(SessionDown(why, graceful=not notified))
        self.connect_retry_counter += 1
        self.last_error = why
        self.peer_open = None
        self._goto(State.IDLE, why)
        if restart and self.config.auto_restart:
            out.append(StartTimer(Timer.IDLE_HOLD, self.config.idle_hold_time))

    def _notify_and_idle(
        self, out: list[Action], code: int, subcode: int, data: bytes = b"", why: str = ""
    ) -> None:
        note = SendNotification(code, subcode, data)
        out.append(note)
        self._to_idle(out, why or f"notification sent: {note.name}", notified=True)

    def _start(self, out: list[Action]) -> None:
        out.append(StopTimer(Timer.IDLE_HOLD))
        out.append(StartTimer(Timer.CONNECT_RETRY, self.config.connect_retry_time))
        if self.config.passive:
            self._goto(State.ACTIVE, "start (passive)")
        else:
            out.append(InitiateConnection())
            self._goto(State.CONNECT, "start")

    def _connected(self, out: list[Action]) -> None:
        out.append(StopTimer(Timer.CONNECT_RETRY))
        out.append(SendOpen(self.config.hold_time))
        out.append(StartTimer(Timer.HOLD, LARGE_HOLD_TIME))
        self._goto(State.OPEN_SENT, "connection up, OPEN sent")

    def validate_open(self, info: OpenInfo) -> SendNotification | None:
        """RFC 4271 6.2 checks of a received OPEN; the NOTIFICATION to send, or None."""
        if info.version != 4:
            return SendNotification(
                errors.OPEN_MESSAGE_ERROR, errors.UNSUPPORTED_VERSION_NUMBER, (4).to_bytes(2, "big")
            )
        if self.config.peer_as is not None and info.asn != self.config.peer_as:
            return SendNotification(errors.OPEN_MESSAGE_ERROR, errors.BAD_PEER_AS)
        if info.hold_time in (1, 2):
            return SendNotification(errors.OPEN_MESSAGE_ERROR, errors.UNACCEPTABLE_HOLD_TIME)
        bad_id = info.bgp_id == ipaddress.IPv4Address(0) or info.bgp_id.is_multicast
        # RFC 6286 2.2: the same identifier is an error only within one AS.
        if info.asn == self.config.local_as and info.bgp_id == self.config.router_id:
            bad_id = True
        if bad_id:
            return SendNotification(errors.OPEN_MESSAGE_ERROR, errors.BAD_BGP_IDENTIFIER)
        missing = sorted(self.config.required_capabilities - info.capabilities)
        if missing:
            # RFC 5492 5: data lists the capabilities we need (code, length 0).
            data = b"".join(bytes([c, 0]) for c in missing)
            return SendNotification(errors.OPEN_MESSAGE_ERROR, errors.UNSUPPORTED_CAPABILITY, data)
        return None

    # -- the state machine -----------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        out: list[Action] = []
        handler = {
            State.IDLE: self._idle,
            State.CONNECT: self._connect_or_active,
            State.ACTIVE: self._connect_or_active,
            State.OPEN_SENT: self._open_sent,
            State.OPEN_CONFIRM: self._open_confirm,
            State.ESTABLISHED: self._established,
        }[self.state]
        handler(event, out)
        return out

    def _idle(self, ev: Event, out: list[Action]) -> None:
        # RFC 4271 8.2.2 Idle: only start events matter; everything else is ignored.
        if isinstance(ev, ManualStart | IdleHoldTimerExpires):
            if isinstance(ev, ManualStart):
                self.connect_retry_counter = 0
            self._start(out)
        elif isinstance(ev, ManualStop):
            out.append(StopTimer(Timer.IDLE_HOLD))
        elif isinstance(ev, TcpConnectionConfirmed):
            # A connection handed to an idle FSM is refused (the daemon closes it).
            out.append(DropConnection())

    def _connect_or_active(self, ev: Event, out: list[Action]) -> None:
        if isinstance(ev, ManualStart):
            return
        if isinstance(ev, ManualStop):
            self._to_idle(out, "manual stop", notified=False, restart=False)
        elif isinstance(ev, ConnectRetryTimerExpires):
            out.append(StartTimer(Timer.CONNECT_RETRY, self.config.connect_retry_time))
            if self.config.passive:
                return
            out.append(DropConnection())
            out.append(InitiateConnection())
            self._goto(State.CONNECT, "connect retry")
        elif isinstance(ev, TcpConnectionConfirmed):
            self._connected(out)
        elif isinstance(ev, TcpConnectionFails):
            out.append(StartTimer(Timer.CONNECT_RETRY, self.config.connect_retry_time))
            self.last_error = (
                f"connection failed: {ev.reason}" if ev.reason else "connection failed"
            )
            self._goto(State.ACTIVE, self.last_error)
        elif isinstance(ev, IdleHoldTimerExpires | KeepaliveTimerExpires):
            return
        else:
            # Messages or hold expiry without a connection in OpenSent: back to Idle.
            self._to_idle(out, f"unexpected {type(ev).__name__} in {self.state}", notified=False)

    def _open_sent(self, ev: Event, out: list[Action]) -> None:
        if isinstance(ev, ManualStart | IdleHoldTimerExpires):
            return
        if isinstance(ev, ManualStop):
            out.append(SendNotification(errors.CEASE, ev.subcode))
            self._to_idle(out, "manual stop", notified=True, restart=False)
        elif isinstance(ev, HoldTimerExpires):
            self._notify_and_idle(out, errors.HOLD_TIMER_EXPIRED, 0, why="hold timer expired")
        elif isinstance(ev, TcpConnectionFails):
            # RFC 4271 8.2.2: close, restart ConnectRetryTimer, continue listening in Active.
            out.append(DropConnection())
            out.append(StopTimer(Timer.HOLD))
            out.append(StartTimer(Timer.CONNECT_RETRY, self.config.connect_retry_time))
            self.last_error = "connection failed in OpenSent"
            self._goto(State.ACTIVE, self.last_error)
        elif isinstance(ev, OpenReceived):
            self._open_received(ev.open, out)
        elif isinstance(ev, NotificationReceived):
            self._to_idle(out, _received_why(ev), notified=True)
        elif isinstance(ev, MessageError):
            self._notify_and_idle(out, ev.code, ev.subcode, ev.data)
        elif isinstance(ev, OpenCollisionDump):
            self._notify_and_idle(out, errors.CEASE, errors.CEASE_CONNECTION_COLLISION)
        else:
            self._fsm_error(out, ev)

    def _open_received(self, info: OpenInfo, out: list[Action]) -> None:
        error = self.validate_open(info)
        if error is not None:
            out.append(error)
            self._to_idle(out, f"notification sent: {error.name}", notified=True)
            return
        self.peer_open = info
        self.hold_time = negotiate_hold_time(self.config.hold_time, info.hold_time)
        self.keepalive_time = self.hold_time // 3
        out.append(StopTimer(Timer.CONNECT_RETRY))
        out.append(SendKeepalive())
        if self.hold_time:
            out.append(StartTimer(Timer.KEEPALIVE, self.keepalive_time))
            out.append(StartTimer(Timer.HOLD, self.hold_time))
        else:
            out.append(StopTimer(Timer.HOLD))
        self._goto(State.OPEN_CONFIRM, "OPEN accepted")

    def _fsm_error(self, out: list[Action], ev: Event) -> None:
        self._notify_and_idle(
            out,
            errors.FSM_ERROR,
            _FSM_SUBCODE[self.state],
            why=f"unexpected {type(ev).__name__} in {self.state}",
        )

    def _open_confirm(self, ev: Event, out: list[Action]) -> None:
        if isinstance(ev, ManualStart | IdleHoldTimerExpires):
            return
        if isinstance(ev, ManualStop):
            out.append(SendNotification(errors.CEASE, ev.subcode))
            self._to_idle(out, "manual stop", notified=True, restart=False)
        elif isinstance(ev, HoldTimerExpires):
            self._notify_and_idle(out, errors.HOLD_TIMER_EXPIRED, 0, why="hold timer expired")
        elif isinstance(ev, KeepaliveTimerExpires):
            out.append(SendKeepalive())
            out.append(StartTimer(Timer.KEEPALIVE, self.keepalive_time))
        elif isinstance(ev, TcpConnectionFails):
            self._to_idle(out, "connection failed in OpenConfirm", notified=False)
        elif isinstance(ev, NotificationReceived):
            self._to_idle(out, _received_why(ev), notified=True)
        elif isinstance(ev, MessageError):
            self._notify_and_idle(out, ev.code, ev.subcode, ev.data)
        elif isinstance(ev, OpenCollisionDump):
            self._notify_and_idle(out, errors.CEASE, errors.CEASE_CONNECTION_COLLISION)
        elif isinstance(ev, KeepaliveReceived):
            if self.hold_time:
                out.append(StartTimer(Timer.HOLD, self.hold_time))
            assert self.peer_open is not None
            self._goto(State.ESTABLISHED, "KEEPALIVE received")
            out.append(SessionEstablished(self.peer_open, self.hold_time, self.keepalive_time))
        else:
            self._fsm_error(out, ev)

    def _established(self, ev: Event, out: list[Action]) -> None:
        if isinstance(ev, ManualStart | IdleHoldTimerExpires):
            return
        if isinstance(ev, ManualStop):
            out.append(SendNotification(errors.CEASE, ev.subcode))
            self._to_idle(out, "manual stop", notified=True, restart=False)
        elif isinstance(ev, HoldTimerExpires):
            self._notify_and_idle(out, errors.HOLD_TIMER_EXPIRED, 0, why="hold timer expired")
        elif isinstance(ev, KeepaliveTimerExpires):
            out.append(SendKeepalive())
            out.append(StartTimer(Timer.KEEPALIVE, self.keepalive_time))
        elif isinstance(ev, KeepaliveReceived):
            if self.hold_time:
                out.append(StartTimer(Timer.HOLD, self.hold_time))
        elif isinstance(ev, UpdateReceived):
            if self.hold_time:
                out.append(StartTimer(Timer.HOLD, self.hold_time))
            out.append(DeliverUpdate(ev.update))
        elif isinstance(ev, RouteRefreshReceived):
            if self.hold_time:
                out.append(StartTimer(Timer.HOLD, self.hold_time))
            out.append(DeliverRouteRefresh(ev.message))
        elif isinstance(ev, TcpConnectionFails):
            why = f"connection lost: {ev.reason}" if ev.reason else "connection lost"
            self._to_idle(out, why, notified=False)
        elif isinstance(ev, NotificationReceived):
            self._to_idle(out, _received_why(ev), notified=True)
        elif isinstance(ev, MessageError):
            self._notify_and_idle(out, ev.code, ev.subcode, ev.data)
        elif isinstance(ev, OpenCollisionDump):
            self._notify_and_idle(out, errors.CEASE, errors.CEASE_CONNECTION_COLLISION)
        else:
            self._fsm_error(out, ev)


def _received_why(ev: NotificationReceived) -> str:
    return f"notification received: {errors.notification_name(ev.code, ev.subcode)}"
