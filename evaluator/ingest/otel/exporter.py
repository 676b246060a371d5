"""EvaluatorSpanExporter: the app's spans in, sampled and masked work items out.

Install it on the app's TracerProvider behind a BatchSpanProcessor, so all of the work here
runs on the processor's thread, not on the app's. Per batch of ended spans:
  group by trace -> complete traces -> normalize -> sample -> mask -> enqueue in batches.
Sampling is decided before masking, so traces that will not be evaluated are never masked.
Nothing here raises into the app: failures are counted in `stats` and logged (rate-limited),
and a dead Redis only costs the traces that could not be sent.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from evaluator.core.errors import ConfigError, InvalidTraceError
from evaluator.core.records import DeadLetter, Trace
from evaluator.core.settings import Settings
from evaluator.core.stage_timing import enable as enable_stage_timings
from evaluator.core.work import WorkItem
from evaluator.ingest.otel.assembly import TraceAssembler
from evaluator.ingest.otel.conventions import is_genai_span
from evaluator.ingest.otel.delivery import (
    DeadLetterSink,
    Delivery,
    RateLimitedLog,
    RedisDelivery,
    Sink,
    SinkDelivery,
)
from evaluator.ingest.otel.logs import LogBuffer
from evaluator.ingest.otel.normalize import normalize_spans
from evaluator.ingest.otel.spans import SpanRecord, from_readable_span, spans_payload
from evaluator.pii.masking import dead_letter_masker, ingest_trace_masker
from evaluator.queue.backpressure import QueueGauge
from evaluator.sampling.policy import SamplingPolicy, decide
from evaluator.sampling.spend import RedisSpend, SpendMeter, pacer_for
from evaluator.sampling.throttle import HELD_BACK, SamplingThrottle

log = logging.getLogger(__name__)

Mask = Callable[[Trace], Trace]

STAT_NAMES = (
    "spans_received", "spans_late", "traces_completed", "traces_ignored", "traces_sampled",
    "traces_enqueued", "invalid", "dead_letters_published", "dropped_buffer_full",
    "dropped_enqueue_failed", "dropped_mask_failed", "dropped_backpressure", "traces_incomplete",
)
"""`traces_incomplete`: traces handed on with spans missing (their root or a parent never
arrived: dropped before the exporter, e.g. by a full BatchSpanProcessor queue, or still open
at the assembly timeout or at shutdown). They are still sampled and evaluated."""
DEAD_LETTER_SOURCE = "otel-exporter"
QUEUE_REFUSE_FACTOR = 2
"""`pressure` refuses new spans once the work queue holds this many times its bound: between
the bound and this, sampling less (the throttle) is the answer; past it, even the traces the
always-evaluate rules pick overflow the queue."""
BUFFER_REFUSE_FILL = 0.9
"""`pressure` refuses new spans once the assembly buffer is this full: accepting more would
drop the oldest incomplete traces."""


@dataclass(frozen=True, slots=True)
class Pressure:
    """Why new spans should wait, and for about how long (the OTLP receiver answers with it)."""

    reason: str
    retry_after_s: int
    overloaded: bool
    """True: this process's own buffer is full (HTTP 429); False: downstream is (HTTP 503)."""


