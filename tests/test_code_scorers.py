"""Code scorers: rubric files of their own kind (`v<N>.yaml`), versioned and locked like the
Jinja ones, scored without a judge, in the pipeline every mode runs."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from evaluator.core.errors import RubricError, RubricLockError
from evaluator.core.records import parse_trace
from evaluator.judges.base import JudgeVerdict
from evaluator.judges.scorers import code_scorer
from evaluator.judges.scorers.builtin import normalize
from evaluator.rubrics import RubricRegistry, load_rubric, update_lock, verify_lock


def write_rubric(directory: Path, criterion: str, version: int = 1, **fields) -> Path:
    path = directory / criterion / f"v{version}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"criterion": criterion, "version": version, "description": f"{criterion} check", **fields}
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def score(tmp_path: Path, kind: str, params: dict, output: str, expected: str | None = None,
          **fields) -> JudgeVerdict:
    rubric = load_rubric(write_rubric(tmp_path, "check", kind=kind, params=params, **fields))
    trace = parse_trace({"trace_id": "t-1", "input": "q", "output": output, "expected": expected})
    return asyncio.run(code_scorer(rubric).judge(rubric, trace))


CASES = [
    ("exact_match", {}, "Paris", "Paris", "pass"),
    ("exact_match", {}, "paris", "Paris", "fail"),
    ("exact_match", {"case_sensitive": False}, " paris\n", "Paris", "pass"),
    ("normalized_match", {}, "The Eiffel  Tower!", "eiffel tower", "pass"),
    ("normalized_match", {}, "The Eiffel Tower is in Paris.", "eiffel tower", "fail"),
    ("normalized_match", {"contains": True}, "The Eiffel Tower is in Paris.", "eiffel tower", "pass"),
    ("contains", {"values": ["refund", "30 days"], "mode": "all"}, "Refunds within 30 days.", None, "pass"),
    ("contains", {"values": ["refund", "60 days"], "mode": "all"}, "Refunds within 30 days.", None, "fail"),
    ("contains", {"values": ["refund", "60 days"]}, "Refunds within 30 days.", None, "pass"),
    ("contains", {}, "It is in Paris, France.", "paris", "pass"),
    ("contains", {"values": ["password"], "forbidden": True}, "Your password is hunter2", None, "fail"),
    ("regex", {"pattern": r"\bORD-\d{6}\b"}, "Your order ORD-123456 shipped.", None, "pass"),
    ("regex", {"pattern": r"\d{3}-\d{2}-\d{4}", "forbidden": True}, "SSN 123-45-6789", None, "fail"),
    ("regex", {"pattern": r"yes|no", "full": True, "ignore_case": True}, "YES", None, "pass"),
    ("json_valid", {}, '{"a": [1, 2]}', None, "pass"),
    ("json_valid", {}, '{"a": [1, 2}', None, "fail"),
    ("json_valid", {"code_fence": True}, '```json\n{"a": 1}\n```', None, "pass"),
    ("json_schema", {"schema": {"type": "object", "required": ["city"],
                                "properties": {"city": {"type": "string"}}}}, '{"city": "Oslo"}', None, "pass"),
    ("json_schema", {"schema": {"type": "object", "required": ["city"],
                                "properties": {"city": {"type": "string"}}}}, '{"city": 3}', None, "fail"),
    ("length", {"max_words": 5}, "one two three four five", None, "pass"),
    ("length", {"max_words": 4}, "one two three four five", None, "fail"),
    ("length", {"max_tokens": 2}, "123456789", None, "fail"),
    ("length", {"min_chars": 3}, "ok", None, "fail"),
    ("numeric", {"tolerance": 0.5}, "About 42.3 km", "42", "pass"),
    ("numeric", {"tolerance": 0.1, "relative": True}, "It costs 1,150 dollars", "1000", "fail"),
    ("numeric", {}, "no idea", "7", "fail"),
]


@pytest.mark.parametrize(("kind", "params", "output", "expected", "label"), CASES)
def test_builtin_scorers(tmp_path, kind, params, output, expected, label):
    verdict = score(tmp_path, kind, params, output, expected)
    assert (verdict.status, verdict.label) == ("scored", label), verdict.reasoning
    assert verdict.score == (1.0 if label == "pass" else 0.0)
    assert verdict.reasoning and verdict.usage.cost_usd == 0.0 and verdict.attempts == 0


def test_a_scorer_needing_expected_is_unscored_without_it(tmp_path):
    verdict = score(tmp_path, "normalized_match", {}, "Paris")
    assert verdict.status == "unscored"
    assert verdict.reason == "the item has no `expected` reference answer to compare with"


def test_a_catastrophic_pattern_is_stopped_by_its_timeout(tmp_path):
    started = time.monotonic()
    verdict = score(tmp_path, "regex", {"pattern": "(a|aa)+$", "timeout_s": 0.05}, "a" * 5000 + "b")
    assert time.monotonic() - started < 5
    assert verdict.status == "error"
    assert "ran past its 0.05 s timeout" in verdict.reason


@pytest.mark.parametrize(("kind", "params", "problem"), [
    ("regex", {"pattern": "(unclosed"}, "is not a valid regular expression"),
    ("regex", {}, "missing 1 required positional argument: 'pattern'"),
    ("json_schema", {"schema": {"type": "no-such-type"}}, "schema is not a valid JSON Schema"),
    ("length", {}, "set at least one of min_chars"),
    ("contains", {"values": "refund"}, "values must be a non-empty list"),
    ("numeric", {"tolerance": -1}, "tolerance must be a finite number"),
    ("exact_match", {"casesensitive": False}, "unexpected keyword argument 'casesensitive'"),
    ("semantic_similarity", {"embedder": "nope"}, "unknown embedder 'nope'"),
    ("spelling", {}, "kind: unknown scorer 'spelling'; known: contains, exact_match"),
])
def test_bad_scorer_settings_name_the_rubric_file(tmp_path, kind, params, problem):
    rubric = load_rubric(write_rubric(tmp_path, "check", kind=kind, params=params))
    with pytest.raises(RubricError, match=r"check/v1\.yaml: .*" + _escape(problem)):
        code_scorer(rubric)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_a_template_kind_is_not_a_code_scorer_and_versions_must_match_file_names(tmp_path):
    with pytest.raises(RubricError, match="a 'judge' rubric is a Jinja template: write it as v<N>.jinja"):
        load_rubric(write_rubric(tmp_path, "a", kind="judge"))
    path = write_rubric(tmp_path, "b", kind="json_valid")
    moved = path.with_name("v2.yaml")
    path.rename(moved)
    with pytest.raises(RubricError, match="front matter key 'version' is 1: name the file v1.yaml"):
        load_rubric(moved)


@given(st.text(max_size=200))
def test_normalization_is_idempotent_and_a_text_matches_itself(text):
    assert normalize(normalize(text)) == normalize(text)


def test_code_rubrics_are_locked_like_templates(tmp_path):
    write_rubric(tmp_path, "is_json", kind="json_valid")
    registry = RubricRegistry.load(tmp_path)
    lock = tmp_path / "rubrics.lock"
    assert update_lock(registry, lock) == ["is_json@v1"]
    verify_lock(registry, lock)
    write_rubric(tmp_path, "is_json", kind="json_valid", params={"code_fence": True})
    with pytest.raises(RubricLockError, match=r"is_json@v1 .*changed after it was published"):
        verify_lock(RubricRegistry.load(tmp_path), lock)


# --- end to end: `evaluator run` (embedded) ---------------------------------------------------

def user_rubrics(directory: Path) -> Path:
    """The bundled refusal rubric next to two code-scorer rubrics of the user's."""
    bundled = Path(__file__).resolve().parent.parent / "rubrics" / "refusal" / "v1.jinja"
    (directory / "refusal").mkdir(parents=True)
    (directory / "refusal" / "v1.jinja").write_bytes(bundled.read_bytes())
    write_rubric(directory, "order_id", kind="regex", params={"pattern": r"\bORD-\d{6}\b"},
                 required_inputs=["output"])
    write_rubric(directory, "answer", kind="normalized_match", params={"contains": True},
                 required_inputs=["output", "expected"])
    return directory


