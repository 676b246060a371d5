"""Reading trace files and handing their work on in bounded chunks (embedded and service mode).

A file is streamed, never held: each record is checked for a reused trace_id, sampled, masked
and handed on in chunks (work items `batch_size` at a time, dead letters at most
DEAD_LETTER_CHUNK at a time and DEAD_LETTER_CHUNK_CHARS of payload), so memory follows the
chunk sizes, not the file. The reused-id check keeps every trace id of the file, but past its
latest few thousand on disk (evaluator.ingest.seen_ids): its memory stays flat too.
"""

from __future__ import annotations

import codecs
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from evaluator.core.errors import ConfigError, InvalidTraceError
from evaluator.core.records import MAX_TEXT_CHARS, DeadLetter, Trace, parse_trace
from evaluator.core.settings import DEFAULTS, Settings
from evaluator.core.work import WorkItem
from evaluator.ingest.seen_ids import SeenIds, content_digest
from evaluator.pii.masking import dead_letter_masker, identifier_check, ingest_masker
from evaluator.sampling.policy import SamplingPolicy, decide
from evaluator.sampling.spend import BudgetPacer, SpendMeter, pacer_for

TraceFormat = Literal["jsonl", "otlp-json"]

DEAD_LETTER_CHUNK = 500
"""Dead letters handed on together (one results-channel entry, one sink row batch at most)."""
DEAD_LETTER_CHUNK_CHARS = 2_000_000
"""Payload characters of one chunk of dead letters: a chunk closes at whichever bound comes first."""
REUSED_ID = "same trace_id, different content"
MAX_REASON_KEYS = 1_000
"""Distinct dead-letter reasons a source counts; past that, new ones count as UNCOUNTED_REASONS."""
UNCOUNTED_REASONS = "(reasons past the first 1,000 distinct ones)"

ItemsOut = Callable[[list[WorkItem]], None]
DeadLettersOut = Callable[[list[DeadLetter]], None]


@dataclass
class WorkCounts:
    """What one trace source gave: records read, dead letters, sampled traces."""

    traces_read: int = 0
    invalid: int = 0
    """Dead letters, the reused ids below included."""
    reused_ids: int = 0
    """Traces whose trace_id an earlier trace of the source had, with different content."""
    sampled: int = 0
    sample_reasons: Counter = field(default_factory=Counter)
    pacer: BudgetPacer | None = None
    """The daily budget's pacing of the random rate, when the policy has a budget."""
    dead_letter_reasons: Counter = field(default_factory=Counter)
    """Dead letters per reason (masked, as stored)."""

    @property
    def valid(self) -> int:
        return self.traces_read - self.invalid


class WorkStream:
    """Records in, chunks out: `items_out` gets sampled, masked work items `batch_size` at a
    time; `dead_letters_out` gets masked dead letters in bounded chunks. Call `finish` at the
    end, `close` in any case (it drops the reused-id check's scratch database)."""

    def __init__(self, policy: SamplingPolicy, items_out: ItemsOut, dead_letters_out: DeadLettersOut,
                 batch_size: int = 20, pacer: BudgetPacer | None = None,
                 settings: Settings = DEFAULTS) -> None:
        self.counts = WorkCounts(pacer=pacer)
        self._policy = policy
        self._items_out, self._dead_letters_out = items_out, dead_letters_out
        self._batch_size = batch_size
        self._check_ids, self._mask, self._mask_dead = (identifier_check(settings), ingest_masker(settings),
                                                        dead_letter_masker(settings))
        self._seen = SeenIds()
        self._items: list[WorkItem] = []
        self._dead: list[DeadLetter] = []
        self._dead_chars = 0

    def add(self, record: Trace | DeadLetter, source: str) -> None:
        """Sample first, then mask: only sampled traces pay for masking. `source` names the
        record in the dead letter a valid trace can still become (a reused or unsafe id)."""
        self.counts.traces_read += 1
        if isinstance(record, Trace):
            try:
                self._sample(record)
                return
            except InvalidTraceError as exc:
                record = DeadLetter.from_error(source, record.model_dump(mode="json"), exc)
        self._dead_letter(record)

    def _sample(self, trace: Trace) -> None:
        self._check_reuse(trace)
        decision = decide(trace, self.counts.pacer.policy(self._policy) if self.counts.pacer
                          else self._policy)
        if not decision.sampled:
            return
        if self._check_ids is not None:
            self._check_ids(trace)
        self._items.append(WorkItem(self._mask(trace) if self._mask else trace, decision))
        self.counts.sampled += 1
        self.counts.sample_reasons[decision.reason] += 1
        if len(self._items) >= self._batch_size:
            self._flush_items()

    def _check_reuse(self, trace: Trace) -> None:
        """The first trace with an id wins; a later one with other content is a dead letter (a
        repeat of the very same trace passes: judging it again is idempotent)."""
        digest = content_digest(trace.model_dump_json())
        if self._seen.first(trace.trace_id, digest) != digest:
            self.counts.reused_ids += 1
            raise InvalidTraceError(f"invalid trace: field 'trace_id': {REUSED_ID} as an earlier "
                                    "trace of this source; the first one is kept", field="trace_id")

    def _dead_letter(self, dead: DeadLetter) -> None:
        self.counts.invalid += 1
        dead = self._mask_dead(dead) if self._mask_dead else dead
        reasons = self.counts.dead_letter_reasons
        reasons[dead.error if dead.error in reasons or len(reasons) < MAX_REASON_KEYS
                else UNCOUNTED_REASONS] += 1
        self._dead.append(dead)
        self._dead_chars += len(dead.payload)
        if len(self._dead) >= DEAD_LETTER_CHUNK or self._dead_chars >= DEAD_LETTER_CHUNK_CHARS:
            self._flush_dead_letters()

    def _flush_items(self) -> None:
        if self._items:
            items, self._items = self._items, []
            self._items_out(items)

    def _flush_dead_letters(self) -> None:
        if self._dead:
            dead, self._dead, self._dead_chars = self._dead, [], 0
            self._dead_letters_out(dead)

    def finish(self) -> WorkCounts:
        self._flush_items()
        self._flush_dead_letters()
        return self.counts

    def close(self) -> None:
        self._seen.close()


