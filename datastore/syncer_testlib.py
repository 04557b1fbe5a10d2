"""A syncer consumer for tests that checks what a real consumer relies on.

It keeps the view the updates build and records every contract breach it sees (a
delete for a key it does not have, a revision going backwards for a key) instead of
failing inside the syncer's thread, so a test can assert on both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from datastore.syncer import Update


class RecordingConsumer:
    def __init__(self) -> None:
        self.cv = threading.Condition()
        self.statuses: list[str] = []
        self.updates: list[Update] = []
        self.view: dict[str, bytes] = {}
        self.revisions: dict[str, int] = {}
        self.problems: list[str] = []

    def on_updates(self, updates: list[Update]) -> None:
        with self.cv:
            for u in updates:
                if u.revision < self.revisions.get(u.key, 0):
                    self.problems.append(f"{u.key}: revision {u.revision} went backwards")
                if u.value is None:
                    if u.key not in self.view:
                        self.problems.append(f"{u.key}: delete for a key the consumer lacks")
                    self.view.pop(u.key, None)
                else:
                    self.view[u.key] = u.value
                self.revisions[u.key] = u.revision
                self.updates.append(u)
            self.cv.notify_all()

    def on_status(self, status: str) -> None:
        with self.cv:
            self.statuses.append(status)
            self.cv.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        with self.cv:
            return self.cv.wait_for(predicate, timeout)

    def wait_view(self, expected: dict[str, bytes], timeout: float = 10.0) -> dict[str, bytes]:
        self.wait(lambda: self.view == expected, timeout)
        with self.cv:
            return dict(self.view)
