"""The embedded run can read and judge in processes of their own (issue 23 item 1): it stores
exactly what the one-process run stores, and a process that dies ends the run as failed with
every trace it was handed stored, none lost silently."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from evaluator.core.settings import DEFAULTS
from evaluator.ingest.files import WorkStream
from evaluator.ingest.reading_process import ReadingProcessError
from evaluator.judges.offline import OfflineJudge
from evaluator.rubrics import RubricRegistry
from evaluator.store import Store
from evaluator.worker.embedded import run_embedded
from evaluator.worker.judging_process import JudgingProcessError

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "sample_traces.jsonl"
VARYING = {"run_id", "created_at", "usage"}
"""What differs between any two runs: the run's id, the time, the offline judge's latency."""


@pytest.fixture(scope="module")
def traces(tmp_path_factory) -> Path:
    """The bundled sample traces with bad lines among them (dead letters)."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    bad = ["{not json", json.dumps({"trace_id": "no-output"}), json.dumps({"output": "no id"})]
    path = tmp_path_factory.mktemp("processes") / "t.jsonl"
    path.write_text("\n".join(lines[:700] + bad + lines[700:]) + "\n", encoding="utf-8")
    return path


def _stored(db: Path, run_id: str) -> tuple[list, list, int]:
    with Store(db, read_only=True) as store:
        evaluations = sorted((e.model_dump(exclude=VARYING) for e in store.evaluations(run_id=run_id)),
                             key=lambda e: e["evaluation_id"])
        traces = sorted((s.trace.model_dump_json(), s.sample_reason, s.sample_weight) for s in store.traces())
        return evaluations, traces, store.dead_letter_count()


def test_a_run_read_and_judged_in_processes_stores_what_a_run_in_one_process_stores(tmp_path, traces):
    one = run_embedded(traces, tmp_path / "one.duckdb", "offline", 1.0, read_in_a_process=False,
                       judge_in_a_process=False)
    split = run_embedded(traces, tmp_path / "split.duckdb", "offline", 1.0, read_in_a_process=True,
                         judge_in_a_process=True)
    assert _stored(tmp_path / "split.duckdb", split.run_id) == _stored(tmp_path / "one.duckdb", one.run_id)
    assert _summary(split) == _summary(one)
    assert split.sampled == 2001 and split.invalid == 2
    assert len(_stored(tmp_path / "split.duckdb", split.run_id)[0]) == split.evaluations


def _summary(report) -> dict:
    """The run's summary, means rounded: the store sums rows in the order they came."""
    return _round({key: value for key, value in report.to_dict().items()
                   if key not in {"run_id", "db", "elapsed_s"}})


def _round(value):
    if isinstance(value, float):
        return round(value, 12)
    if isinstance(value, dict):
        return {key: _round(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_round(item) for item in value]
    return value


def test_big_inputs_and_named_pipes_are_read_and_judged_in_processes(tmp_path, traces, monkeypatch):
    import evaluator.ingest.reading_process as reading_process
    import evaluator.worker.embedded as embedded

    started: list[str] = []
    for module, name in ((reading_process, "ReadingProcess"), (embedded, "JudgingProcess")):
        real = getattr(module, name)

        def recording(*args, _real=real, _name=name, **kwargs):
            started.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(embedded, name, recording)
    monkeypatch.setattr(reading_process, "READ_IN_PROCESS_MIN_BYTES", traces.stat().st_size)
    run_embedded(traces, tmp_path / "big.duckdb", "offline", 1.0)
    assert sorted(started) == ["JudgingProcess", "ReadingProcess"]
    started.clear()
    run_embedded(traces, tmp_path / "budget.duckdb", "offline", 1.0, max_cost_usd=1.0)
    assert started == ["ReadingProcess"]  # a run budget is kept where the judge runs: here
    monkeypatch.setattr(reading_process, "READ_IN_PROCESS_MIN_BYTES", traces.stat().st_size + 1)
    started.clear()
    run_embedded(traces, tmp_path / "small.duckdb", "offline", 1.0)
    assert started == []


def _killed_on(trace_id: str):
    def judge(self, rubric, trace):
        if trace.trace_id == trace_id:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, rubric, trace)

    real = OfflineJudge._judge
    return judge


def test_a_judging_process_that_dies_leaves_the_traces_it_held_as_errors_and_fails_the_run(
        tmp_path, traces, monkeypatch):
    victim = json.loads(SAMPLE.read_text(encoding="utf-8").splitlines()[300])["trace_id"]
    monkeypatch.setattr(OfflineJudge, "_judge", _killed_on(victim))
    db = tmp_path / "killed.duckdb"
    with pytest.raises(JudgingProcessError, match="killed by SIGKILL"):
        run_embedded(traces, db, "offline", 1.0, judge_in_a_process=True)
    rubrics = len(RubricRegistry.load(DEFAULTS.rubrics_dir).latest())
    with Store(db, read_only=True) as store:
        run = store.runs()[0]
        evaluations = store.evaluations(run_id=run.run_id)
        stored = {s.trace.trace_id for s in store.traces()}
    assert run.status == "failed" and "killed by SIGKILL" in run.summary["error"]
    assert victim in stored
    assert len(evaluations) == rubrics * len(stored)  # every trace handed over: all its rubrics
    lost = [e for e in evaluations if e.status == "error"]
    assert victim in {e.trace_id for e in lost}
    assert all("judging process stopped (killed by SIGKILL)" in e.reason for e in lost)


def test_a_reading_process_that_dies_fails_the_run_and_what_it_handed_over_is_stored(
        tmp_path, traces, monkeypatch):
    real = WorkStream.add

    def add(self, record, source):
        if self.counts.traces_read == 250:
            os.kill(os.getpid(), signal.SIGKILL)
        real(self, record, source)

    monkeypatch.setattr(WorkStream, "add", add)
    db = tmp_path / "killed.duckdb"
    with pytest.raises(ReadingProcessError, match="killed by SIGKILL") as raised:
        run_embedded(traces, db, "offline", 1.0, read_in_a_process=True, judge_in_a_process=False)
    with Store(db, read_only=True) as store:
        run = store.runs()[0]
        stored = store.traces()
    assert run.status == "failed"
    assert f"after handing over {len(stored):,} sampled traces" in str(raised.value)
    assert 0 < len(stored) <= 250


def test_a_judge_that_never_waits_is_awaited_in_turn_with_the_same_evaluations(traces):
    import asyncio

    from evaluator.ingest.files import collect_work
    from evaluator.judges.factory import load_judge
    from evaluator.judges.runtime import JudgeRuntime
    from evaluator.sampling.policy import SamplingPolicy
    from evaluator.worker.pipeline import evaluate_items

    class Waiting:  # the offline judge, without never_waits: one task per evaluation
        def __init__(self, judge):
            self.name, self.config_hash, self._judge = judge.name, judge.config_hash, judge

        async def judge(self, rubric, trace, prompt):
            return await self._judge.judge(rubric, trace, prompt)

    offline = load_judge("offline", DEFAULTS.judges_dir, JudgeRuntime())
    items = collect_work(traces, SamplingPolicy(1.0), settings=DEFAULTS).items[:200]
    rubrics = RubricRegistry.load(DEFAULTS.rubrics_dir).latest()
    in_turn = asyncio.run(evaluate_items(items, rubrics, offline, "r"))
    as_tasks = asyncio.run(evaluate_items(items, rubrics, Waiting(offline), "r"))
    assert offline.never_waits
    assert [e.model_dump(exclude=VARYING) for e in in_turn] == [e.model_dump(exclude=VARYING) for e in as_tasks]
