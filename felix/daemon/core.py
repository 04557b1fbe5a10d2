"""Felix's engine room: syncer callbacks -> calc pipeline -> dataplane thread + subscribers.

Two threads matter. The syncer's thread runs the (pure, fast) calc pipeline under one
lock and only queues its output, so neither the kernel nor a gRPC reader can slow the
graph. The dataplane thread drains that queue into the managers (``on_update``, in
order) and calls ``apply()``; an apply that raises is logged and retried with
exponential backoff, with any newer messages folded in first. With nothing new it
still calls ``apply()`` every ``housekeeping`` seconds: managers rely on that to pick
up interfaces that appeared later and to run their periodic resync. Learned routes from the
BGP daemon go through the same queue, so managers see one thread only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from felix.calc import messages
from felix.calc.dispatcher import ParseFn, UpdateLike
from felix.calc.pipeline import RESYNC, CalcPipeline
from felix.daemon.hub import SubscriberHub, Subscription
from felix.daemon.metrics import Metrics, felix_metrics
from felix.manager import Manager
from proto import calc_pb2, felix_services_pb2

log = logging.getLogger(__name__)


_LEARNED_RESET = object()

# Builds the managers from the effective configuration (the first ConfigUpdate), the
# way Calico's Felix loads its config from the datastore before starting the dataplane.
ManagerFactory = Callable[[dict[str, str]], Sequence[Manager]]


class FelixCore:
    def __init__(
        self,
        hostname: str,
        managers: Sequence[Manager] | ManagerFactory = (),
        *,
        parse: ParseFn | None = None,
        metrics: Metrics | None = None,
        hub: SubscriberHub | None = None,
        min_backoff: float = 0.1,
        max_backoff: float = 10.0,
        housekeeping: float = 1.0,
        config_changed: Callable[[dict[str, str], dict[str, str]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hostname = hostname
        self.pipeline = CalcPipeline(hostname, parse)
        self.metrics = metrics or felix_metrics()
        self.hub = hub or SubscriberHub()
        self._factory: ManagerFactory | None = None
        self._managers: list[Manager] = []
        self._built_config: dict[str, str] | None = None
        self._prebuild: list[object] = []  # fed before the managers could be built
        # What _prebuild holds, tracked as it fills so apply() need not rescan it.
        self._prebuild_in_sync = False
        self._prebuild_config: dict[str, str] | None = None  # the latest ConfigUpdate
        if callable(managers):
            self._factory = managers
        else:
            self._managers = list(managers)
        self._min_backoff, self._max_backoff = min_backoff, max_backoff
        if housekeeping <= 0:
            raise ValueError(f"housekeeping interval must be > 0 seconds, got {housekeeping}")
        self._housekeeping = housekeeping
        # Called (built config, new config) on the dataplane thread when the effective
        # configuration differs from the one the managers were built with.
        self._config_changed = config_changed
        self._clock = clock
        self._calc_lock = threading.Lock()
        # Everything below is guarded by _cond.
        self._cond = threading.Condition()
        self._queue: list[Any] = []
        self._queued_seq = 0  # last stream sequence number queued for the dataplane
        self._applied_seq = 0  # ... and the last one the managers have applied
        self._in_sync_seq = 0
        self._wep_seq: dict[Hashable, int] = {}  # endpoint -> seq of its latest update
        self._apply_error = ""
        self._stop = False
        self._thread: threading.Thread | None = None

    # --- syncer callbacks (datastore.syncer.SyncerCallbacks) ----------------------------

    def on_updates(self, updates: list[UpdateLike]) -> None:
        self._calc(lambda: self.pipeline.on_datastore_updates(updates))

    def on_status(self, status: str) -> None:
        if status == RESYNC:
            self.metrics.inc("resyncs_total")
        self._calc(lambda: self.pipeline.on_datastore_status(status))

    def _calc(self, step: Callable[[], list[calc_pb2.ToDataplane]]) -> None:
        with self._calc_lock:
            bad_before = self.pipeline.dispatcher.bad_values
            start = self._clock()
            msgs = step()
            self.metrics.observe("calc_update_seconds", self._clock() - start)
            self.metrics.inc("datastore_bad_values_total",
                             self.pipeline.dispatcher.bad_values - bad_before)  # fmt: skip
            if not msgs:
                return
            self.metrics.inc("messages_emitted_total", len(msgs))
            with self._cond:
                for m in msgs:
                    field = m.WhichOneof("payload")
                    if field == "workload_endpoint_update":
                        self._wep_seq[messages.wep_key(m.workload_endpoint_update.id)] = (
                            m.sequence_number
                        )
                    elif field == "workload_endpoint_remove":
                        self._wep_seq.pop(messages.wep_key(m.workload_endpoint_remove.id), None)
                    elif field == "in_sync":
                        self._in_sync_seq = m.sequence_number
                        self.metrics.set("in_sync", 1)
                self._queue.extend(msgs)
                self._queued_seq = msgs[-1].sequence_number
                self._cond.notify_all()
            dropped = self.hub.publish(msgs)
            if dropped:
                self.metrics.inc("subscribers_dropped_total", dropped)

    # --- subscribers and learned routes ------------------------------------------------

    def subscribe(self, name: str) -> Subscription:
        with self._calc_lock:
            seq = self.pipeline.sequencer
            sub = self.hub.add(name, seq.snapshot(), seq.in_sync_sent)
        self.metrics.set("subscribers", len(self.hub))
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.hub.remove(sub)
        self.metrics.set("subscribers", len(self.hub))

    def learned_reset(self) -> None:
        """A new Push stream began: the BGP daemon will re-send its table."""
        self._enqueue(_LEARNED_RESET)

    def learned(self, msg: felix_services_pb2.LearnedRouteMessage) -> None:
        self.metrics.inc("learned_route_messages_total")
        self._enqueue(msg)

    def _enqueue(self, item: object) -> None:
        with self._cond:
            self._queue.append(item)
            self._cond.notify_all()

    # --- readiness ----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """InSync sent and everything up to it applied by the managers."""
        with self._cond:
            return bool(self._in_sync_seq) and self._applied_seq >= self._in_sync_seq

    def wait_endpoint_ready(self, key: Hashable, timeout: float) -> tuple[bool, str]:
        def done() -> bool:
            seq = self._wep_seq.get(key)
            return seq is not None and self._applied_seq >= seq

        with self._cond:
            if self._cond.wait_for(done, timeout):
                return True, ""
            if key not in self._wep_seq:
                return False, (
                    f"endpoint {'/'.join(key)} (orchestrator/workload/endpoint) is not known "  # type: ignore[arg-type]
                    f"on node {self.hostname}: no WorkloadEndpoint for it in the datastore yet"
                )
            why = f"; last apply error: {self._apply_error}" if self._apply_error else ""
            return False, f"endpoint known but its routes are not programmed yet{why}"

    # --- dataplane thread ---------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._dataplane_loop, name="dataplane", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _dataplane_loop(self) -> None:
        backoff = 0.0
        pending_apply = False
        last_apply = self._clock()
        while True:
            with self._cond:
                if not pending_apply:  # a failed apply retries at once (it already backed off)
                    wait = max(0.0, last_apply + self._housekeeping - self._clock())
                    self._cond.wait_for(lambda: self._stop or bool(self._queue), timeout=wait)
                if self._stop:
                    return
                items, self._queue = self._queue, []
                target = self._queued_seq
            for item in items:
                self._feed(item)
            # Housekeeping: nothing new, but a pending interface or the periodic
            # resync only gets its chance when apply() runs.
            pending_apply = pending_apply or bool(items)
            if not pending_apply and self._clock() - last_apply >= self._housekeeping:
                if self._managers:
                    pending_apply = True
                else:
                    last_apply = self._clock()  # nothing to keep: just wait another round
            if not pending_apply:
                continue
            last_apply = self._clock()
            start = self._clock()
            try:
                self._ensure_built()
                for mgr in self._managers:
                    mgr.apply()
            except Exception as exc:
                self.metrics.inc("apply_failures_total")
                backoff = min(self._max_backoff, max(self._min_backoff, backoff * 2))
                log.exception("dataplane apply failed; retrying retry_in_s=%.2f", backoff)
                with self._cond:
                    self._apply_error = f"{type(exc).__name__}: {exc}"
                    self._cond.wait_for(lambda: self._stop, timeout=backoff)
                continue
            self.metrics.observe("apply_seconds", self._clock() - start)
            self.metrics.set(
                "routes_programmed",
                sum(getattr(m, "routes_programmed", 0) for m in self._managers),
            )
            backoff, pending_apply = 0.0, False
            with self._cond:
                self._applied_seq = max(self._applied_seq, target)
                self._apply_error = ""
                self._cond.notify_all()

    @property
    def _learners(self) -> list[Manager]:
        return [m for m in self._managers if hasattr(m, "on_learned")]

    def _ensure_built(self) -> None:
        """Build the managers once the configuration is final; replay what they missed.

        Final means the datastore snapshot is complete (InSync seen): a ConfigUpdate
        from a partial snapshot still has defaults where FelixConfiguration or the
        pools say otherwise (vxlanEnabled, routeRefreshInterval), and a build is
        once per process. Raises like ``apply()`` does (and is retried the same way)
        if the factory fails.
        """
        if self._factory is None or self._built_config is not None:
            return
        config = self._prebuild_config
        if not self._prebuild_in_sync or config is None:
            return
        self._managers = list(self._factory(config))
        self._built_config = config
        log.info("dataplane managers built managers=%s",
                 ",".join(type(m).__name__ for m in self._managers))  # fmt: skip
        replay, self._prebuild = self._prebuild, []
        for item in replay:
            self._feed(item, replay=True)

    def _feed(self, item: object, replay: bool = False) -> None:
        if self._factory is not None and self._built_config is None:
            self._prebuild.append(item)
            if isinstance(item, calc_pb2.ToDataplane):
                if item.HasField("in_sync"):
                    self._prebuild_in_sync = True
                elif item.HasField("config_update"):
                    self._prebuild_config = dict(item.config_update.config)
            return
        if (
            not replay
            and self._built_config is not None
            and isinstance(item, calc_pb2.ToDataplane)
            and item.HasField("config_update")
        ):
            config = dict(item.config_update.config)
            changed = sorted(k for k in config if config[k] != self._built_config.get(k))
            if changed and self._config_changed is not None:
                try:
                    self._config_changed(self._built_config, config)
                except Exception:
                    log.exception("config change handler failed fields=%s", ",".join(changed))
            elif changed:
                log.warning("felix configuration changed; restart tabby-felix to apply "
                            "fields=%s", ",".join(changed))  # fmt: skip
        if item is _LEARNED_RESET:
            targets = [(m, "on_learned_reset") for m in self._learners]
            args: tuple[object, ...] = ()
            what = "learned_reset"
        elif isinstance(item, felix_services_pb2.LearnedRouteMessage):
            targets = [(m, "on_learned") for m in self._learners]
            args, what = (item,), f"learned.{item.WhichOneof('payload')}"
        else:
            targets = [(m, "on_update") for m in self._managers]
            args, what = (item,), str(item.WhichOneof("payload"))  # type: ignore[attr-defined]
        # Each manager on its own: one that rejects a message must not keep it from the
        # managers after it (a route must still reach the route manager).
        for m, method in targets:
            fn = getattr(m, method, None)
            if fn is None:
                continue
            try:
                fn(*args)
            except Exception:
                log.exception(
                    "dataplane manager rejected a message; continuing manager=%s message=%s",
                    type(m).__name__,
                    what,
                )