def _throttle(redis_url: str, max_queue_depth: int, batch_size: int,
              clock: Callable[[], float]) -> SamplingThrottle:
    """Back-pressure on the random sampling rate."""
    try:
        gauge = QueueGauge.from_url(redis_url, max_queue_depth, clock=clock)
        return SamplingThrottle(gauge, batch_size, clock)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class EvaluatorSpanExporter(SpanExporter):
    """An OpenTelemetry SpanExporter feeding Evaluator. Give `redis_url` (service mode) or
    `sink` (a callable taking a list of WorkItems: embedded use and tests), not both. In sink
    mode, `dead_letters` (a callable taking a list of DeadLetters) keeps invalid traces; without
    it they are only counted.

    `receive` takes spans already converted to SpanRecords (the OTLP receiver's way in);
    `settle_s` holds a trace that long after its root arrived, for log records sent separately.

    Traces with no LLM-related span at all (plain HTTP or DB traces sharing the provider) are
    not ours: they are counted as `traces_ignored`, not dead-lettered.

    In service mode, while the work queue holds `max_queue_depth` messages or more (default
    settings.max_queue_depth) the random sampling rate drops and the random samples held back
    are counted as `dropped_backpressure`; always-evaluate traces still go (see
    evaluator.queue.backpressure).

    With a daily judge budget in the policy (`daily_budget_usd`), the random rates are paced
    to it from today's spend: the Redis counter the workers keep in service mode, `spend` in
    sink mode (evaluator.sampling.spend). The always-evaluate rules are never paced.

    `batch_size` sampled traces travel in one queue message. Each trace's results reach the
    sink when its last rubric is judged (evaluator.worker.early_results); small messages keep
    span end -> stored score short (5 instead of 20: p95 0.5 s lower at 70 % load,
    BENCHMARKS.md), and a worker still keeps up to threads x batch_size x rubrics calls in
    flight (32 x 5 x 4 = 640, above max_in_flight).

    `settings` (default: read from the environment once, here) gives the text limit, the PII
    masking of traces (when `mask` is not given: EVALUATOR_PII_MODE and
    EVALUATOR_PII_JUDGE_SEES, as `evaluator receive` masks) and of dead letters, and the default
    `max_queue_depth`.

    No Redis command waits longer than `timeout_s` (2 s), nor does `shutdown`: an app exits in
    about that long even when Redis hangs. Put the exporter behind
    `evaluator_span_processor(exporter)` (evaluator.ingest.otel.processor), whose queue holds a burst.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        sink: Sink | None = None,
        dead_letters: DeadLetterSink | None = None,
        judge: str = "offline",
        rubrics: Sequence[str] = (),
        policy: SamplingPolicy | None = None,
        mask: Mask | None = None,
        assembly_timeout_s: float = 30.0,
        max_buffered_spans: int = 20_000,
        max_buffered_bytes: int = 64 * 2**20,
        batch_size: int = 5,
        max_queue_depth: int | None = None,
        spend: SpendMeter | None = None,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        settings: Settings | None = None,
        settle_s: float = 0.0,
    ) -> None:
        self._delivery: Delivery
        if sink is not None and redis_url is None:
            self._delivery = SinkDelivery(sink, dead_letters)
        elif redis_url is not None and sink is None:
            self._delivery = RedisDelivery(redis_url, judge, rubrics, batch_size, clock, timeout_s)
        else:
            raise ConfigError("EvaluatorSpanExporter needs exactly one of redis_url or sink")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.settings = settings or Settings.from_env()  # the app's entry point: read once here
        if self.settings.stage_timings:
            enable_stage_timings(self.settings.stage_timings)
        self.policy = policy or SamplingPolicy()
        self.timeout_s = timeout_s
        self._mask = mask
        self._sink_mode = sink is not None
        if max_queue_depth is None:
            max_queue_depth = self.settings.max_queue_depth
        self._throttle = (None if redis_url is None
                          else _throttle(redis_url, max_queue_depth, batch_size, clock))
        if spend is None and redis_url is not None:
            spend = RedisSpend.from_url(redis_url)  # a client only: nothing connects until read
        self._pacer = pacer_for(self.policy, spend)
        try:
            self._assembler = TraceAssembler(assembly_timeout_s, max_buffered_spans,
                                             max_buffered_bytes, clock, settle_s)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._lock = threading.Lock()
        """Guards the assembler and the counters; held only for short, in-memory work."""
        self._deliver_lock = threading.Lock()
        """One delivery at a time (the processor's thread and a flush may both deliver)."""
        self._counts = dict.fromkeys(STAT_NAMES, 0)
        self._log = RateLimitedLog(log, clock=clock)
        self._closed = False
        self._logs: LogBuffer | None = None
        """GenAI log records waiting for their spans (see join_logs)."""

    def join_logs(self, logs: LogBuffer) -> None:
        """Join the log records an EvaluatorLogExporter buffers to their spans before normalizing."""
        self._logs = logs

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of the counters, plus what is buffered right now."""
        with self._lock:
            counts = dict(self._counts)
            assembly = self._assembler.counts
            counts["spans_late"] += assembly.spans_late
            counts["dropped_buffer_full"] += assembly.traces_dropped
            counts["buffered_traces"] = len(self._assembler)
            counts["buffered_spans"] = self._assembler.buffered_spans
            counts["buffered_bytes"] = self._assembler.buffered_bytes
        return counts

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._closed:
            return SpanExportResult.FAILURE
        try:
            return self.receive([from_readable_span(span) for span in spans])[0]
        except Exception as exc:  # the app must never see an exporter failure
            self._log.warning("export", "evaluator exporter lost a batch of %d spans: %r",
                              len(spans), exc)
            return SpanExportResult.FAILURE

    def receive(self, records: Sequence[SpanRecord]) -> tuple[SpanExportResult, int]:
        """Assemble these spans, then sample, mask and deliver every trace complete now (none
        given: only the traces whose wait is over). Returns the delivery's result and how many
        spans were dropped as late (their trace was already handed on)."""
        with self._lock:
            self._counts["spans_received"] += len(records)
            late = sum(not self._assembler.add(record) for record in records)
            ready = self._assembler.pop_complete()
        return self._process(ready), late

    def pressure(self) -> Pressure | None:
        """Why new spans should not be accepted now, or None: the delivery cannot reach Redis,
        the work queue holds QUEUE_REFUSE_FACTOR times its bound, or the assembly buffer is
        nearly full."""
        if not self._delivery.reachable():
            wait_s = getattr(self._delivery, "backing_off_s", 1.0)
            return Pressure("Redis is unreachable", max(1, math.ceil(wait_s)), overloaded=False)
        if self._throttle is not None:
            gauge = self._throttle.gauge
            if gauge.depth() >= QUEUE_REFUSE_FACTOR * gauge.max_depth:
                return Pressure(f"the work queue holds {gauge.depth():,} messages (bound "
                                f"{gauge.max_depth:,}): the workers are not keeping up",
                                max(1, math.ceil(gauge.refresh_s * 5)), overloaded=False)
        with self._lock:
            fill = self._assembler.fill
        if fill >= BUFFER_REFUSE_FILL:
            return Pressure(f"the trace assembly buffer is {fill:.0%} full", 1, overloaded=True)
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Send every buffered trace now, complete or not."""
        try:
            with self._lock:
                ready = self._assembler.pop_all()
            return self._process(ready) is SpanExportResult.SUCCESS
        except Exception as exc:
            self._log.warning("flush", "evaluator exporter flush failed: %r", exc)
            return False

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """Flush and close, in at most `timeout_s` (or the processor's `timeout_millis`, if
        shorter): a Redis that accepts connections and never answers must not hold up the app's
        exit. What is still unsent then is given up, and the last flush attempt runs out in a
        daemon thread."""
        if self._closed:
            return
        limit_s = self.timeout_s if timeout_millis is None else min(self.timeout_s,
                                                                    timeout_millis / 1000)
        closing = threading.Thread(target=self._flush_and_close, daemon=True,
                                   name="evaluator-exporter-shutdown")
        closing.start()
        closing.join(limit_s)
        self._closed = True
        if closing.is_alive():
            log.warning("evaluator exporter: Redis did not answer within %.1f s; shutting down "
                        "without the traces still being sent (counted as dropped_enqueue_failed "
                        "if their send fails)", limit_s)

    def _flush_and_close(self) -> None:
        self.force_flush()
        try:
            self._delivery.close()
        except Exception as exc:
            log.warning("evaluator exporter: closing the broker failed: %r", exc)

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, value in increments.items():
                self._counts[name] += value

    def _process(self, ready: list[list[SpanRecord]]) -> SpanExportResult:
        if not ready:
            return SpanExportResult.SUCCESS
        self._count(traces_incomplete=sum(map(_incomplete, ready)))
        with self._deliver_lock:
            items, dead = self._prepare(ready, self._delivery.reachable())
            delivered = self._deliver_items(items)
            if self._throttle is not None:
                self._throttle.delivered(len(items) if delivered else 0)
            kept = self._deliver_dead_letters(dead)
        return SpanExportResult.SUCCESS if delivered and kept else SpanExportResult.FAILURE

    def _prepare(self, ready: list[list[SpanRecord]],
                 reachable: bool = True) -> tuple[list[WorkItem], list[DeadLetter]]:
        """Normalize, sample, then mask only what was sampled. While Redis is unreachable the
        budget and the queue depth are not read: what is sampled cannot be sent anyway."""
        items: list[WorkItem] = []
        dead: list[DeadLetter] = []
        ignored = mask_failed = held_back = 0
        policy = self._pacer.policy(self.policy) if self._pacer and reachable else self.policy
        if self._logs is not None:
            ready = self._logs.attach_all(ready)
        for spans in ready:
            if not any(is_genai_span(span) for span in spans):
                ignored += 1
                continue
            try:
                trace = normalize_spans(spans, self.settings.max_text_chars)
            except Exception as exc:
                error = exc if isinstance(exc, InvalidTraceError) else InvalidTraceError(
                    f"invalid trace: normalization failed: {exc!r}", field="<root>")
                dead.append(DeadLetter.from_error(DEAD_LETTER_SOURCE, spans_payload(spans, values=False),
                                                  error))
                continue
            if self._throttle is None or not reachable:
                decision = decide(trace, policy)
            else:
                decision = self._throttle.decide(trace, policy)
                held_back += decision.reason == HELD_BACK
            if not decision.sampled:
                continue
            try:
                items.append(WorkItem(self._masker()(trace), decision))
            except InvalidTraceError as exc:  # an id that is not opaque
                dead.append(DeadLetter.from_error(DEAD_LETTER_SOURCE, spans_payload(spans, values=False),
                                                  exc))
            except Exception as exc:  # never send a trace that could not be masked
                mask_failed += 1
                self._log.warning("mask", "evaluator exporter dropped a trace it could not mask: %r", exc)
        self._count(traces_completed=len(ready), traces_ignored=ignored, invalid=len(dead),
                    traces_sampled=len(items) + mask_failed, dropped_mask_failed=mask_failed,
                    dropped_backpressure=held_back)
        return items, dead

    def _masker(self) -> Mask:
        if self._mask is None:
            self._mask = ingest_trace_masker(self.settings)
        return self._mask

    def _deliver_items(self, items: list[WorkItem]) -> bool:
        if not items:
            return True
        try:
            self._delivery.send(items)
        except Exception as exc:
            self._count(dropped_enqueue_failed=len(items))
            self._log.warning("enqueue", "evaluator exporter dropped %d sampled traces: %s",
                              len(items), exc)
            return False
        self._count(traces_enqueued=len(items))
        return True

    def _deliver_dead_letters(self, dead: list[DeadLetter]) -> bool:
        if not dead:
            return True
        mask = dead_letter_masker(self.settings)  # span names and attribute keys can hold PII too
        dead = [mask(d) for d in dead] if mask else dead
        first = dead[0].error
        try:
            published = self._delivery.send_dead_letters(dead)
        except Exception as exc:
            self._count(dropped_enqueue_failed=len(dead))
            self._log.warning("dead", "evaluator exporter could not keep %d invalid traces (%s); "
                              "first reason: %s", len(dead), exc, first)
            return False
        if published:
            self._count(dead_letters_published=len(dead))
        where = "" if published else " (counted only, no dead-letter store in sink mode)"
        self._log.warning("invalid", "evaluator exporter: %d trace(s) could not be normalized%s; "
                          "first reason: %s", len(dead), where, first)
        return True


def _incomplete(spans: list[SpanRecord]) -> bool:
    """No local root, or a span whose parent (in this process) never arrived."""
    ids = {span.span_id for span in spans}
    return not any(span.is_local_root for span in spans) or any(
        not span.is_local_root and span.parent_id not in ids for span in spans)
