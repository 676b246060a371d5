"""Reading trace files and sending sampled traces to the queue (service mode)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evaluator.errors import ConfigError, InvalidTraceError
from evaluator.masking import Masker, ingest_masker, payload_masker
from evaluator.pipeline import WorkItem
from evaluator.records import DeadLetter, Trace, parse_trace
from evaluator.sampling import SamplingPolicy, decide
from evaluator.rubrics import RubricRegistry
from evaluator.sampling_config import check_rubric_names, sampling_policy
from evaluator.settings import Settings
from evaluator.spend import BudgetPacer, RedisSpend, SpendMeter, pacer_for


@dataclass
class CollectedWork:
    """Sampled work items and dead letters from one trace source, with counts."""

    items: list[WorkItem] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    traces_read: int = 0
    sample_reasons: Counter = field(default_factory=Counter)
    pacer: BudgetPacer | None = None
    """The daily budget's pacing of the random rate, when the policy has a budget."""

    def add(self, record: Trace | DeadLetter, policy: SamplingPolicy,
            mask: Masker | None = None) -> None:
        """Sample first, then mask: only sampled traces pay for masking."""
        self.traces_read += 1
        if isinstance(record, DeadLetter):
            self.dead_letters.append(record)
            return
        decision = decide(record, self.pacer.policy(policy) if self.pacer else policy)
        if decision.sampled:
            self.items.append(WorkItem(mask(record) if mask else record, decision))
            self.sample_reasons[decision.reason] += 1


def read_jsonl_traces(path: Path) -> Iterator[Trace | DeadLetter]:
    """Each line becomes a Trace, or a DeadLetter naming the file, line and field (a line that is
    not valid UTF-8 too: its text is never silently altered)."""
    if not path.is_file():
        raise ConfigError(f"trace file {path} not found")
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                record: Trace | DeadLetter = parse_trace(_utf8(raw))
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


def collect_work(path: Path, policy: SamplingPolicy, fmt: str = "jsonl",
                 spend: SpendMeter | None = None) -> CollectedWork:
    """Read, validate and sample a trace file (`jsonl` or `otlp-json`). With a daily budget in
    the policy, `spend` says how much of it is gone today (see evaluator.spend)."""
    from evaluator.otel.otlp_json import read_traces

    mask, mask_payload = ingest_masker(), payload_masker()
    work = CollectedWork(pacer=pacer_for(policy, spend))
    for record in read_traces(Path(path), fmt):
        if mask_payload and isinstance(record, DeadLetter):
            record = record.model_copy(update={"payload": mask_payload(record.payload)})
        work.add(record, policy, mask)
    return work


def ingest_to_queue(path: Path, settings: Settings, judge: str, sample_rate: float,
                    rubrics: Sequence[str] = (), batch_size: int = 20,
                    fmt: str = "jsonl") -> tuple[CollectedWork, int]:
    """Service mode: sampled traces go to Redis for `evaluator worker`; dead letters go to the
    results channel so `evaluator sink` stores them. Returns the work and messages sent.

    While the work queue is full (settings.max_queue_depth), this waits for the workers, and
    raises QueueFullError after settings.queue_wait_s."""
    from evaluator.worker.backpressure import QueueGauge
    from evaluator.worker.broker import build_producer_broker, redis_client
    from evaluator.worker.channel import RedisStreamChannel
    from evaluator.worker.messages import ResultBatch
    from evaluator.worker.persistence import warn_if_not_persistent
    from evaluator.worker.service import enqueue, require_redis

    url = require_redis(settings)
    policy = sampling_policy(sample_rate)
    if policy.named_rubrics:
        check_rubric_names(policy, RubricRegistry.load(settings.rubrics_dir).criteria())
    work = collect_work(path, policy, fmt, RedisSpend.from_url(url))
    broker = build_producer_broker(url)
    warn_if_not_persistent(broker.client, "ingest")
    try:
        if work.dead_letters:
            RedisStreamChannel(redis_client(url)).publish(ResultBatch(dead_letters=work.dead_letters))
        gauge = QueueGauge(broker.client, settings.max_queue_depth)
        sent = enqueue(broker, work.items, judge, rubrics, batch_size=batch_size,
                       before_each=lambda: gauge.reserve(settings.queue_wait_s))
    finally:
        broker.close()
    return work, sent
