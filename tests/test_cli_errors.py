"""User errors are one line and exit 2, never a traceback (issue 17.3): output paths that cannot
be written, a --db whose directory cannot exist, a trace file that is not UTF-8. These go through
`evaluator.cli.main`, the console entry point, since that is where errors become exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from evaluator.cli import cli, main
from evaluator.core import read_memory
from evaluator.core.settings import PROJECT_ROOT

SAMPLE = PROJECT_ROOT / "datasets" / "sample_traces.jsonl"
DATASET = PROJECT_ROOT / "datasets" / "example_regression.jsonl"


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.argv", ["evaluator", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> dict[str, Path | str]:
    """A store with a run of 12 sample traces and a replay; `blocker`, a plain file."""
    tmp = tmp_path_factory.mktemp("errors")
    traces = tmp / "t.jsonl"
    with open(SAMPLE, encoding="utf-8") as handle:
        traces.write_text("".join(next(handle) for _ in range(12)), encoding="utf-8")
    db = tmp / "e.duckdb"
    runner = CliRunner()
    assert runner.invoke(cli, ["run", "--traces", str(traces), "--db", str(db), "--sample-rate",
                               "1.0", "--no-preflight"]).exit_code == 0
    replay = runner.invoke(cli, ["replay", str(DATASET), "--db", str(db), "--rubric", "refusal",
                                 "--no-preflight", "--json"])
    assert replay.exit_code == 0, replay.output
    blocker = tmp / "blocker"
    blocker.write_text("a file, not a directory\n")
    return {"db": db, "traces": traces, "blocker": blocker,
            "replay": json.loads(replay.stdout)["run_id"]}


def assert_one_line(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    for text in expected:
        assert text in err


@pytest.mark.parametrize("command", [
    ("report", "--html", "{blocker}/report.html"),
    ("labels", "export", "--rubric", "refusal", "--n", "3", "--out", "{blocker}/batch"),
    ("gate", "--run", "{replay}", "--junit", "{blocker}/gate.xml"),
    ("gate", "--run", "{replay}", "--markdown", "{blocker}/gate.md"),
    ("schema", "trace", "--out", "{blocker}/trace.json"),
], ids=["report-html", "labels-export", "gate-junit", "gate-markdown", "schema-out"])
def test_unwritable_output_path_is_one_line(workdir, command, monkeypatch, capsys):
    args = [part.format(**workdir) for part in command]
    if command[0] != "schema":
        args += ["--db", str(workdir["db"])]
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert_one_line(code, err, "cannot use ", str(workdir["blocker"]), "give a path")


def test_db_under_a_file_is_one_line(workdir, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "run", "--traces", str(workdir["traces"]),
                            "--db", f"{workdir['blocker']}/sub/e.duckdb", "--no-preflight")
    assert_one_line(code, err, str(workdir["blocker"]))


def test_db_in_a_directory_that_cannot_be_created_is_one_line(workdir, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "run", "--traces", str(workdir["traces"]),
                            "--db", "/proc/no-such-dir/e.duckdb", "--no-preflight")
    assert_one_line(code, err, "/proc/no-such-dir")


def test_render_of_a_trace_file_that_is_not_utf8_is_one_line(tmp_path, monkeypatch, capsys):
    trace = tmp_path / "latin1.jsonl"
    trace.write_bytes('{"trace_id": "t", "output": "caf\u00e9"}\n'.encode("latin-1"))
    code, _, err = run_main(monkeypatch, capsys, "rubrics", "render", "refusal",
                            "--trace", str(trace))
    assert_one_line(code, err, str(trace), "UTF-8")


def test_render_of_a_rubric_file_that_is_not_utf8_is_one_line(tmp_path, monkeypatch, capsys):
    rubric = tmp_path / "refusal" / "v1.jinja"
    rubric.parent.mkdir()
    rubric.write_bytes(b"---\ncriterion: refusal\n\xff\n---\n")
    trace = tmp_path / "t.json"
    trace.write_text('{"trace_id": "t", "output": "ok"}', encoding="utf-8")
    monkeypatch.setenv("EVALUATOR_RUBRICS_DIR", str(tmp_path))
    code, _, err = run_main(monkeypatch, capsys, "rubrics", "render", "refusal",
                            "--trace", str(trace))
    assert_one_line(code, err, "not UTF-8")


def test_a_judge_path_that_does_not_exist_names_it_and_lists_the_judges(workdir, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "run", "--traces", str(workdir["traces"]), "--db",
                            str(workdir["db"]), "--judge", "../../x", "--no-preflight")
    assert_one_line(code, err, "judge '../../x' not found", "offline", "openai-gpt-4o-mini")
    assert "available judges: none" not in err


def test_traces_that_are_a_directory_say_so(workdir, tmp_path, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "run", "--traces", str(tmp_path), "--db",
                            str(workdir["db"]), "--no-preflight")
    assert_one_line(code, err, f"{tmp_path} is a directory")


def test_gate_takes_a_dataset_name_as_baseline_as_replay_does(workdir):
    runner = CliRunner()
    by_file = runner.invoke(cli, ["gate", "--run", str(workdir["replay"]), "--db", str(workdir["db"]),
                                  "--baseline", str(DATASET), "--json"])
    by_name = runner.invoke(cli, ["gate", "--run", str(workdir["replay"]), "--db", str(workdir["db"]),
                                  "--baseline", DATASET.stem, "--json"])
    assert by_name.exit_code == by_file.exit_code != 2, by_name.output
    assert json.loads(by_name.stdout)["rubrics"] == json.loads(by_file.stdout)["rubrics"]


def test_show_of_a_trace_that_was_not_sampled_says_only_sampled_traces_are_stored(workdir, monkeypatch,
                                                                                 capsys):
    with open(SAMPLE, encoding="utf-8") as handle:
        unsampled = json.loads(handle.readlines()[12])["trace_id"]  # the store holds the first 12
    code, _, err = run_main(monkeypatch, capsys, "show", unsampled, "--db", str(workdir["db"]))
    assert_one_line(code, err, f"{unsampled!r}", "not sampled", "only sampled traces are stored")


def test_a_read_past_the_read_memory_limit_is_one_line_naming_the_setting(workdir, tmp_path,
                                                                          monkeypatch, capsys):
    monkeypatch.setenv("EVALUATOR_READ_MEMORY_MB", "1")
    monkeypatch.setattr(read_memory, "_read_memory_mb", read_memory.read_memory_mb())  # restored after
    code, _, err = run_main(monkeypatch, capsys, "report", "--db", str(workdir["db"]), "--html",
                            str(tmp_path / "r.html"))
    assert code == 2 and err.startswith("error: Out of Memory Error")
    assert "raise EVALUATOR_READ_MEMORY_MB" in err and "now 1 MB" in err and len(err.splitlines()) == 1
