"""The main tables fit 80 columns (issue 17.4): rendered through the CLI with COLUMNS=80, no line
is longer and no cell is cut with an ellipsis; status counts are a small table."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from evaluator.cli import cli
from evaluator.core.rows import JudgeCall
from evaluator.core.settings import PROJECT_ROOT
from evaluator.core.usage import Usage
from evaluator.store import Store

SAMPLE = PROJECT_ROOT / "datasets" / "sample_traces.jsonl"
DATASET = PROJECT_ROOT / "datasets" / "example_regression.jsonl"
WIDTH = 80


def invoke(*args: str, width: int = WIDTH):
    result = CliRunner().invoke(cli, [*args], catch_exceptions=False,
                                env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    return result.stdout


def assert_fits(text: str, width: int = WIDTH) -> None:
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, "\n".join(too_long)
    assert "…" not in text, text


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("tables")
    traces = tmp / "t.jsonl"
    with open(SAMPLE, encoding="utf-8") as handle:
        lines = [next(handle) for _ in range(40)]
    traces.write_text("".join(lines) + '{"question": "q", "answer": "a"}\n', encoding="utf-8")
    db = tmp / "e.duckdb"
    run_output = invoke("run", "--traces", str(traces), "--db", str(db), "--sample-rate", "1.0",
                        "--no-preflight")
    calls = []
    for judge, rubric in (("openai-gpt-4o-mini-2024-07-18", "faithfulness"),
                          ("anthropic-claude-3-5-haiku", "hallucination")):
        for _ in range(3):
            call = JudgeCall.new(judge=judge, model="m", transport="openai", sample=0, attempt=1,
                                 status="ok", usage=Usage(1_234_567, 98_765, 12.3456, 1534.2),
                                 cached=False)
            call.rubric = rubric
            calls.append(call)
    with Store(db) as opened:
        opened.write_batch(judge_calls=calls)
    replay = json.loads(invoke("replay", str(DATASET), "--db", str(db), "--no-preflight",
                               "--json"))
    return {"db": str(db), "run_output": run_output, "replay": replay["run_id"]}


def test_run_summary_fits_80_columns(store):
    assert_fits(store["run_output"])
    assert re.search(r"^faithfulness@v\d+ +\d+ +[\d.]+% ", store["run_output"], flags=re.M)


def test_report_fits_80_columns_with_status_counts_as_a_table(store):
    out = invoke("report", "--db", store["db"])
    assert_fits(out)
    assert "{'scored'" not in out
    assert re.search(r"^scored +\d+$", out, flags=re.M)
    assert re.search(r"^dead letters +1$", out, flags=re.M)
    assert "Judge spend by judge" in out and "$37.04" in out


def test_replay_and_gate_fit_80_columns(store):
    out = invoke("gate", "--db", store["db"], "--run", store["replay"])
    assert_fits(out)
    assert re.search(r"^McNemar p \(one-sided\) +\S", out, flags=re.M)  # one block per rubric
    wide = invoke("gate", "--db", store["db"], "--run", store["replay"], width=220)
    assert re.search(r"^rubric +versions +shared", wide, flags=re.M)  # the table when it fits


def test_other_tables_fit_80_columns(store):
    for args in (("rubrics", "list"), ("datasets", "list"),
                 ("dead-letters", "--db", store["db"])):
        assert_fits(invoke(*args))


def test_tables_fit_a_narrower_terminal_too(store):
    for args in (("report", "--db", store["db"]), ("rubrics", "list")):
        assert_fits(invoke(*args, width=64), width=64)


def test_status_table_lists_every_status():
    from rich.console import Console

    from evaluator.monitoring.report import status_table

    console = Console(width=WIDTH, record=True)
    console.print(status_table({"scored": 1200, "unscored": 3, "error": 0, "skipped": 7}, 2))
    text = console.export_text()
    assert [line.split()[-1] for line in text.splitlines()[2:]] == ["1,200", "3", "0", "7", "2"]


def test_console_honours_columns(monkeypatch):
    from evaluator.core.tables import console

    monkeypatch.setenv("COLUMNS", "80")
    assert console().width == 80
    monkeypatch.delenv("COLUMNS")
    assert console().width >= 160  # piped, without COLUMNS: wide enough for any table

