"""`evaluator run` as a newcomer meets it (issue 17 items 1 and 5): a progress callback whose
counts reach the run's totals (the CLI draws it as a bar only on a terminal), and a second run
over the same traces says they were already evaluated and shows the stored summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from evaluator.cli import cli
from evaluator.core.settings import PROJECT_ROOT
from evaluator.worker.embedded import RunProgress, run_embedded

SAMPLE = PROJECT_ROOT / "datasets" / "sample_traces.jsonl"


@pytest.fixture
def traces(tmp_path) -> Path:
    with open(SAMPLE, encoding="utf-8") as handle:
        lines = [next(handle) for _ in range(30)]
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def run(traces: Path, db: Path, *more: str):
    return CliRunner().invoke(cli, ["run", "--traces", str(traces), "--db", str(db),
                                    "--no-preflight", "--sample-rate", "0.5", *more],
                              catch_exceptions=False)


def test_progress_counts_reach_the_run_totals(traces, tmp_path):
    seen: list[RunProgress] = []
    report = run_embedded(traces, tmp_path / "e.duckdb", sample_rate=0.5, on_progress=seen.append)
    last = seen[-1]
    assert report.sampled > 0
    assert (last.read, last.sampled, last.evaluated) == (report.traces_read, report.sampled,
                                                         report.sampled)
    assert last.total == report.sampled
    assert all(p.total is None for p in seen if not p.reading_done)
    for earlier, later in zip(seen, seen[1:], strict=False):
        assert (earlier.read, earlier.sampled, earlier.evaluated) <= (
            later.read, later.sampled, later.evaluated)


def test_run_off_a_terminal_draws_no_bar(traces, tmp_path):
    result = run(traces, tmp_path / "e.duckdb")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "ETA" not in result.output and "traces/s" not in result.output


def test_second_run_says_the_traces_were_already_evaluated(traces, tmp_path):
    db = tmp_path / "e.duckdb"
    first = run(traces, db, "--json")
    assert first.exit_code == 0, first.output
    stored = json.loads(first.stdout)
    assert stored["evaluations"] > 0 and stored["already_stored"] == 0

    second = run(traces, db)
    assert second.exit_code == 0, second.output
    assert (f"{stored['evaluations']} evaluations already stored for this judge and rubric "
            "versions") in " ".join(second.stdout.split())
    assert "Stored evaluations of production traffic" in second.stdout
    again = json.loads(run(traces, db, "--json").stdout)
    assert again["evaluations"] == 0
    assert again["already_stored"] == stored["evaluations"]
    assert ([(r["rubric"], r["evaluated"]) for r in again["stored_rubrics"]]
            == [(r["rubric"], r["evaluated"]) for r in stored["rubrics"]])
