"""`evaluator report`'s judge spend: sums per judge, rubric and day from the call ledger, with
unknown cost shown as unknown, never as $0."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from evaluator.cli import cli
from evaluator.core.rows import JudgeCall
from evaluator.core.usage import Usage
from evaluator.store import Store
from evaluator.store.cost_queries import Spend

DAY1 = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
DAY2 = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)


def call(judge: str, rubric: str, cost: float | None, when: datetime, status: str = "ok",
         cached: bool = False) -> JudgeCall:
    row = JudgeCall.new(judge=judge, model="m", transport="openai", sample=0, attempt=1,
                        status=status, usage=Usage(100, 10, cost, 50.0), cached=cached)
    row.created_at, row.rubric, row.run_id = when, rubric, "run-1"
    return row


def spend(calls: int, cached: int, known: float, unknown: int) -> str:
    return Spend("k", calls, cached, 0, 0, 0, known, unknown, None).spend


def test_spend_is_known_a_lower_bound_or_unknown() -> None:
    assert spend(3, 0, 0.012, 0) == "$0.0120"
    assert spend(3, 0, 2.5, 0) == "$2.50"
    assert spend(4, 1, 0.0, 0) == "$0.0000", "cache hits are free, and known to be"
    assert spend(3, 0, 0.012, 1) == "≥ $0.0120 (1 calls unknown)"
    assert spend(3, 0, 0.0, 2) == "unknown"


def test_the_report_sums_the_ledger_per_judge_rubric_and_day(tmp_path: Path) -> None:
    db = tmp_path / "cost.duckdb"
    rows = [call("gpt", "hallucination", 0.01, DAY1), call("gpt", "relevance", 0.02, DAY2),
            call("gpt", "relevance", 0.0, DAY2, status="error"),
            call("gpt", "relevance", 0.0, DAY2, cached=True),
            call("local", "hallucination", None, DAY2), call("local", "hallucination", 0.0, DAY2,
                                                            status="error")]
    with Store(db) as store:
        assert store.write_batch(judge_calls=rows + rows[:1]).judge_calls == len(rows)
    done = CliRunner().invoke(cli, ["report", "--db", str(db), "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)["judge_spend"]
    by_judge = {row["key"]: row for row in report["judge"]}
    assert (by_judge["gpt"]["spend"], by_judge["gpt"]["cost_usd"]) == ("$0.0300", 0.03)
    assert (by_judge["gpt"]["calls"], by_judge["gpt"]["cached"], by_judge["gpt"]["errors"]) == (
        4, 1, 1)
    assert by_judge["gpt"]["input_tokens"] == 300, "a cache hit spent no tokens"
    assert (by_judge["local"]["spend"], by_judge["local"]["cost_usd"]) == ("unknown", None)
    by_rubric = {row["key"]: row["spend"] for row in report["rubric"]}
    assert by_rubric == {"hallucination": "≥ $0.0100 (1 calls unknown)", "relevance": "$0.0200"}
    assert [(row["key"], row["calls"]) for row in report["day"]] == [
        ("2026-03-01", 1), ("2026-03-02", 5)]
    text = CliRunner().invoke(cli, ["report", "--db", str(db)]).output
    assert "Judge spend by judge" in text and "unknown" in text


@pytest.mark.redis
def test_the_report_reconciles_the_workers_spend_counter_with_the_ledger(
        tmp_path: Path, redis_url: str, monkeypatch) -> None:
    """Workers count every call in Redis when it completes; the ledger has the rows the sink
    stored. A call whose row never arrived shows as spend not recorded."""
    import redis

    from evaluator.sampling.spend import RedisSpend

    db = tmp_path / "cost.duckdb"
    stored = [call("gpt", "relevance", 0.02, DAY2), call("gpt", "hallucination", 0.01, DAY2)]
    lost = call("gpt", "refusal", 0.005, DAY2)
    for row in [*stored, lost]:
        row.run_id = None  # service mode
    replayed = call("gpt", "relevance", 0.5, DAY2)  # a replay: paid outside the counter
    with Store(db) as store:
        store.write_batch(judge_calls=[*stored, replayed])
    RedisSpend(redis.Redis.from_url(redis_url)).record([*stored, lost])
    monkeypatch.setenv("EVALUATOR_REDIS_URL", redis_url)

    done = CliRunner().invoke(cli, ["report", "--db", str(db), "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["spend_reconciliation"] == [
        {"day": "2026-03-02", "counted_usd": 0.035, "recorded_usd": 0.03, "unrecorded_usd": 0.005}]
    text = CliRunner().invoke(cli, ["report", "--db", str(db)]).output
    assert "counted by the workers" in text and "$0.0050" in text


def test_without_redis_the_report_shows_the_ledger_alone(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "cost.duckdb"
    with Store(db) as store:
        store.write_batch(judge_calls=[call("gpt", "relevance", 0.02, DAY2)])
    monkeypatch.delenv("EVALUATOR_REDIS_URL", raising=False)
    done = CliRunner().invoke(cli, ["report", "--db", str(db), "--json"])
    assert json.loads(done.output)["spend_reconciliation"] is None
