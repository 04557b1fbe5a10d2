"""Incremental framing: bytes from a TCP stream in, complete decoded messages out."""

from __future__ import annotations

from bgp.wire.header import HEADER_LEN, OPEN, check_header
from bgp.wire.message import Message, decode_body
from bgp.wire.negotiated import MAX_MESSAGE, Negotiated
from bgp.wire.open import Open


class MessageReader:
    """Split a byte stream into messages; header errors raise ``BgpError`` at once.

    The encoding of an UPDATE depends on what the OPENs negotiated, and a peer may send
    OPEN, KEEPALIVE and UPDATEs in one segment. So: given ``local_open``, the reader
    derives ``ctx`` itself when the peer's OPEN arrives; without it, ``feed`` stops
    right after an OPEN and leaves the rest buffered until the caller sets ``ctx`` and
    calls ``feed(b"")``.
    """

    def __init__(self, ctx: Negotiated | None = None, local_open: Open | None = None) -> None:
        self.ctx = ctx
        self.local_open = local_open
        self._buf = bytearray()

    @property
    def max_length(self) -> int:
        return self.ctx.max_message_size if self.ctx is not None else MAX_MESSAGE

    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        buf = self._buf
        buf += data
        out: list[Message] = []
        pos = 0
        try:
            while len(buf) - pos >= HEADER_LEN:
                length, msg_type = check_header(bytes(buf[pos : pos + HEADER_LEN]), self.max_length)
                if len(buf) - pos < length:
                    break
                body = bytes(buf[pos + HEADER_LEN : pos + length])
                pos += length
                msg = decode_body(msg_type, body, self.ctx)
                out.append(msg)
                if msg_type == OPEN:
                    assert isinstance(msg, Open)
                    if self.local_open is not None:
                        self.ctx = Negotiated.from_opens(self.local_open, msg)
                    else:
                        break
        finally:
            del buf[:pos]
        return out
