"""RFC 4271 section 8 transitions, RFC 6608 FSM error subcodes, hold time rules."""

from __future__ import annotations

import ipaddress

import pytest

from bgp.fsm import (
    Connection,
    ConnectRetryTimerExpires,
    DeliverUpdate,
    DropConnection,
    Fsm,
    FsmConfig,
    HoldTimerExpires,
    IdleHoldTimerExpires,
    InitiateConnection,
    KeepaliveReceived,
    KeepaliveTimerExpires,
    ManualStart,
    ManualStop,
    MessageError,
    NotificationReceived,
    OpenCollisionDump,
    OpenInfo,
    OpenReceived,
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
    resolve_collision,
)
from bgp.wire import errors
from bgp.wire.errors import notification_name

LOCAL_ID = ipaddress.IPv4Address("10.0.0.1")
PEER_ID = ipaddress.IPv4Address("10.0.0.2")


def cfg(**kw) -> FsmConfig:
    base = dict(local_as=65000, router_id=LOCAL_ID, peer_as=65001, hold_time=90)
    base.update(kw)
    return FsmConfig(**base)


def peer_open(**kw) -> OpenInfo:
    base = dict(version=4, asn=65001, hold_time=90, bgp_id=PEER_ID)
    base.update(kw)
    return OpenInfo(**base)


def notifications(actions) -> list[tuple[int, int]]:
    return [(a.code, a.subcode) for a in actions if isinstance(a, SendNotification)]


def fsm_in(state: State, **kw) -> Fsm:
    """Drive a fresh FSM through real events to ``state``."""
    fsm = Fsm(cfg(**kw))
    fsm.handle(ManualStart())
    if state is State.CONNECT:
        return fsm
    if state is State.ACTIVE:
        fsm.handle(TcpConnectionFails("refused"))
        return fsm
    fsm.handle(TcpConnectionConfirmed())
    if state is State.OPEN_SENT:
        return fsm
    fsm.handle(OpenReceived(peer_open()))
    if state is State.OPEN_CONFIRM:
        return fsm
    fsm.handle(KeepaliveReceived())
    assert fsm.state is State.ESTABLISHED
    return fsm


def test_manual_start_connects_and_starts_connect_retry_timer():
    fsm = Fsm(cfg(connect_retry_time=7))
    actions = fsm.handle(ManualStart())
    assert fsm.state is State.CONNECT
    assert InitiateConnection() in actions
    assert StartTimer(Timer.CONNECT_RETRY, 7) in actions


def test_passive_start_waits_in_active_without_connecting():
    fsm = Fsm(cfg(passive=True))
    actions = fsm.handle(ManualStart())
    assert fsm.state is State.ACTIVE
    assert InitiateConnection() not in actions
    # The retry timer does not make a passive peer connect either.
    assert InitiateConnection() not in fsm.handle(ConnectRetryTimerExpires())
    assert fsm.state is State.ACTIVE


def test_idle_ignores_messages_and_timers():
    fsm = Fsm(cfg())
    for ev in (KeepaliveReceived(), HoldTimerExpires(), OpenReceived(peer_open())):
        assert fsm.handle(ev) == []
        assert fsm.state is State.IDLE


def test_connection_up_sends_open_with_large_hold_timer():
    fsm = fsm_in(State.CONNECT)
    actions = fsm.handle(TcpConnectionConfirmed())
    assert fsm.state is State.OPEN_SENT
    assert SendOpen(90) in actions
    assert StartTimer(Timer.HOLD, 240) in actions
    assert StopTimer(Timer.CONNECT_RETRY) in actions


def test_connect_failure_goes_active_then_retry_reconnects():
    fsm = fsm_in(State.CONNECT)
    fsm.handle(TcpConnectionFails("refused"))
    assert fsm.state is State.ACTIVE
    assert "refused" in fsm.last_error
    actions = fsm.handle(ConnectRetryTimerExpires())
    assert fsm.state is State.CONNECT
    assert InitiateConnection() in actions


def test_incoming_connection_accepted_in_active():
    fsm = fsm_in(State.ACTIVE)
    fsm.handle(TcpConnectionConfirmed())
    assert fsm.state is State.OPEN_SENT


