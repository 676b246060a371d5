"""`evaluator receive`: the OTLP/HTTP receiver wired to Redis (service mode) or, with
`embedded`, to an in-process pipeline writing DuckDB (one machine, no Redis)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from evaluator.core.settings import Settings
from evaluator.ingest.otel.exporter import EvaluatorSpanExporter, Pressure
from evaluator.ingest.otel.logs import LogBuffer
from evaluator.ingest.otel.receiver import OtlpReceiver, RunningReceiver
from evaluator.judges.config import load_judge_config
from evaluator.pii.masking import ingest_trace_masker
from evaluator.rubrics import RubricRegistry
from evaluator.sampling.config import check_rubric_names, sampling_policy
from evaluator.store.ledger_spend import LedgerSpend
from evaluator.worker.embedded import EmbeddedPipeline
from evaluator.worker.service import require_redis

log = logging.getLogger(__name__)

LOG_RECORDS_BUFFERED = 200_000
"""GenAI log records waiting for their spans (each lives at most LOG_RECORD_MAX_AGE_S)."""
LOG_RECORD_MAX_AGE_S = 120.0
"""Above the exporter's 30 s assembly timeout, so a record outlives its trace's assembly."""


class ReceiverService:
    """The running receiver: `port` it listens on; `stop()` closes it, hands every buffered
    trace on and, in embedded mode, waits until they are judged and stored."""

    def __init__(self, settings: Settings, *, host: str, port: int, judge: str,
                 sample_rate: float, rubrics: Sequence[str] = (), embedded: bool = False,
                 db_path: Path | None = None) -> None:
        registry = RubricRegistry.load(settings.rubrics_dir)
        for ref in rubrics:  # fail before listening on a typo
            registry.get(ref)
        load_judge_config(judge, settings.judges_dir)
        policy = sampling_policy(sample_rate, settings.sampling_config, settings.daily_budget_usd)
        check_rubric_names(policy, registry.criteria())
        self._pipeline: EmbeddedPipeline | None = None
        if embedded:
            db_path = Path(db_path or settings.db_path)
            self._pipeline = EmbeddedPipeline(db_path, judge, rubrics, registry, settings)
            exporter = EvaluatorSpanExporter(
                sink=self._pipeline.send, dead_letters=self._pipeline.keep, spend=LedgerSpend(db_path),
                judge=judge, rubrics=rubrics, policy=policy, mask=ingest_trace_masker(settings),
                settings=settings, settle_s=settings.receiver_log_wait_s)
        else:
            exporter = EvaluatorSpanExporter(
                require_redis(settings), judge=judge, rubrics=rubrics, policy=policy,
                mask=ingest_trace_masker(settings), settings=settings, settle_s=settings.receiver_log_wait_s)
        self.exporter = exporter
        logs = LogBuffer(LOG_RECORDS_BUFFERED, LOG_RECORD_MAX_AGE_S, time.monotonic)
        exporter.join_logs(logs)
        token = settings.receiver_token.get_secret_value() if settings.receiver_token else None
        self.receiver = OtlpReceiver(exporter, logs, max_body_bytes=settings.receiver_max_body_bytes,
                                     token=token, overloaded=self._pipeline_full)
        try:
            self._running = RunningReceiver(self.receiver, host, port)
        except BaseException:
            self._close_pipeline()
            raise
        self.port = self._running.port
        log.info("receiving OTLP/HTTP on %s:%d (%s)", host, self.port,
                 "embedded" if embedded else "service mode")

    def _pipeline_full(self) -> Pressure | None:
        if self._pipeline is not None and self._pipeline.full():
            return Pressure("the judges are not keeping up", 1, overloaded=True)
        return None

    def stop(self) -> None:
        self._running.stop()
        self._close_pipeline()

    def _close_pipeline(self) -> None:
        if self._pipeline is not None:
            try:
                self._pipeline.join()
            finally:
                self._pipeline.close()
