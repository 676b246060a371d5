"""Dead letters are visible (issue 17.2): `evaluator dead-letters`, the top reasons in the run and
ingest summaries, and exit 4 when not one line of the input was a valid trace."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from evaluator.cli import cli
from evaluator.commands.input_checks import NO_VALID_TRACE_EXIT
from evaluator.core.settings import PROJECT_ROOT

SAMPLE = PROJECT_ROOT / "datasets" / "sample_traces.jsonl"
MISSING_ID = "invalid trace: field 'trace_id': Field required"


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, [*args], catch_exceptions=False, env=env)


def sample_lines(n: int) -> list[str]:
    with open(SAMPLE, encoding="utf-8") as handle:
        return [next(handle).rstrip("\n") for _ in range(n)]


@pytest.fixture
def mixed(tmp_path) -> Path:
    """Five good traces, three without a trace_id, one that is not JSON."""
    lines = sample_lines(8)
    for index in (1, 3, 5):
        record = json.loads(lines[index])
        del record["trace_id"]
        lines[index] = json.dumps(record)
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n{not json\n", encoding="utf-8")
    return path


def run(traces: Path, db: Path, *more: str):
    return invoke("run", "--traces", str(traces), "--db", str(db), "--no-preflight",
                  "--sample-rate", "1.0", *more)


def test_run_summary_lists_the_top_dead_letter_reasons(mixed, tmp_path):
    result = run(mixed, tmp_path / "e.duckdb")
    assert result.exit_code == 0, result.output
    assert "4 invalid" in result.stdout
    lines = result.stdout.splitlines()
    head = lines.index("dead letters, top reasons (all of them: evaluator dead-letters):")
    assert lines[head + 1].split(None, 1) == ["3", MISSING_ID]
    assert lines[head + 2].split(None, 1)[0] == "1"
    assert "not valid JSON" in lines[head + 2]


def test_run_json_counts_dead_letters_per_reason(mixed, tmp_path):
    result = run(mixed, tmp_path / "e.duckdb", "--json")
    assert result.exit_code == 0, result.output
    reasons = json.loads(result.stdout)["dead_letter_reasons"]
    assert list(reasons.items())[0] == (MISSING_ID, 3)
    assert sum(reasons.values()) == 4


def test_run_on_the_wrong_format_exits_4_in_one_line(tmp_path):
    traces = tmp_path / "t.jsonl"
    traces.write_text("\n".join(sample_lines(5)) + "\n", encoding="utf-8")
    result = run(traces, tmp_path / "e.duckdb", "--format", "otlp-json")
    assert result.exit_code == NO_VALID_TRACE_EXIT == 4
    error = result.stderr.strip()
    assert "\n" not in error and error.startswith("error: none of the 5 records of ")
    assert "--format otlp-json" in error and "check --format" in error
    assert "     5  the line is not an OTLP/JSON trace request" in result.stdout


def test_run_on_an_empty_file_exits_4(tmp_path):
    traces = tmp_path / "empty.jsonl"
    traces.write_text("\n", encoding="utf-8")
    result = run(traces, tmp_path / "e.duckdb", "--json")
    assert result.exit_code == 4
    assert "holds no trace read as --format jsonl" in result.stderr
    assert json.loads(result.stdout)["traces_read"] == 0


def test_dead_letters_command_counts_reasons_and_shows_the_latest(mixed, tmp_path):
    db = tmp_path / "e.duckdb"
    assert run(mixed, db).exit_code == 0
    result = invoke("dead-letters", "--db", str(db), "--limit", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"4 dead letters in {db}")
    assert MISSING_ID in result.stdout and "payload: {" in result.stdout
    assert f"{mixed}:9" in result.stdout  # the newest: the last line

    data = json.loads(invoke("dead-letters", "--db", str(db), "--json").stdout)
    assert data["total"] == 4
    assert data["reasons"][0] == {"reason": MISSING_ID, "count": 3, "field": "trace_id"}
    assert {d["source"] for d in data["dead_letters"]} == {f"{mixed}:{n}" for n in (2, 4, 6, 9)}


def test_dead_letters_source_and_since_filter(mixed, tmp_path):
    db = tmp_path / "e.duckdb"
    other = tmp_path / "other.jsonl"
    other.write_text("[1, 2]\n", encoding="utf-8")
    assert run(mixed, db).exit_code == 0
    assert run(other, db).exit_code == 4

    def total(*args: str) -> int:
        return json.loads(invoke("dead-letters", "--db", str(db), "--json", *args).stdout)["total"]

    assert total() == 5
    assert total("--source", str(other)) == 1
    assert total("--source", str(mixed)) == 4
    assert total("--source", f"{mixed}:2") == 1
    assert total("--source", str(tmp_path / "mixed")) == 0  # a prefix of a name is not the file
    assert total("--since", "1h") == 5
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert total("--since", future) == 0


def test_dead_letters_bad_since_is_one_line_exit_2(tmp_path, mixed, monkeypatch, capsys):
    from evaluator.cli import main

    db = tmp_path / "e.duckdb"
    assert run(mixed, db).exit_code == 0
    monkeypatch.setattr("sys.argv", ["evaluator", "dead-letters", "--db", str(db), "--since", "soon"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_ingest_summary_lists_reasons_and_exits_4_when_nothing_is_valid(tmp_path, redis_url):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n' * 3, encoding="utf-8")
    result = invoke("ingest", str(bad), env={"EVALUATOR_REDIS_URL": redis_url})
    assert result.exit_code == 4, result.output
    assert "read 3 traces (3 invalid" in result.stdout
    assert "     3  invalid trace: field 'trace_id': Field required" in result.stdout