def test_valid_open_sends_keepalive_and_negotiates_hold_time_minimum():
    fsm = fsm_in(State.OPEN_SENT, hold_time=90)
    actions = fsm.handle(OpenReceived(peer_open(hold_time=9)))
    assert fsm.state is State.OPEN_CONFIRM
    assert fsm.hold_time == 9 and fsm.keepalive_time == 3
    assert SendKeepalive() in actions
    assert StartTimer(Timer.HOLD, 9) in actions
    assert StartTimer(Timer.KEEPALIVE, 3) in actions


def test_hold_time_zero_means_no_keepalives_and_no_hold_timer():
    fsm = fsm_in(State.OPEN_SENT)
    actions = fsm.handle(OpenReceived(peer_open(hold_time=0)))
    assert fsm.hold_time == 0
    assert StopTimer(Timer.HOLD) in actions
    assert not any(isinstance(a, StartTimer) for a in actions)
    actions = fsm.handle(KeepaliveReceived())
    assert fsm.state is State.ESTABLISHED
    assert not any(isinstance(a, StartTimer) for a in actions)


@pytest.mark.parametrize("hold", [1, 2])
def test_peer_hold_time_one_or_two_is_rejected_with_unacceptable_hold_time(hold):
    fsm = fsm_in(State.OPEN_SENT)
    actions = fsm.handle(OpenReceived(peer_open(hold_time=hold)))
    assert notifications(actions) == [(errors.OPEN_MESSAGE_ERROR, errors.UNACCEPTABLE_HOLD_TIME)]
    assert fsm.state is State.IDLE
    assert DropConnection() in actions


@pytest.mark.parametrize("hold", [1, 2, -1, 70000])
def test_configured_hold_time_must_be_zero_or_at_least_three(hold):
    with pytest.raises(ValueError, match="hold_time"):
        cfg(hold_time=hold)


@pytest.mark.parametrize(
    ("open_kw", "subcode"),
    [
        ({"asn": 65099}, errors.BAD_PEER_AS),
        ({"version": 3}, errors.UNSUPPORTED_VERSION_NUMBER),
        ({"bgp_id": ipaddress.IPv4Address("0.0.0.0")}, errors.BAD_BGP_IDENTIFIER),
        ({"bgp_id": ipaddress.IPv4Address("224.0.0.1")}, errors.BAD_BGP_IDENTIFIER),
    ],
)
def test_bad_open_is_refused_with_the_open_error_subcode(open_kw, subcode):
    fsm = fsm_in(State.OPEN_SENT)
    actions = fsm.handle(OpenReceived(peer_open(**open_kw)))
    assert notifications(actions) == [(errors.OPEN_MESSAGE_ERROR, subcode)]
    assert fsm.state is State.IDLE
    assert "OPEN Message Error" in fsm.last_error


def test_unsupported_version_notification_carries_our_version():
    fsm = fsm_in(State.OPEN_SENT)
    actions = fsm.handle(OpenReceived(peer_open(version=5)))
    note = next(a for a in actions if isinstance(a, SendNotification))
    assert note.data == b"\x00\x04"


def test_same_router_id_is_bad_only_for_ibgp_rfc6286():
    ibgp = fsm_in(State.OPEN_SENT, peer_as=65000)
    actions = ibgp.handle(OpenReceived(peer_open(asn=65000, bgp_id=LOCAL_ID)))
    assert notifications(actions) == [(errors.OPEN_MESSAGE_ERROR, errors.BAD_BGP_IDENTIFIER)]
    ebgp = fsm_in(State.OPEN_SENT)
    ebgp.handle(OpenReceived(peer_open(bgp_id=LOCAL_ID)))
    assert ebgp.state is State.OPEN_CONFIRM


