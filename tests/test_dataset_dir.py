"""`datasets build` writes outside the source tree (EVALUATOR_DATASETS_DIR, default
$XDG_DATA_HOME/evaluator/datasets); the repository's bundled datasets stay readable by name."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from evaluator.cli import cli
from evaluator.core.settings import BUNDLED_DATASETS_DIR, PROJECT_ROOT
from tests.test_datasets import store_traces, trace, verdict


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_build_writes_outside_the_repository_and_replay_finds_it_by_name(tmp_path: Path,
                                                                             monkeypatch):
    monkeypatch.delenv("EVALUATOR_DATASETS_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    db = tmp_path / "evaluator.duckdb"
    store_traces(db, [(trace("t1", "What does plan A include?"),
                       [verdict("t1", "hallucination", "hallucinated")])])
    before = sorted(p.name for p in BUNDLED_DATASETS_DIR.iterdir())

    invoke("datasets", "build", "--name", "mine", "--db", str(db))

    built = tmp_path / "data" / "evaluator" / "datasets" / "mine.jsonl"
    assert built.is_file() and not built.resolve().is_relative_to(PROJECT_ROOT)
    assert sorted(p.name for p in BUNDLED_DATASETS_DIR.iterdir()) == before
    listed = invoke("datasets", "list")
    assert "mine" in listed and "example_regression" in listed  # built and bundled
    assert "example_regression" in invoke("datasets", "show", "example_regression")
    replayed = json.loads(invoke("replay", "mine", "--db", str(db), "--json"))
    assert replayed["status"] == "completed" and replayed["total"] == 1  # the built one, by name
