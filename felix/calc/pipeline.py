"""Dispatcher -> graph -> sequencer for one node, behind the syncer's two callbacks.

Pure: each call returns the messages to fan out; the daemon does the I/O. The
statuses are the syncer's own (``datastore.syncer``), re-exported for the daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from datastore.syncer import IN_SYNC, RESYNC, WAIT_FOR_READY
from felix.calc.dispatcher import Dispatcher, ParseFn, UpdateLike
from felix.calc.graph import CalcGraph
from felix.calc.sequencer import EventSequencer
from proto import calc_pb2

log = logging.getLogger(__name__)

__all__ = ["IN_SYNC", "RESYNC", "WAIT_FOR_READY", "CalcPipeline"]


class CalcPipeline:
    def __init__(self, hostname: str, parse: ParseFn | None = None) -> None:
        self.hostname = hostname
        self.sequencer = EventSequencer()
        self.graph = CalcGraph(hostname, self.sequencer.on_change)
        self.dispatcher = Dispatcher(self.graph, parse)

    def on_datastore_updates(self, updates: Iterable[UpdateLike]) -> list[calc_pb2.ToDataplane]:
        self.dispatcher.dispatch(updates)
        self.graph.recompute()
        return self.sequencer.flush()

    def on_datastore_status(self, status: str) -> list[calc_pb2.ToDataplane]:
        log.info("datastore status node=%s status=%s", self.hostname, status)
        if status == IN_SYNC:
            self.sequencer.on_datastore_in_sync()
        self.graph.recompute()
        return self.sequencer.flush()