def test_missing_required_capability_is_unsupported_capability_with_data():
    fsm = fsm_in(State.OPEN_SENT, required_capabilities=frozenset({65}))
    actions = fsm.handle(OpenReceived(peer_open(capabilities=frozenset({1, 2}))))
    note = next(a for a in actions if isinstance(a, SendNotification))
    assert (note.code, note.subcode, note.data) == (2, 7, bytes([65, 0]))
    fsm = fsm_in(State.OPEN_SENT, required_capabilities=frozenset({65}))
    fsm.handle(OpenReceived(peer_open(capabilities=frozenset({1, 65}))))
    assert fsm.state is State.OPEN_CONFIRM


def test_any_peer_as_accepted_when_not_configured():
    fsm = fsm_in(State.OPEN_SENT, peer_as=None)
    fsm.handle(OpenReceived(peer_open(asn=4200000000)))
    assert fsm.state is State.OPEN_CONFIRM


def test_keepalive_in_openconfirm_establishes_session():
    fsm = fsm_in(State.OPEN_CONFIRM)
    actions = fsm.handle(KeepaliveReceived())
    assert fsm.state is State.ESTABLISHED
    est = next(a for a in actions if isinstance(a, SessionEstablished))
    assert est.open.bgp_id == PEER_ID and est.hold_time == 90 and est.keepalive_time == 30
    assert StartTimer(Timer.HOLD, 90) in actions


@pytest.mark.parametrize(
    ("state", "event", "subcode"),
    [
        (State.OPEN_SENT, KeepaliveReceived(), errors.FSM_UNEXPECTED_IN_OPENSENT),
        (State.OPEN_SENT, UpdateReceived(object()), errors.FSM_UNEXPECTED_IN_OPENSENT),
        (State.OPEN_CONFIRM, UpdateReceived(object()), errors.FSM_UNEXPECTED_IN_OPENCONFIRM),
        (State.OPEN_CONFIRM, OpenReceived(peer_open()), errors.FSM_UNEXPECTED_IN_OPENCONFIRM),
        (State.ESTABLISHED, OpenReceived(peer_open()), errors.FSM_UNEXPECTED_IN_ESTABLISHED),
    ],
)
def test_unexpected_message_is_fsm_error_5_with_rfc6608_subcode(state, event, subcode):
    fsm = fsm_in(state)
    actions = fsm.handle(event)
    assert notifications(actions) == [(errors.FSM_ERROR, subcode)]
    assert fsm.state is State.IDLE
    assert DropConnection() in actions


@pytest.mark.parametrize("state", [State.OPEN_SENT, State.OPEN_CONFIRM, State.ESTABLISHED])
def test_hold_timer_expiry_sends_hold_timer_expired_4(state):
    fsm = fsm_in(state)
    actions = fsm.handle(HoldTimerExpires())
    assert notifications(actions) == [(errors.HOLD_TIMER_EXPIRED, 0)]
    assert fsm.state is State.IDLE
    assert fsm.last_error == "hold timer expired"


def test_hold_timer_expiry_in_established_sends_notification_so_down_is_not_graceful():
    fsm = fsm_in(State.ESTABLISHED)
    actions = fsm.handle(HoldTimerExpires())
    down = next(a for a in actions if isinstance(a, SessionDown))
    # We sent a NOTIFICATION, so RFC 4724 stale retention does not apply.
    assert down.graceful is False


def test_tcp_loss_in_established_is_graceful_down():
    fsm = fsm_in(State.ESTABLISHED)
    actions = fsm.handle(TcpConnectionFails("reset by peer"))
    down = next(a for a in actions if isinstance(a, SessionDown))
    assert down.graceful is True and "reset by peer" in down.reason
    assert StartTimer(Timer.IDLE_HOLD, 5) in actions


def test_notification_received_in_established_goes_idle_not_graceful():
    fsm = fsm_in(State.ESTABLISHED)
    actions = fsm.handle(NotificationReceived(errors.CEASE, errors.CEASE_ADMIN_SHUTDOWN))
    assert fsm.state is State.IDLE
    assert notifications(actions) == []
    down = next(a for a in actions if isinstance(a, SessionDown))
    assert not down.graceful
    assert fsm.last_error == "notification received: Cease/Administrative Shutdown"


