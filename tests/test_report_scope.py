"""Scope: production traffic (the default), one named run, or all rows (evaluator.store.scope)."""

import pytest

from evaluator.core.errors import ConfigError, StoreError
from evaluator.core.records import Evaluation
from evaluator.store import Scope, Store


def _evaluation(trace_id: str, run_id: str | None) -> Evaluation:
    return Evaluation(evaluation_id=f"e-{trace_id}", trace_id=trace_id, rubric="relevance",
                      rubric_version=1, rubric_hash="h", judge="offline", judge_hash="j",
                      label="relevant", score=1.0, passed=True, status="scored", run_id=run_id)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "scope.duckdb") as store:
        store.start_run("run-prod", "run", {})
        store.start_run("run-replay", "replay", {})
        store.write_batch([_evaluation("a", None), _evaluation("b", "run-prod"),
                           _evaluation("c", "unregistered"),
                           _evaluation("run-replay/d", "run-replay")])
        yield store


def evaluated(store: Store, scope: Scope) -> int:
    return sum(s.evaluated for s in store.rubric_summary(scope))


def test_production_is_every_row_but_replays(store):
    """Worker rows (no run), `evaluator run` rows and rows of a run the store never registered."""
    assert [s.evaluated for s in store.rubric_summary()] == [3]
    assert sum(store.status_counts().values()) == 3


def test_a_named_run_and_all_runs(store):
    assert evaluated(store, Scope.run("run-replay")) == 1
    assert store.status_counts(Scope.run("run-replay"))["scored"] == 1
    assert evaluated(store, Scope.run("run-prod")) == 1
    assert evaluated(store, Scope.everything()) == 4


def test_a_scope_checks_that_its_run_exists(store):
    assert store.check_scope(Scope.run("run-prod")) == Scope.run("run-prod")
    with pytest.raises(StoreError, match="no run 'nope' in .*the newest are run-"):
        store.check_scope(Scope.run("nope"))


def test_command_options_choose_the_scope():
    assert Scope.from_options(None, False) == Scope.production()
    assert Scope.from_options("r1", False) == Scope.run("r1")
    assert Scope.from_options(None, True) == Scope.everything()
    with pytest.raises(ConfigError, match="exclude each other"):
        Scope.from_options("r1", True)


def test_the_predicate_only_takes_a_run_id_column():
    assert Scope.production().sql("e.run_id").startswith("(e.run_id IS NULL")
    with pytest.raises(ValueError):
        Scope.production().sql("1=1) OR (run_id")
