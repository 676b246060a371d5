"""Grouping spans into traces until each is complete, in bounded memory.

The exporter sees spans one batch at a time, in the order they ended. A trace is complete
when its local root span has ended (children end before their parent), or when its first
span has waited longer than the assembly timeout (the root never ended or lives elsewhere).
With `settle_s`, a trace whose root has arrived is still held that long, so records that travel
separately (OTLP log records reaching the receiver in their own requests) can join it.
Memory is bounded in spans and in bytes: past either bound the oldest incomplete traces are
dropped. Not thread-safe on its own: the exporter serializes access.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from evaluator.ingest.otel.spans import SpanRecord

CLOSED_IDS_REMEMBERED = 20_000
"""How many completed or dropped trace ids are remembered, so that a span arriving after its
trace was handed on is dropped as late instead of starting a partial copy of the trace."""


@dataclass
class _PendingTrace:
    first_seen: float
    spans: list[SpanRecord] = field(default_factory=list)
    size_bytes: int = 0


@dataclass
class AssemblyCounts:
    traces_dropped: int = 0
    spans_dropped: int = 0
    spans_late: int = 0


class TraceAssembler:
    def __init__(self, timeout_s: float, max_spans: int, max_bytes: int,
                 clock: Callable[[], float] = time.monotonic, settle_s: float = 0.0) -> None:
        if timeout_s <= 0 or max_spans < 1 or max_bytes < 1 or settle_s < 0:
            raise ValueError("assembly timeout and buffer bounds must be positive")
        self.settle_s = settle_s
        self.timeout_s = timeout_s
        self.max_spans = max_spans
        self.max_bytes = max_bytes
        self._clock = clock
        self._pending: OrderedDict[str, _PendingTrace] = OrderedDict()
        self._rooted: dict[str, float] = {}
        """Traces whose root has arrived, and when it did."""
        self._closed: OrderedDict[str, None] = OrderedDict()
        self.buffered_spans = 0
        self.buffered_bytes = 0
        self.counts = AssemblyCounts()

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def fill(self) -> float:
        """How full the buffer is, 0 to 1, by whichever bound is nearer."""
        return max(self.buffered_spans / self.max_spans, self.buffered_bytes / self.max_bytes)

    def add(self, span: SpanRecord) -> bool:
        """Buffer one span; False when it came late (its trace was already handed on) and was dropped."""
        if span.trace_id in self._closed:
            self.counts.spans_late += 1
            return False
        pending = self._pending.get(span.trace_id)
        if pending is None:
            pending = self._pending[span.trace_id] = _PendingTrace(self._clock())
        pending.spans.append(span)
        pending.size_bytes += span.size_bytes
        self.buffered_spans += 1
        self.buffered_bytes += span.size_bytes
        if span.is_local_root:
            self._rooted.setdefault(span.trace_id, self._clock())
        self._enforce_bounds()
        return True

    def pop_complete(self) -> list[list[SpanRecord]]:
        """Traces whose root has ended (`settle_s` ago), then traces that waited past the timeout."""
        now = self._clock()
        complete = [self._close(trace_id) for trace_id, rooted_at in list(self._rooted.items())
                    if rooted_at <= now - self.settle_s]
        deadline = now - self.timeout_s
        while self._pending:
            trace_id, pending = next(iter(self._pending.items()))
            if pending.first_seen > deadline:
                break
            complete.append(self._close(trace_id))
        return complete

    def pop_all(self) -> list[list[SpanRecord]]:
        """Every buffered trace, complete or not (flush and shutdown)."""
        return [self._close(trace_id) for trace_id in list(self._pending)]

    def _close(self, trace_id: str) -> list[SpanRecord]:
        pending = self._pending.pop(trace_id)
        self._rooted.pop(trace_id, None)
        self.buffered_spans -= len(pending.spans)
        self.buffered_bytes -= pending.size_bytes
        self._closed[trace_id] = None
        if len(self._closed) > CLOSED_IDS_REMEMBERED:
            self._closed.popitem(last=False)
        return pending.spans

    def _enforce_bounds(self) -> None:
        """Drop the oldest incomplete traces until both bounds hold again."""
        while self.buffered_spans > self.max_spans or self.buffered_bytes > self.max_bytes:
            victim = next((tid for tid in self._pending if tid not in self._rooted), None)
            if victim is None:
                victim = next(iter(self._pending))
            spans = self._close(victim)
            self.counts.traces_dropped += 1
            self.counts.spans_dropped += len(spans)
