"""The event sequencer: turns the graph's keyed changes into the ordered stream.

Changes are buffered per category and key, so within one flush the last word wins
(an update then a remove of an unsent key is nothing; of a sent key, one remove).
A flush sends updates in dependency order (``messages.ORDER``), then InSync (once,
after the datastore reported in-sync), then removals in reverse order. Removals are
held back until InSync has gone out, so a consumer that restarted never deletes state
that the snapshot is about to re-announce.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import Any

from felix.calc import messages
from proto import calc_pb2

log = logging.getLogger(__name__)


class EventSequencer:
    def __init__(self) -> None:
        self._pending: dict[str, dict[Hashable, Any]] = {c: {} for c in messages.ORDER}
        self._sent: dict[str, dict[Hashable, Any]] = {c: {} for c in messages.ORDER}
        self._seq = 0
        self._datastore_in_sync = False
        self.in_sync_sent = False

    def on_change(self, category: str, key: Hashable, value: Any) -> None:
        """The graph's sink: ``value`` None means the key is gone."""
        if value is None and not messages.removable(category):
            log.debug("no remove message category=%s key=%s; keeping last value", category, key)
            self._pending[category].pop(key, None)
            return
        self._pending[category][key] = value

    def on_datastore_in_sync(self) -> None:
        self._datastore_in_sync = True

    def flush(self) -> list[calc_pb2.ToDataplane]:
        out: list[calc_pb2.ToDataplane] = []
        for category in messages.ORDER:
            pending, sent = self._pending[category], self._sent[category]
            for key in _sorted_keys(k for k, v in pending.items() if v is not None):
                value = pending.pop(key)
                if sent.get(key) != value:
                    sent[key] = value
                    out.append(messages.update_message(category, value, self._next()))
        if self._datastore_in_sync and not self.in_sync_sent:
            self.in_sync_sent = True
            out.append(messages.in_sync_message(self._next()))
        for category in reversed(messages.ORDER):
            pending, sent = self._pending[category], self._sent[category]
            for key in _sorted_keys(list(pending)):
                if key not in sent:
                    del pending[key]  # never sent: nothing to take back
                elif self.in_sync_sent:
                    del pending[key]
                    del sent[key]
                    out.append(messages.remove_message(category, key, self._next()))
                # else: held until InSync
        return out

    def snapshot(self) -> list[calc_pb2.ToDataplane]:
        """Everything sent and not removed, in dependency order, unnumbered.

        What a new subscriber needs before it joins the live stream.
        """
        return [
            messages.update_message(category, self._sent[category][key])
            for category in messages.ORDER
            for key in _sorted_keys(self._sent[category])
        ]

    def _next(self) -> int:
        self._seq += 1
        return self._seq


def _sorted_keys(keys: Any) -> list[Hashable]:
    return sorted(keys, key=repr)
