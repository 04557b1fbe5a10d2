"""NOTIFICATION and KEEPALIVE (RFC 4271 4.4, 4.5), plus RFC 8203 shutdown text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from bgp.wire.errors import (
    CEASE,
    CEASE_ADMIN_RESET,
    CEASE_ADMIN_SHUTDOWN,
    notification_name,
)
from bgp.wire.header import KEEPALIVE, NOTIFICATION, register

if TYPE_CHECKING:
    from bgp.wire.negotiated import Negotiated


@register(NOTIFICATION)
@dataclass(frozen=True)
class Notification:
    """An error report; the sender closes the connection right after it."""

    code: int
    subcode: int = 0
    data: bytes = b""
    type_code: ClassVar[int] = NOTIFICATION

    @classmethod
    def decode_body(cls, body: bytes, ctx: Negotiated) -> Notification:
        return cls(body[0], body[1], bytes(body[2:]))

    def encode_body(self, ctx: Negotiated) -> bytes:
        return bytes((self.code, self.subcode)) + self.data

    @classmethod
    def shutdown(cls, message: str = "", reset: bool = False) -> Notification:
        """Cease / administrative shutdown (or reset) with an RFC 8203 message."""
        text = message.encode()[:255]
        sub = CEASE_ADMIN_RESET if reset else CEASE_ADMIN_SHUTDOWN
        return cls(CEASE, sub, bytes((len(text),)) + text if text else b"")

    def shutdown_message(self) -> str | None:
        """The RFC 8203 communication of a Cease 2/4 notification, if well formed."""
        if self.code != CEASE or self.subcode not in (CEASE_ADMIN_SHUTDOWN, CEASE_ADMIN_RESET):
            return None
        if not self.data or self.data[0] + 1 > len(self.data):
            return None
        try:
            return self.data[1 : 1 + self.data[0]].decode()
        except UnicodeDecodeError:
            return None

    def __str__(self) -> str:
        text = notification_name(self.code, self.subcode)
        message = self.shutdown_message()
        if message:
            return f"{text} ({message!r})"
        return f"{text} data={self.data.hex()}" if self.data else text


@register(KEEPALIVE)
@dataclass(frozen=True)
class Keepalive:
    """Header only; keeps the hold timer of the peer from expiring."""

    type_code: ClassVar[int] = KEEPALIVE

    @classmethod
    def decode_body(cls, body: bytes, ctx: Negotiated) -> Keepalive:
        return KEEPALIVE_MESSAGE

    def encode_body(self, ctx: Negotiated) -> bytes:
        return b""


KEEPALIVE_MESSAGE = Keepalive()
