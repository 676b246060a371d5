"""`evaluator report` without --run covers production traffic, not replayed datasets."""

from evaluator.records import Evaluation
from evaluator.store import Store


def _evaluation(trace_id: str, run_id: str | None) -> Evaluation:
    return Evaluation(evaluation_id=f"e-{trace_id}", trace_id=trace_id, rubric="relevance",
                      rubric_version=1, rubric_hash="h", judge="offline", judge_hash="j",
                      label="relevant", score=1.0, passed=True, status="scored", run_id=run_id)


def test_replay_runs_are_reported_only_when_asked_for(tmp_path):
    with Store(tmp_path / "scope.duckdb") as store:
        store.start_run("run-prod", "run", {})
        store.start_run("run-replay", "replay", {})
        store.write_batch([_evaluation("a", None), _evaluation("b", "run-prod"),
                           _evaluation("run-replay/c", "run-replay")])
        assert [s.evaluated for s in store.rubric_summary()] == [2]
        assert sum(store.status_counts().values()) == 2
        assert [s.evaluated for s in store.rubric_summary(run_id="run-replay")] == [1]
