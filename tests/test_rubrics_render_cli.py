"""`evaluator rubrics render` (issue 18.5): the exact prompt for a trace or a dataset item, and a
warning when the rubric needs a field the trace or item lacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluator.cli import main
from evaluator.core.settings import Settings
from evaluator.regression.datasets import DatasetItem, write_dataset
from evaluator.regression.replay import start_replay
from evaluator.store import Store

REFERENCE = "30 days from delivery, if the item is unused."
ITEMS = [
    DatasetItem(id="ret-1", input="How long do I have to return an item?",
                output="You have 30 days.", expected=REFERENCE, label_source="human"),
    DatasetItem(id="ret-2", input=[{"role": "user", "content": "Can I return opened items?"}],
                context=["Returns are accepted for unused items only."],
                output="Only unused items can be returned.", label_source="human"),
]


def render(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.argv", ["evaluator", "rubrics", "render", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "returns.jsonl"
    write_dataset(path, ITEMS)
    return path


def test_an_items_prompt_is_the_one_its_replay_judged(dataset, tmp_path, monkeypatch, capsys):
    db = tmp_path / "e.duckdb"
    start_replay(dataset, db, Settings.from_env(), ["correctness", "faithfulness"], "offline",
                 run_id="r")
    with Store(db, read_only=True) as store:
        judged = {(e.trace_id, e.rubric): e.prompt_hash for e in store.evaluations()}
    code, out, err = render(monkeypatch, capsys, "correctness", "--item", str(dataset),
                            "--id", "ret-1")
    assert code == 0 and err == ""
    assert "<<<BEGIN REFERENCE ANSWER>>>\n" + REFERENCE in out
    assert f"===== prompt_hash {judged[('r/ret-1', 'correctness')]} =====" in out
    code, out, err = render(monkeypatch, capsys, "faithfulness", "--item", str(dataset),
                            "--line", "2")
    assert code == 0 and err == ""
    assert f"===== prompt_hash {judged[('r/ret-2', 'faithfulness')]} =====" in out


def test_a_missing_required_input_is_warned_about_not_rendered_silently(
        dataset, tmp_path, monkeypatch, capsys):
    code, out, err = render(monkeypatch, capsys, "correctness", "--item", str(dataset),
                            "--id", "ret-2")
    assert code == 0 and "<<<BEGIN REFERENCE ANSWER>>>\n\n<<<END REFERENCE ANSWER>>>" in out
    assert err.startswith("warning: item 'ret-2' has no expected, which correctness@v1 requires: "
                          "a run stores this evaluation as skipped")
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps({"trace_id": "t-9", "output": "Yes."}), encoding="utf-8")
    code, out, err = render(monkeypatch, capsys, "faithfulness@v1", "--trace", str(trace))
    assert code == 0 and "===== prompt_hash" in out
    assert "warning: trace 't-9' has no context, which faithfulness@v1 requires" in err
    code, _, err = render(monkeypatch, capsys, "relevance", "--trace", str(trace))
    assert code == 0 and "has no input, which relevance@v1 requires" in err


@pytest.mark.parametrize(("args", "message"), [
    ((), "give either --trace FILE or --item DATASET"),
    (("--item", "x", "--trace", "{dataset}"), "give either --trace FILE or --item DATASET"),
    (("--trace", "{dataset}", "--id", "ret-1"), "--id picks an item of --item DATASET"),
    (("--item", "{dataset}", "--id", "nope"), "has no item with id 'nope'"),
    (("--item", "{dataset}", "--line", "3"), "has 2 items, not a line 3"),
    (("--trace", "{dataset}", "--line", "3"), "has 2 non-blank lines, not a line 3"),
])
def test_bad_choices_are_one_line_errors(dataset, monkeypatch, capsys, args, message):
    code, out, err = render(monkeypatch, capsys, "correctness",
                            *(arg.format(dataset=dataset) for arg in args))
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err
