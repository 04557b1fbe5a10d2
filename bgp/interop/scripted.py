"""A scripted BGP peer for loopback tests: a plain socket speaking our codec, so tests can
send exactly the bytes they want (malformed ones included) to a running tabby-bgpd.

Addresses are ``<net><host>`` inside a random 127.x.y. prefix; the daemon is ``<net>1``.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass

from bgp.wire import Keepalive, MessageReader, Negotiated, Notification, Open, encode_message
from bgp.wire.capabilities import Multiprotocol


@dataclass(frozen=True)
class Persona:
    """A scripted peer: source address suffix, AS and what its OPEN offers."""

    host: int
    asn: int
    four_octet_as: bool = True
    families: tuple[tuple[int, int], ...] = ((1, 1), (2, 1))

    def open(self, net: str) -> Open:
        if self.four_octet_as:
            return Open.for_speaker(self.asn, net + str(self.host), 30, families=self.families)
        caps = [Multiprotocol(afi, safi) for afi, safi in self.families]
        return Open(
            my_as=self.asn,
            hold_time=30,
            bgp_id=ipaddress.IPv4Address(net + str(self.host)),
            capabilities=caps,
        )


class Scripted:
    """One TCP connection from a persona's address, speaking BGP with our codec."""

    def __init__(self, net: str, port: int, persona: Persona) -> None:
        self.sock = socket.socket()
        self.sock.settimeout(5)
        self.sock.bind((net + str(persona.host), 0))
        self.sock.connect((net + "1", port))
        self.local_open = persona.open(net)
        self.reader = MessageReader(local_open=self.local_open)
        self.pending: list[object] = []

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next(self) -> object:
        """The next message; EOFError when the daemon closed the connection."""
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.pending.extend(self.reader.feed(data))
        return self.pending.pop(0)

    def until(self, kind: type) -> object:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            msg = self.next()
            if isinstance(msg, kind):
                return msg
            if isinstance(msg, Notification) and kind is not Notification:
                raise AssertionError(f"unexpected NOTIFICATION {msg.code}/{msg.subcode}")
        raise AssertionError(f"no {kind.__name__} within 10 s")

    def establish(self) -> Negotiated:
        self.send(encode_message(self.local_open))
        self.until(Open)
        self.send(encode_message(Keepalive()))
        self.until(Keepalive)
        assert self.reader.ctx is not None
        return self.reader.ctx

    def quiet(self) -> None:
        """No NOTIFICATION and no close within a short while (KEEPALIVE/UPDATE are fine)."""
        self.sock.settimeout(0.3)
        try:
            while True:
                msg = self.next()
                assert not isinstance(msg, Notification), (msg.code, msg.subcode)
        except TimeoutError:
            pass
        finally:
            self.sock.settimeout(5)