@pytest.mark.parametrize("state", [State.OPEN_SENT, State.OPEN_CONFIRM, State.ESTABLISHED])
def test_manual_stop_sends_cease_admin_shutdown_and_does_not_restart(state):
    fsm = fsm_in(state)
    actions = fsm.handle(ManualStop())
    assert notifications(actions) == [(errors.CEASE, errors.CEASE_ADMIN_SHUTDOWN)]
    assert fsm.state is State.IDLE
    assert not any(isinstance(a, StartTimer) for a in actions)


def test_manual_stop_in_connect_drops_without_notification():
    fsm = fsm_in(State.CONNECT)
    actions = fsm.handle(ManualStop())
    assert notifications(actions) == [] and DropConnection() in actions
    assert fsm.state is State.IDLE


def test_keepalive_timer_sends_keepalive_and_rearms():
    fsm = fsm_in(State.ESTABLISHED)
    actions = fsm.handle(KeepaliveTimerExpires())
    assert actions == [SendKeepalive(), StartTimer(Timer.KEEPALIVE, 30)]
    assert fsm.state is State.ESTABLISHED


def test_update_in_established_is_delivered_and_rearms_hold_timer():
    fsm = fsm_in(State.ESTABLISHED)
    marker = object()
    actions = fsm.handle(UpdateReceived(marker))
    assert DeliverUpdate(marker) in actions
    assert StartTimer(Timer.HOLD, 90) in actions


def test_decode_error_sends_the_codecs_notification():
    fsm = fsm_in(State.ESTABLISHED)
    actions = fsm.handle(MessageError(3, 1, b""))
    assert notifications(actions) == [(3, 1)]
    assert fsm.state is State.IDLE


@pytest.mark.parametrize("state", [State.OPEN_SENT, State.OPEN_CONFIRM])
def test_collision_dump_sends_cease_connection_collision(state):
    fsm = fsm_in(state)
    actions = fsm.handle(OpenCollisionDump())
    assert notifications(actions) == [(errors.CEASE, errors.CEASE_CONNECTION_COLLISION)]
    assert fsm.state is State.IDLE


def test_idle_hold_timer_restarts_after_error():
    fsm = fsm_in(State.ESTABLISHED)
    fsm.handle(HoldTimerExpires())
    actions = fsm.handle(IdleHoldTimerExpires())
    assert fsm.state is State.CONNECT
    assert InitiateConnection() in actions


def test_no_automatic_restart_when_disabled():
    fsm = fsm_in(State.ESTABLISHED, auto_restart=False)
    actions = fsm.handle(HoldTimerExpires())
    assert not any(isinstance(a, StartTimer) for a in actions)


def test_tcp_failure_in_opensent_falls_back_to_active():
    fsm = fsm_in(State.OPEN_SENT)
    actions = fsm.handle(TcpConnectionFails())
    assert fsm.state is State.ACTIVE
    assert notifications(actions) == []


def test_transitions_are_recorded_for_logging():
    fsm = fsm_in(State.ESTABLISHED)
    states = [(a.value, b.value) for a, b, _ in fsm.transitions]
    assert states == [
        ("Idle", "Connect"),
        ("Connect", "OpenSent"),
        ("OpenSent", "OpenConfirm"),
        ("OpenConfirm", "Established"),
    ]


def test_collision_keeps_connection_initiated_by_higher_bgp_id():
    low, high = ipaddress.IPv4Address("1.1.1.1"), ipaddress.IPv4Address("9.9.9.9")
    # We are lower: the peer (higher) initiated connection survives; close ours.
    assert resolve_collision(low, high) is Connection.OUTGOING
    assert resolve_collision(high, low) is Connection.INCOMING
    # Compared as unsigned 32-bit numbers, not strings.
    assert (
        resolve_collision(ipaddress.IPv4Address("10.0.0.9"), ipaddress.IPv4Address("10.0.0.10"))
        is Connection.OUTGOING
    )


def test_notification_names_for_logs():
    assert notification_name(6, 7) == "Cease/Connection Collision Resolution"
    assert notification_name(4, 0) == "Hold Timer Expired"
    assert notification_name(99, 1) == "code 99/subcode 1"
