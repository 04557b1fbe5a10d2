"""Per-process memory of allocation blocks, and a lock per block, for a long-lived IPAM user.

Why: a node's pods all allocate from the node's few blocks. When one process (the CNI
service) serves several ADDs at once, their compare-and-swaps on the same block
collide and retry (each retry a read, a backoff and a write). Taking the block's lock
for the read-modify-write turns that into a queue inside the process, and remembering
the block as this process last wrote it saves the read.

Why this is safe: every block write stays a compare-and-swap on the revision the
value came with. A remembered block that another node or process has changed since
just fails its write with ``Conflict``; the entry is then dropped and the block read
again. Plain reads that answer a caller (``ips_by_handle``) never use it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class BlockCache:
    """Block key -> (stored bytes, mod revision) as last read or written by this process."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[bytes, int]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def locked(self, bkey: str) -> Iterator[None]:
        """Hold the process-wide lock of one block (other processes still race by CAS)."""
        with self._guard:
            lock = self._locks.setdefault(bkey, threading.Lock())
        with lock:
            yield

    def get(self, bkey: str) -> tuple[bytes, int] | None:
        with self._guard:
            return self._entries.get(bkey)

    def put(self, bkey: str, value: bytes, revision: int) -> None:
        with self._guard:
            old = self._entries.get(bkey)
            if old is None or old[1] <= revision:  # never replace a newer value by an older
                self._entries[bkey] = (value, revision)

    def forget(self, bkey: str) -> None:
        with self._guard:
            self._entries.pop(bkey, None)
