"""A few Prometheus metrics in the text exposition format, without a client library.

Only what Felix reports: counters, gauges and summaries (``_sum``/``_count``).
"""

from __future__ import annotations

import threading


class Metrics:
    def __init__(self, prefix: str = "tabby_felix_") -> None:
        self._prefix = prefix
        self._lock = threading.Lock()
        self._help: dict[str, tuple[str, str]] = {}  # name -> (type, help)
        self._values: dict[str, float] = {}

    def _declare(self, name: str, kind: str, text: str) -> str:
        full = self._prefix + name
        with self._lock:
            if full not in self._help:
                self._help[full] = (kind, text)
                if kind == "summary":
                    self._values[full + "_sum"] = 0.0
                    self._values[full + "_count"] = 0.0
                else:
                    self._values[full] = 0.0
        return full

    def counter(self, name: str, text: str) -> None:
        self._declare(name, "counter", text)

    def gauge(self, name: str, text: str) -> None:
        self._declare(name, "gauge", text)

    def summary(self, name: str, text: str) -> None:
        self._declare(name, "summary", text)

    def inc(self, name: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[self._prefix + name] += amount

    def set(self, name: str, value: float) -> None:
        with self._lock:
            self._values[self._prefix + name] = value

    def observe(self, name: str, value: float) -> None:
        full = self._prefix + name
        with self._lock:
            self._values[full + "_sum"] += value
            self._values[full + "_count"] += 1

    def get(self, name: str) -> float:
        with self._lock:
            return self._values[self._prefix + name]

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for full, (kind, text) in sorted(self._help.items()):
                lines.append(f"# HELP {full} {text}")
                lines.append(f"# TYPE {full} {kind}")
                names = [full + "_sum", full + "_count"] if kind == "summary" else [full]
                lines.extend(f"{n} {self._values[n]:g}" for n in names)
        return "\n".join(lines) + "\n"


def felix_metrics() -> Metrics:
    m = Metrics()
    m.summary("calc_update_seconds", "Time the calculation graph took per datastore batch.")
    m.counter("messages_emitted_total", "Messages the event sequencer emitted.")
    m.counter("datastore_bad_values_total", "Datastore values ignored because they did not parse.")
    m.counter("resyncs_total", "Datastore resyncs (full re-lists) seen by the syncer.")
    m.summary("apply_seconds", "Time the dataplane managers took per successful apply.")
    m.counter("apply_failures_total", "Dataplane applies that raised and were retried.")
    m.gauge("routes_programmed", "Routes of Felix's protocol in the kernel after the last apply.")
    m.gauge("in_sync", "1 once the stream has sent InSync.")
    m.gauge("subscribers", "Connected CalcGraph.Subscribe streams.")
    m.counter("subscribers_dropped_total", "Subscribers disconnected for falling behind.")
    m.counter("learned_route_messages_total", "LearnedRoutes.Push messages received.")
    return m
