"""Prometheus metrics for the worker, the sink and the alert checks (all named evaluator_*).

The instruments live in their own CollectorRegistry, created on first use (`metrics()`), not at
import. Recording is a few dictionary lookups and counter increments per evaluation (label
children are cached), well inside the < 1 ms per evaluation CPU budget.
`evaluator worker --metrics-port P` and `evaluator sink --metrics-port P` serve them.

The span exporter runs inside the app, so its drops are exposed by the app: register
`ExporterStatsCollector(exporter)` on the registry the app already serves.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from evaluator.core.errors import ConfigError
from evaluator.core.records import Evaluation

log = logging.getLogger(__name__)

DEFAULT_METRICS_ADDR = "127.0.0.1"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
LAG_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)


class EvaluatorMetrics:
    """Every instrument, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.evaluations = Counter("evaluator_evaluations", "Evaluations by rubric, label and status",
                                   ["rubric", "label", "status"], registry=r)
        self.judge_latency = Histogram("evaluator_judge_latency_seconds",
                                       "Judge call latency (calls not served from cache)", ["judge"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.judge_tokens = Counter("evaluator_judge_tokens", "Judge tokens", ["judge", "direction"],
                                    registry=r)
        self.judge_cost = Counter("evaluator_judge_cost_usd", "Judge cost with a known price",
                                  ["judge"], registry=r)
        self.judge_cost_unknown = Counter("evaluator_judge_cost_unknown",
                                          "Judge calls whose cost is unknown (not counted as free)",
                                          ["judge"], registry=r)
        self.judge_retries = Counter("evaluator_judge_retries", "Judge call retries (attempts - 1)",
                                     ["judge"], registry=r)
        self.judge_cache_hits = Counter("evaluator_judge_cache_hits", "Verdicts served from cache",
                                        ["judge"], registry=r)
        self.queue_depth = Gauge("evaluator_queue_depth", "Messages waiting, read at scrape time",
                                 ["queue"], registry=r)
        self.sink_lag = Histogram("evaluator_sink_lag_seconds",
                                  "From an evaluation's created_at to its commit in DuckDB",
                                  buckets=LAG_BUCKETS, registry=r)
        self.sink_rows = Counter("evaluator_sink_rows_written", "Rows committed by the sink",
                                 ["table"], registry=r)
        self.events_emitted = Counter("evaluator_evaluation_events_emitted",
                                      "gen_ai.evaluation.result events queued for export", registry=r)
        self.events_exported = Counter("evaluator_evaluation_events_exported",
                                       "Evaluation events the OTLP endpoint accepted", registry=r)
        self.events_failed = Counter("evaluator_evaluation_events_failed",
                                     "Evaluation events whose export failed (not retried)", registry=r)
        self.events_unparented = Counter("evaluator_evaluation_events_unparented",
                                         "Evaluation events sent without a parent span (ids not OTel's)",
                                         registry=r)
        self.alert_notifications = Counter("evaluator_alert_notifications",
                                           "Alert notifications sent", ["rule", "kind"], registry=r)
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def record_evaluations(self, evaluations: Iterable[Evaluation]) -> None:
        """Counts, latency, tokens, cost, retries and cache hits of finished evaluations."""
        child = self._child
        for e in evaluations:
            child(self.evaluations, e.rubric, e.label or "", e.status).inc()
            if e.attempts == 0:
                continue  # skipped or never sent: no judge call to account for
            judge = e.judge
            if e.cached:
                child(self.judge_cache_hits, judge).inc()
                continue
            usage = e.usage
            if usage.latency_ms is not None:
                child(self.judge_latency, judge).observe(usage.latency_ms / 1000)
            if usage.input_tokens:
                child(self.judge_tokens, judge, "input").inc(usage.input_tokens)
            if usage.output_tokens:
                child(self.judge_tokens, judge, "output").inc(usage.output_tokens)
            if usage.cost_usd is None:
                child(self.judge_cost_unknown, judge).inc()
            else:
                child(self.judge_cost, judge).inc(usage.cost_usd)
            if e.attempts > 1:
                child(self.judge_retries, judge).inc(e.attempts - 1)

    def record_written(self, evaluations: Sequence[Evaluation], traces: int, dead_letters: int,
                       now: datetime | None = None) -> None:
        """Rows a sink batch committed, and how long each evaluation waited for it."""
        now = now or datetime.now(UTC)
        observe = self.sink_lag.observe
        for e in evaluations:
            observe(max(0.0, (now - e.created_at).total_seconds()))
        for table, count in (("evaluations", len(evaluations)), ("traces", traces),
                             ("dead_letters", dead_letters)):
            if count:
                self._child(self.sink_rows, table).inc(count)

    def watch_queue_depth(self, queue: str, read: Callable[[], int]) -> None:
        """Report `read()` as the queue's depth at each scrape (NaN when it cannot be read)."""

        def depth() -> float:
            try:
                return float(read())
            except Exception as exc:  # a scrape must not fail because Redis blinked
                log.debug("queue depth of %s unavailable: %r", queue, exc)
                return math.nan

        self.queue_depth.labels(queue).set_function(depth)


_lock = threading.Lock()
_instance: EvaluatorMetrics | None = None


def metrics() -> EvaluatorMetrics:
    """The process's instruments, created on first use (once, even under threads)."""
    global _instance
    if _instance is None:
        with _lock:
            if _instance is None:
                _instance = EvaluatorMetrics()
    return _instance


def start_metrics_server(port: int, addr: str = DEFAULT_METRICS_ADDR,
                         registry: CollectorRegistry | None = None) -> Any:
    """Serve /metrics on a background thread; returns the HTTP server (call .shutdown()).

    It listens on `addr` (Settings.metrics_addr, $EVALUATOR_METRICS_ADDR), 127.0.0.1 only by
    default: metrics name rubrics, judges and costs, so exposing them to the network is a choice
    (0.0.0.0)."""
    try:
        server, _thread = start_http_server(port, addr=addr, registry=registry or metrics().registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {addr}:{port} ({exc}): pick a free port with"
                          " --metrics-port") from None
    log.info("metrics on http://%s:%s/metrics", addr, server.server_port)
    return server


class ExporterStatsCollector:
    """Exposes an EvaluatorSpanExporter's counters (drops included) at scrape time, for free on
    the app's hot path: `prometheus_client.REGISTRY.register(ExporterStatsCollector(exporter))`."""

    def __init__(self, exporter: Any) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[Any]:
        stats = self._exporter.stats
        drops = CounterMetricFamily("evaluator_exporter_dropped", "Traces the exporter dropped",
                                    labels=["reason"])
        for name, value in stats.items():
            if name.startswith("dropped_"):
                drops.add_metric([name.removeprefix("dropped_")], value)
        yield drops
        spans = CounterMetricFamily("evaluator_exporter_spans_received", "Spans seen")
        spans.add_metric([], stats.get("spans_received", 0))
        yield spans
        enqueued = CounterMetricFamily("evaluator_exporter_traces_enqueued", "Traces sent to the queue")
        enqueued.add_metric([], stats.get("traces_enqueued", 0))
        yield enqueued
        buffered = GaugeMetricFamily("evaluator_exporter_buffered_spans", "Spans waiting for their trace")
        buffered.add_metric([], stats.get("buffered_spans", 0))
        yield buffered
