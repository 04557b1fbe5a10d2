"""The key-value contract every datastore backend meets (etcd v3, in-memory).

Everything above this line (resources, IPAM, the syncer) is written against
``KVStore``; nothing above it knows which backend is underneath. Writes are
compare-and-swap on ``mod_revision`` so two writers never lose each other's change.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


class DatastoreError(Exception):
    """Base of every datastore failure; ``str()`` is a one-line operator message."""


class NotFound(DatastoreError):
    pass


class AlreadyExists(DatastoreError):
    pass


class Conflict(DatastoreError):
    """A compare-and-swap lost: the key changed since the caller read it. Re-read and retry."""


class Unavailable(DatastoreError):
    """The store could not be reached within the client's timeout."""


class Compacted(DatastoreError):
    """A watch asked for a revision the store has already compacted away."""

    def __init__(self, message: str, compact_revision: int = 0) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0


PUT = "PUT"
DELETE = "DELETE"


@dataclass(frozen=True)
class WatchEvent:
    type: str  # PUT or DELETE
    key: str
    value: bytes | None  # None for DELETE
    mod_revision: int


class Watch(Protocol):
    """An open watch. Iterating yields batches of events in revision order.

    Raises ``Compacted`` if the start revision is gone, ``Unavailable`` if the
    connection drops (the caller resumes from the last revision it saw + 1).
    """

    def __iter__(self) -> Iterator[list[WatchEvent]]: ...

    def cancel(self) -> None: ...


class KVStore(Protocol):
    def get(self, key: str) -> KeyValue | None: ...

    def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix`` sorted by key, and the store revision of the read."""
        ...

    def create(self, key: str, value: bytes) -> int:
        """Write a new key; ``AlreadyExists`` if present. Returns the new mod_revision."""
        ...

    def update(self, key: str, value: bytes, expected_revision: int) -> int:
        """Write if the key's mod_revision is still ``expected_revision``.

        ``NotFound`` if the key is gone, ``Conflict`` if it changed.
        """
        ...

    def delete(self, key: str, expected_revision: int | None = None) -> int:
        """Delete (only if unchanged when ``expected_revision`` is given).

        ``NotFound`` if absent, ``Conflict`` if it changed. Returns the store revision.
        """
        ...

    def watch(self, prefix: str, start_revision: int) -> Watch: ...

    def compact(self, revision: int) -> None: ...

    def close(self) -> None: ...
