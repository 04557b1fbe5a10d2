"""Batched rtnetlink route programmer: many routes per send, every error attributed.

Each route is one RTM_NEWROUTE/RTM_DELROUTE with NLM_F_ACK and its own sequence
number. A batch is one ``send``; the kernel processes it synchronously and queues one
NLMSG_ERROR ack per message, which we read back and match by sequence number, so a
failing route is reported as that route while the rest of the batch still applies.
Batches are sized so their acks fit the (enlarged) receive buffer; if the kernel ever
drops acks (ENOBUFS) the unacknowledged routes are reported as unknown, never as done.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from felix.netlink.codec import (
    Route,
    iter_messages,
    pack_link_dump,
    pack_route,
    pack_route_dump,
    parse_error,
    parse_link,
    parse_route,
)
from felix.netlink.constants import (
    NETLINK_CAP_ACK,
    NETLINK_EXT_ACK,
    NETLINK_GET_STRICT_CHK,
    NETLINK_ROUTE,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP_INTR,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    RTM_DELROUTE,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    SOL_NETLINK,
)
from felix.netlink.netns import NetnsRunner

log = logging.getLogger(__name__)

SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33

ADD = "add"  # NLM_F_CREATE|NLM_F_EXCL: never overwrites a route someone else owns
REPLACE = "replace"  # NLM_F_CREATE|NLM_F_REPLACE: for a route of ours that changed
DELETE = "delete"

_FLAGS = {
    ADD: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    REPLACE: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
    DELETE: NLM_F_REQUEST | NLM_F_ACK,
}


@dataclass(frozen=True, slots=True)
class RouteOp:
    op: str  # ADD, REPLACE or DELETE
    route: Route


@dataclass(frozen=True, slots=True)
class RouteError:
    """The kernel refused (or may not have applied) this one operation."""

    op: RouteOp
    errno: int
    message: str = ""

    def __str__(self) -> str:
        text = f"{self.op.op} {self.op.route.describe()}: {os.strerror(self.errno)}"
        return f"{text} ({self.message})" if self.message else text


@dataclass
class ApplyResult:
    applied: int = 0
    errors: list[RouteError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class DumpInterrupted(RuntimeError):
    """The table changed during a dump (NLM_F_DUMP_INTR); the caller should re-dump."""


class NetlinkError(OSError):
    pass


class RouteProgrammer:
    """One rtnetlink socket, opened inside ``netns`` (None: this process's namespace)."""

    def __init__(
        self,
        netns: str | None = None,
        batch_size: int = 2048,
        rcvbuf: int = 32 << 20,
        sndbuf: int = 8 << 20,
        runner: NetnsRunner | None = None,
    ) -> None:
        self.netns = netns
        self.batch_size = batch_size
        own_runner = runner is None and netns is not None
        runner = runner or (NetnsRunner(netns) if netns is not None else None)
        try:
            self.sock = (
                runner.run(self._open, rcvbuf, sndbuf) if runner else self._open(rcvbuf, sndbuf)
            )
        finally:
            if own_runner and runner is not None:
                runner.close()
        self._seq = 0
        self._buf = bytearray(1 << 20)
        self._view = memoryview(self._buf)
        self.messages_sent = 0  # every route change message ever sent (tests count these)

    @staticmethod
    def _open(rcvbuf: int, sndbuf: int) -> socket.socket:
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        for force, plain, size in (
            (SO_RCVBUFFORCE, socket.SO_RCVBUF, rcvbuf),
            (SO_SNDBUFFORCE, socket.SO_SNDBUF, sndbuf),
        ):
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, size)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, plain, size)
        for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK):
            try:
                sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError as exc:  # old kernels: still correct, just less detail
                log.debug("netlink option unavailable opt=%d err=%s", opt, exc)
        sock.bind((0, 0))
        return sock

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RouteProgrammer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    # -- writes ---------------------------------------------------------------------

    def apply(self, ops: Iterable[RouteOp]) -> ApplyResult:
        """Send all ``ops`` in batches; return how many applied and each failure."""
        result = ApplyResult()
        batch: list[bytes] = []
        pending: dict[int, RouteOp] = {}
        for rop in ops:
            seq = self._next_seq()
            batch.append(
                pack_route(
                    RTM_DELROUTE if rop.op == DELETE else RTM_NEWROUTE,
                    _FLAGS[rop.op],
                    seq,
                    rop.route,
                    delete=rop.op == DELETE,
                )
            )
            pending[seq] = rop
            if len(batch) >= self.batch_size:
                self._flush(batch, pending, result)
                batch, pending = [], {}
        if batch:
            self._flush(batch, pending, result)
        return result

    def _flush(self, batch: list[bytes], pending: dict[int, RouteOp], result: ApplyResult) -> None:
        self.sock.send(b"".join(batch))
        self.messages_sent += len(batch)
        view, recv_into = self._view, self.sock.recv_into
        try:
            while pending:
                n = recv_into(self._buf)
                for mtype, flags, seq, off, mlen in iter_messages(view, n):
                    rop = pending.pop(seq, None)
                    if rop is None or mtype != NLMSG_ERROR:
                        continue
                    err, text = parse_error(view, off, mlen, flags)
                    if err:
                        result.errors.append(RouteError(rop, err, text))
                        log.warning(
                            "route op failed op=%s route=%r errno=%s msg=%r",
                            rop.op,
                            rop.route.describe(),
                            errno.errorcode.get(err, err),
                            text,
                        )
                    else:
                        result.applied += 1
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            # Acks were dropped: we cannot know what the kernel did with these.
            log.error("netlink acks lost (ENOBUFS) unacked=%d", len(pending))
            result.errors.extend(
                RouteError(rop, errno.ENOBUFS, "ack lost; state unknown")
                for rop in pending.values()
            )

    # -- reads ----------------------------------------------------------------------

    def _dump(self, request: bytes, seq: int) -> Iterable[tuple[int, int, int]]:
        """Send a dump request; yield (type, payload_off, payload_end) per reply message."""
        self.sock.send(request)
        interrupted = False
        view = self._view
        while True:
            n = self.sock.recv_into(self._buf)
            for mtype, flags, rseq, off, mlen in iter_messages(view, n):
                if rseq != seq:
                    continue
                if flags & NLM_F_DUMP_INTR:
                    interrupted = True
                if mtype == NLMSG_DONE:
                    if interrupted:
                        raise DumpInterrupted("route table changed during dump")
                    return
                if mtype == NLMSG_ERROR:
                    err, text = parse_error(view, off, mlen, flags)
                    if err:
                        raise NetlinkError(err, f"dump failed: {os.strerror(err)} {text}".strip())
                    return
                yield mtype, off, off - 16 + mlen

    def dump_routes(
        self, family: int = socket.AF_INET, table: int = 0, protocol: int = 0
    ) -> list[Route]:
        """Routes of ``family``, filtered by table and protocol (0: any) in the kernel."""
        seq = self._next_seq()
        routes: list[Route] = []
        try:
            for mtype, off, end in self._dump(pack_route_dump(seq, family, table, protocol), seq):
                if mtype != RTM_NEWROUTE:
                    continue
                r = parse_route(self._view, off, end)
                # Also filter here: without strict checking the kernel ignores filters.
                if (not table or r.table == table) and (not protocol or r.protocol == protocol):
                    routes.append(r)
        except NetlinkError as exc:
            if exc.errno == errno.ENOENT:  # the table does not exist yet: it is empty
                return []
            raise
        return routes

    def link_indexes(self) -> dict[str, int]:
        """Interface name -> ifindex for every link in the namespace."""
        seq = self._next_seq()
        out: dict[str, int] = {}
        for mtype, off, end in self._dump(pack_link_dump(seq), seq):
            if mtype == RTM_NEWLINK:
                idx, name = parse_link(self._view, off, end)
                out[name] = idx
        return out


def ops(op: str, routes: Sequence[Route]) -> list[RouteOp]:
    """Convenience: the same operation for many routes."""
    return [RouteOp(op, r) for r in routes]