def traces_file(path: Path) -> Path:
    rows = [
        {"trace_id": "t-1", "input": "Where is my order?", "output": "Order ORD-123456 ships today.",
         "expected": "ships today"},
        {"trace_id": "t-2", "input": "Where is my order?", "output": "It shipped yesterday.",
         "expected": "ships today"},
        {"trace_id": "t-3", "input": "Where is my order?", "output": "I can't help with that."},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_a_user_code_rubric_runs_end_to_end_in_the_embedded_run(tmp_path, monkeypatch, capsys):
    from evaluator.cli import main
    from evaluator.store import Store

    monkeypatch.setenv("EVALUATOR_RUBRICS_DIR", str(user_rubrics(tmp_path / "rubrics")))
    db = tmp_path / "run.duckdb"
    monkeypatch.setattr("sys.argv", ["evaluator", "run", "--traces", str(traces_file(tmp_path / "t.jsonl")),
                                     "--sample-rate", "1", "--db", str(db), "--json"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0, capsys.readouterr().err
    summary = {row["rubric"]: row for row in json.loads(capsys.readouterr().out)["rubrics"]}
    assert set(summary) == {"refusal", "order_id", "answer"}
    with Store(db, read_only=True) as store:
        rows = {(e.trace_id, e.rubric): e for e in store.evaluations()}
    assert [rows[(t, "order_id")].label for t in ("t-1", "t-2", "t-3")] == ["pass", "fail", "fail"]
    assert rows[("t-1", "answer")].label == "pass" and rows[("t-2", "answer")].label == "fail"
    assert rows[("t-3", "answer")].status == "skipped"  # no expected answer: not applicable
    code_rows = [e for (_, rubric), e in rows.items() if rubric != "refusal"]
    assert {e.judge for e in code_rows} == {"code:regex", "code:normalized_match"}
    assert all(e.usage.cost_usd == 0.0 and e.prompt_hash is None for e in code_rows if e.status == "scored")
    assert rows[("t-3", "refusal")].judge == "offline"
    monkeypatch.setattr("sys.argv", ["evaluator", "show", "t-1", "--db", str(db), "--rubric", "order_id",
                                     "--json"])
    with pytest.raises(SystemExit):
        main()
    [shown] = json.loads(capsys.readouterr().out)["evaluations"]
    assert shown["prompt"]["note"] == "no judge prompt: a code scorer (code:regex) scored it"


def test_a_bad_code_rubric_stops_the_run_before_any_work(tmp_path, monkeypatch, capsys):
    from evaluator.cli import main

    rubrics = user_rubrics(tmp_path / "rubrics")
    write_rubric(rubrics, "broken", kind="regex", params={"pattern": "("})
    monkeypatch.setenv("EVALUATOR_RUBRICS_DIR", str(rubrics))
    db = tmp_path / "run.duckdb"
    monkeypatch.setattr("sys.argv", ["evaluator", "run", "--traces", str(traces_file(tmp_path / "t.jsonl")),
                                     "--db", str(db)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert "broken/v1.yaml: params of scorer 'regex'" in capsys.readouterr().err
    assert not db.exists()


def test_a_code_rubric_has_no_prompt_to_render(tmp_path):
    from evaluator.rubrics import render

    rubric = load_rubric(write_rubric(tmp_path, "is_json", kind="json_valid"))
    with pytest.raises(RubricError, match=r"rubric is_json@v1 is scored in code \(json_valid\): it has no prompt"):
        render(rubric, parse_trace({"trace_id": "t", "output": "{}"}))
