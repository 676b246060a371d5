"""`evaluator show TRACE_ID` (issue 17.9): the masked trace, each evaluation, and the prompt the
judge saw, rendered again and checked against the stored prompt hash."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from evaluator.cli import cli, main
from evaluator.core.settings import PROJECT_ROOT
from evaluator.rubrics import RubricRegistry

SAMPLE = PROJECT_ROOT / "datasets" / "sample_traces.jsonl"
EMAIL = "jane.doe@example.com"
LATEST = {rubric.criterion: rubric.ref for rubric in RubricRegistry.load(PROJECT_ROOT / "rubrics").latest()}
"""What `run` judges with: the latest version of each rubric."""


def invoke(*args: str):
    return CliRunner().invoke(cli, [*args], catch_exceptions=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Six sample traces, the first one answering with an email address, all evaluated."""
    tmp = tmp_path_factory.mktemp("show")
    with open(SAMPLE, encoding="utf-8") as handle:
        records = [json.loads(next(handle)) for _ in range(6)]
    records[0]["output"] += f" Write to {EMAIL} for more."
    traces = tmp / "t.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    db = tmp / "e.duckdb"
    result = invoke("run", "--traces", str(traces), "--db", str(db), "--sample-rate", "1.0",
                    "--no-preflight")
    assert result.exit_code == 0, result.output
    return db, records


def test_show_prints_the_masked_trace_evaluations_and_matching_prompts(store):
    db, records = store
    trace_id = records[0]["trace_id"]
    result = invoke("show", trace_id[:10], "--db", str(db))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"trace {trace_id}: sampled traffic (")
    assert EMAIL not in out and "<EMAIL_1>" in out
    for rubric in ("faithfulness", "hallucination", "refusal", "relevance"):
        assert f"evaluation {LATEST[rubric]} by judge offline" in out
    assert out.count("prompt (matches): this is the exact prompt the judge saw") == 4
    assert "judge prompt, system:" in out and "judge prompt, user:" in out
    assert "<<<BEGIN OUTPUT>>>" in out


def test_show_json_reports_each_prompt_hash(store):
    db, records = store
    data = json.loads(invoke("show", records[1]["trace_id"], "--db", str(db), "--json").stdout)
    assert data["trace"]["trace_id"] == records[1]["trace_id"]
    judged = [e for e in data["evaluations"] if e["prompt_hash"]]
    assert judged and all(e["prompt"]["verdict"] == "matches" for e in judged)
    assert all(e["prompt"]["prompt_hash"] == e["prompt_hash"] for e in judged)
    assert all(e["prompt"]["messages"][0]["role"] == "system" for e in judged)


def test_show_rubric_filter_and_no_prompt(store):
    db, records = store
    out = invoke("show", records[2]["trace_id"], "--db", str(db), "--rubric", "refusal",
                 "--no-prompt").stdout
    assert f"evaluation {LATEST['refusal']}" in out and "evaluation relevance@" not in out
    assert "judge prompt" not in out


def test_show_says_when_the_stored_prompt_differs(store, tmp_path):
    db, records = store
    copy = tmp_path / "changed.duckdb"
    copy.write_bytes(db.read_bytes())
    with duckdb.connect(str(copy)) as conn:  # the judge saw other text than what is stored
        conn.execute("UPDATE evaluations SET prompt_hash = 'x' || prompt_hash WHERE trace_id = ?",
                     [records[3]["trace_id"]])
    out = invoke("show", records[3]["trace_id"], "--db", str(copy), "--no-prompt").stdout
    assert "prompt (matches)" not in out
    assert "prompt (differs): rendered again, the prompt differs from the one judged" in out


@pytest.mark.parametrize(("argument", "message"), [
    ("nope-no-such-trace", "no trace or evaluation with id 'nope-no-such-trace'"),
    ("", "trace ids start with ''"),
])
def test_show_unknown_or_ambiguous_id_is_one_line_exit_2(store, argument, message, monkeypatch,
                                                         capsys):
    db, _ = store
    monkeypatch.setattr("sys.argv", ["evaluator", "show", argument, "--db", str(db)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_show_a_replayed_item(store, tmp_path):
    db, _ = store
    copy = tmp_path / "replay.duckdb"
    copy.write_bytes(db.read_bytes())
    dataset = PROJECT_ROOT / "datasets" / "example_regression.jsonl"
    assert invoke("replay", str(dataset), "--db", str(copy), "--no-preflight",
                  "--rubric", "refusal").exit_code == 0
    with duckdb.connect(str(copy), read_only=True) as conn:
        trace_id = conn.execute("SELECT trace_id FROM replay_items LIMIT 1").fetchone()[0]
    out = invoke("show", trace_id, "--db", str(copy), "--no-prompt").stdout
    assert f"trace {trace_id}: dataset item " in out
    assert "prompt (matches)" in out