def read_one_trace(path: Path, line: int = 1, max_text_chars: int = MAX_TEXT_CHARS) -> Trace:
    """One trace: a JSON file holding one, or the `line`-th non-blank line (from 1) of a
    `.jsonl` file. ConfigError for a file that is not UTF-8 or has no such line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (bad byte at offset {exc.start}): save it "
                          "as UTF-8") from None
    if path.suffix == ".jsonl":
        lines = [row for row in text.splitlines() if row.strip()]
        if not 1 <= line <= len(lines):
            raise ConfigError(f"{path} has {len(lines)} non-blank lines, not a line {line}: "
                              f"pick --line from 1 to {len(lines)}")
        text = lines[line - 1]
    return parse_trace(text, max_text_chars)


def read_jsonl_traces(path: Path, max_text_chars: int = MAX_TEXT_CHARS) -> Iterator[Trace | DeadLetter]:
    """Each line becomes a Trace, or a DeadLetter naming the file, line and field (a line that is
    not valid UTF-8 too: its text is never silently altered). `path` may be a named pipe
    (mkfifo): a producer streams traces in without a file on disk."""
    if not (path.is_file() or path.is_fifo()):
        raise ConfigError(f"trace file {path} not found")
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if number == 1:  # a byte order mark (Windows tools write one) is not the line's text
                raw = raw.removeprefix(codecs.BOM_UTF8)
            if not raw.strip():
                continue
            try:
                record: Trace | DeadLetter = parse_trace(_utf8(raw), max_text_chars)
            except InvalidTraceError as exc:
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                record = DeadLetter.from_error(f"{path}:{number}", text, exc)
            yield record


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidTraceError(f"invalid trace: the line is not valid UTF-8 ({exc.reason} at byte "
                                f"{exc.start})", field="<root>") from None


def read_traces(path: Path, fmt: TraceFormat = "jsonl",
                max_text_chars: int = MAX_TEXT_CHARS) -> Iterator[Trace | DeadLetter]:
    """Traces from a file in either format: our JSONL (one Trace a line) or OTLP/JSON; text
    fields past `max_text_chars` (Settings.max_text_chars) are cut and marked."""
    if Path(path).is_dir():
        raise ConfigError(f"trace file {path} is a directory: give the file of traces in it")
    if fmt == "otlp-json":
        from evaluator.ingest.otel.otlp_json import read_otlp_json_traces  # lazy: protobuf and OTel take 0.35 s

        return read_otlp_json_traces(Path(path), max_text_chars)
    if fmt == "jsonl":
        return read_jsonl_traces(Path(path), max_text_chars)
    raise ConfigError(f"unknown trace format {fmt!r}: use 'jsonl' or 'otlp-json'")


def stream_work(path: Path, policy: SamplingPolicy, items_out: ItemsOut,
                dead_letters_out: DeadLettersOut, fmt: TraceFormat = "jsonl",
                spend: SpendMeter | None = None, batch_size: int = 20,
                settings: Settings = DEFAULTS,
                on_record: Callable[[WorkCounts], None] | None = None) -> WorkCounts:
    """Read, validate, sample and mask a trace file (`jsonl` or `otlp-json`), handing the work
    on in chunks as it goes (see WorkStream). With a daily budget in the policy, `spend` says
    how much of it is gone today (see evaluator.sampling.spend). `settings` gives the text limit
    and the PII masking. `on_record` sees the counts so far after each record."""
    stream = WorkStream(policy, items_out, dead_letters_out, batch_size, pacer_for(policy, spend),
                        settings)
    try:
        for number, record in enumerate(read_traces(Path(path), fmt, settings.max_text_chars), start=1):
            stream.add(record, f"{path} (record {number})")
            if on_record is not None:
                on_record(stream.counts)
        return stream.finish()
    finally:
        stream.close()


@dataclass
class CollectedWork(WorkCounts):
    """Every work item and dead letter of a source, in memory: for small files and tests."""

    items: list[WorkItem] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def collect_work(path: Path, policy: SamplingPolicy, fmt: TraceFormat = "jsonl",
                 spend: SpendMeter | None = None, settings: Settings = DEFAULTS) -> CollectedWork:
    """stream_work into lists."""
    items: list[WorkItem] = []
    dead: list[DeadLetter] = []
    counts = stream_work(path, policy, items.extend, dead.extend, fmt, spend, settings=settings)
    return CollectedWork(**vars(counts), items=items, dead_letters=dead)
