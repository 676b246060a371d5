"""Constructed evaluation streams for the alert tests: controlled created_at, labels, scores,
statuses, weights and costs, written to a real DuckDB store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from evaluator.core.records import Evaluation, Trace, sha256_hex
from evaluator.core.rows import StoredTrace
from evaluator.core.usage import Usage
from evaluator.monitoring.alerts import AlertConfig
from evaluator.monitoring.alerts.sinks import Notification
from evaluator.store import Store

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class RecordingSink:
    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.sent.append(notification)


def spread(count: int, start: datetime, end: datetime) -> list[datetime]:
    """`count` instants strictly inside (start, end)."""
    step = (end - start) / (count + 1)
    return [start + step * (k + 1) for k in range(count)]


def evaluation(trace_id: str, rubric: str, at: datetime, *, label: str | None = None,
               score: float | None = None, status: str = "scored", weight: float = 1.0,
               judge: str = "judge-a", cost: float | None = 0.0, attempts: int = 1) -> Evaluation:
    return Evaluation(
        evaluation_id=sha256_hex(f"{trace_id}|{rubric}|{judge}")[:32], trace_id=trace_id,
        rubric=rubric, rubric_version=1, rubric_hash="rh", judge=judge, judge_hash="jh",
        label=label if status == "scored" else None, score=score if status == "scored" else None,
        status=status, sample_weight=weight, usage=Usage(cost_usd=cost), attempts=attempts, created_at=at,
    )


def label_stream(tag: str, rubric: str, start: datetime, end: datetime, count: int, bad: int,
                 bad_label: str, good_label: str, **fields) -> list[Evaluation]:
    """`count` scored evaluations, `bad` of them (spread evenly) with bad_label."""
    bad_at = {round(k * count / bad) for k in range(bad)} if bad else set()
    return [
        evaluation(f"{tag}-{i}", rubric, at, label=bad_label if i in bad_at else good_label,
                   score=0.0 if i in bad_at else 1.0, **fields)
        for i, at in enumerate(spread(count, start, end))
    ]


def score_stream(tag: str, rubric: str, start: datetime, end: datetime,
                 scores: Sequence[float], **fields) -> list[Evaluation]:
    return [evaluation(f"{tag}-{i}", rubric, at, label="x", score=score, **fields)
            for i, (at, score) in enumerate(zip(spread(len(scores), start, end), scores, strict=True))]


def status_stream(tag: str, start: datetime, end: datetime, count: int, errors: int,
                  **fields) -> list[Evaluation]:
    error_at = {round(k * count / errors) for k in range(errors)} if errors else set()
    return [
        evaluation(f"{tag}-{i}", "relevance", at, label="relevant", score=1.0,
                   status="error" if i in error_at else "scored", **fields)
        for i, at in enumerate(spread(count, start, end))
    ]


def traces_for(evaluations: Sequence[Evaluation], error_every: int = 0) -> list[StoredTrace]:
    """The traces behind the evaluations; every `error_every`-th one failed in the app."""
    ids = sorted({e.trace_id for e in evaluations})
    return [
        StoredTrace(Trace(trace_id=trace_id, output="answer",
                          status="error" if error_every and i % error_every == 0 else "ok"),
                    "random", 1.0)
        for i, trace_id in enumerate(ids)
    ]


def write(db: Path, evaluations: Sequence[Evaluation], traces: Sequence[StoredTrace] = ()) -> None:
    Store.write_once(db, list(evaluations), list(traces))


def config(*rules: dict) -> AlertConfig:
    return AlertConfig.model_validate({"rules": list(rules), "sinks": []})
