"""30% injected faults end to end (`evaluator run` through the real clients to the local server):
every evaluation ends in a terminal status with the right reason, none lost, none duplicated,
and the ledger accounts for every HTTP request the server saw."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from evaluator.core.records import evaluation_id_for
from evaluator.core.settings import PROJECT_ROOT, Settings
from evaluator.judges.llm import TRUNCATED_REASON
from evaluator.rubrics import RubricRegistry
from evaluator.store import Store
from evaluator.worker.embedded import run_embedded
from tests.support.judging import KEY, KEY_ENV, judge_config, write_judge
from tests.support.openai_server import OpenAIServer

FAULTS = {"429": 0.06, "500": 0.06, "hang": 0.03, "invalid_json": 0.05, "truncated": 0.05,
          "off_menu": 0.05}
TRACES = 40
NO_CONTEXT = range(0, TRACES, 4)


def write_traces(path: Path) -> list[str]:
    ids = []
    with path.open("w", encoding="utf-8") as out:
        for i in range(TRACES):
            ids.append(f"fault-{i:03d}")
            out.write(json.dumps({
                "trace_id": ids[-1], "input": f"What does plan {i} include?",
                "context": [] if i in NO_CONTEXT else [f"Plan {i} includes {i} GB of storage."],
                "output": f"Plan {i} includes {i} GB of storage."}) + "\n")
    return ids


@pytest.mark.parametrize("client", ["openai", "litellm"])
def test_thirty_percent_faults_end_every_evaluation_right(
        client: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sum(FAULTS.values()) == pytest.approx(0.30)
    monkeypatch.setenv(KEY_ENV, KEY)
    trace_ids = write_traces(tmp_path / "traces.jsonl")
    db = tmp_path / "faults.duckdb"
    with OpenAIServer(faults=FAULTS, seed=11, retry_after_s=0.05, hang_s=10) as server:
        config = judge_config(server, name="faulty", client=client,
                              prices={"input_per_mtok": 0.15, "output_per_mtok": 0.6},
                              limits={"timeout_s": 0.5, "max_attempts": 3, "max_in_flight": 16},
                              breaker={"consecutive_failures": 50})
        write_judge(tmp_path / "judges", config)
        monkeypatch.setenv("EVALUATOR_JUDGES_DIR", str(tmp_path / "judges"))
        run_embedded(tmp_path / "traces.jsonl", db, "faulty", 1.0, settings=Settings.from_env())
        stats = server.stats
    with Store(db, read_only=True) as store:
        evaluations = store.evaluations()
        ledger = store.conn.execute(
            "SELECT evaluation_id, attempt, status, http_status, error_class, cost_usd, cached"
            " FROM judge_calls ORDER BY evaluation_id, attempt").fetchall()

    rubrics = RubricRegistry.load(PROJECT_ROOT / "rubrics").latest()
    expected = {evaluation_id_for(t, r.content_hash, config.config_hash)
                for t in trace_ids for r in rubrics}
    assert len(evaluations) == len(expected) == TRACES * len(rubrics)
    assert {e.evaluation_id for e in evaluations} == expected, "none lost, none duplicated"

    calls = defaultdict(list)
    for row in ledger:
        calls[row[0]].append(row[1:])
    assert not any(row[-1] for row in ledger), "every prompt is new: no cache hits"
    assert len(ledger) == stats.total, "one ledger row per HTTP request"
    by_status = Counter(row[3] for row in ledger)
    assert by_status[429] == stats.by_fault.get("429", 0)
    assert by_status[500] == stats.by_fault.get("500", 0)
    hung = stats.by_fault.get("hang", 0) + stats.in_flight  # a hang outlives the client's wait
    timeouts = Counter(row[4] for row in ledger if row[3] is None)
    assert timeouts["APITimeoutError" if client == "openai" else "Timeout"] == hung > 0

    statuses = Counter()
    for e in evaluations:
        rows = calls.get(e.evaluation_id, [])
        statuses[e.status] += 1
        assert e.attempts == len(rows)
        assert [row[0] for row in rows] == list(range(1, len(rows) + 1))
        if e.status == "skipped":
            assert e.rubric in ("faithfulness", "correctness") and not rows
        elif e.status == "error":
            assert e.reason.startswith("judge call failed after 3 attempts: ")
            assert [row[1] for row in rows] == ["error"] * 3
        else:
            assert rows[-1][1:3] == ("ok", 200), "a reply came back"
            if e.status == "scored":
                assert e.label and e.reason is None
            else:
                assert e.reason and e.raw_reply is not None and e.label is None
                if e.reason == TRUNCATED_REASON:
                    assert [row[1] for row in rows[-2:]] == ["ok", "ok"]
        timed_out = any(row[1] == "error" and row[2] is None for row in rows)
        if rows:
            assert (e.usage.cost_usd is None) == timed_out, "a timeout's cost is unknown, not $0"
    assert statuses["skipped"] == len(NO_CONTEXT) + TRACES  # no reference answer: correctness
    assert statuses["scored"] > 100 and statuses["unscored"] > 5
