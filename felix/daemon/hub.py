"""Fan-out of the calc-graph stream to gRPC subscribers, each with its own queue.

Publishing never blocks: a subscriber whose queue overflows is cut off (it gets
``Overflow`` and its stream ends with an error); reconnecting gives it a fresh
snapshot, which is cheaper than letting one slow reader hold up the graph. Each
subscription numbers its own messages from 1, as the contract asks per stream.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable

from felix.calc import messages
from proto import calc_pb2

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE = 50_000


class Overflow(Exception):
    pass


_OVERFLOW = object()


class Subscription:
    def __init__(self, name: str, max_queue: int) -> None:
        self.name = name
        self.max_queue = max_queue
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._depth = 0
        self._lock = threading.Lock()
        self._seq = 0
        self.dropped = False

    def _put_many(self, msgs: Iterable[calc_pb2.ToDataplane]) -> bool:
        msgs = list(msgs)
        with self._lock:
            if self.dropped:
                return False
            if self._depth + len(msgs) > self.max_queue:
                self.dropped = True
                self._queue.put(_OVERFLOW)
                return False
            self._depth += len(msgs)
        for m in msgs:
            self._queue.put(m)
        return True

    def get(self, timeout: float) -> calc_pb2.ToDataplane | None:
        """The next message renumbered for this stream; None on timeout; Overflow when cut off."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _OVERFLOW:
            raise Overflow(
                f"subscriber {self.name} fell more than {self.max_queue} messages behind"
            )
        with self._lock:
            self._depth -= 1
        self._seq += 1
        out = calc_pb2.ToDataplane()
        out.CopyFrom(item)  # type: ignore[arg-type]
        out.sequence_number = self._seq
        return out


class SubscriberHub:
    def __init__(self, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        self._max_queue = max_queue
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()

    def add(self, name: str, snapshot: list[calc_pb2.ToDataplane], in_sync: bool) -> Subscription:
        """Call with the graph's lock held, so no live message slips between snapshot and join."""
        sub = Subscription(name, max(self._max_queue, len(snapshot) + 1))
        sub._put_many(snapshot + ([messages.in_sync_message()] if in_sync else []))
        with self._lock:
            self._subs.add(sub)
        log.info("subscriber joined name=%s snapshot=%d in_sync=%s", name, len(snapshot), in_sync)
        return sub

    def remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.discard(sub)
                log.info("subscriber left name=%s", sub.name)

    def publish(self, msgs: list[calc_pb2.ToDataplane]) -> int:
        """Queue ``msgs`` for every subscriber; returns how many were cut off."""
        if not msgs:
            return 0
        with self._lock:
            subs = list(self._subs)
        dropped = 0
        for sub in subs:
            if not sub._put_many(msgs):
                dropped += 1
                self.remove(sub)
                log.warning("subscriber too slow, disconnecting name=%s", sub.name)
        return dropped

    def __len__(self) -> int:
        with self._lock:
            return len(self._subs)
