"""Small rough edges of the CLI (issue 17.8, 17.10): running `evaluator` after `make run`, the
lock check's advice, judge file names, union errors in datasets, one-line usage errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from evaluator.cli import cli, main
from evaluator.core.errors import ConfigError
from evaluator.core.settings import PROJECT_ROOT
from evaluator.judges.config import load_judge_config

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr("sys.argv", ["evaluator", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


def test_readme_says_how_to_run_evaluator_right_after_make_run():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    after_make = quick_start.split("make test", 1)[1]
    assert after_make.index(".venv/bin/evaluator") < after_make.index("`make run` needs no Redis")
    assert "source .venv/bin/activate" in after_make
    assert 'evaluator = "evaluator.cli:main"' in (PROJECT_ROOT / "pyproject.toml").read_text()


@pytest.fixture
def rubrics_dir(tmp_path) -> Path:
    directory = tmp_path / "rubrics"
    shutil.copytree(PROJECT_ROOT / "rubrics", directory)
    return directory


def test_lock_check_names_the_command_to_record_a_version(rubrics_dir, monkeypatch, capsys):
    source = (rubrics_dir / "refusal" / "v1.jinja").read_text(encoding="utf-8")
    unpublished = 1 + max(int(path.stem[1:]) for path in (rubrics_dir / "refusal").glob("v*.jinja"))
    (rubrics_dir / "refusal" / f"v{unpublished}.jinja").write_text(
        source.replace("version: 1", f"version: {unpublished}"), encoding="utf-8")
    monkeypatch.setenv("EVALUATOR_RUBRICS_DIR", str(rubrics_dir))
    code, err = run_main(monkeypatch, capsys, "rubrics", "lock", "--check")
    assert code == 2
    assert (f"refusal@v{unpublished} is missing from the lock: record it with "
            "`evaluator rubrics lock`") in err
    assert "update_lock" not in err


def test_readme_says_to_bump_the_version_of_a_new_rubric_file():
    assert "set\n`version: 2` in its front matter" in README


def test_a_judge_named_unlike_its_file_is_refused(tmp_path):
    (tmp_path / "fast.yaml").write_text("name: slow\nkind: offline\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"fast.yaml: name 'slow' differs from the file name: "
                                          r"rename the file slow.yaml, or set name: fast"):
        load_judge_config("fast", tmp_path)
    (tmp_path / "quiet.yaml").write_text("kind: offline\n", encoding="utf-8")
    assert load_judge_config("quiet", tmp_path).name == "quiet"


def test_datasets_validate_points_at_the_branch_meant(tmp_path):
    path = tmp_path / "items.jsonl"
    rows = [{"id": "a", "input": 5, "label_source": "human"},
            {"id": "b", "input": [{"content": "no role"}], "label_source": "human"}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    result = CliRunner().invoke(cli, ["datasets", "validate", str(path)])
    assert f"{path}:1: field 'input': Input should be a valid string or a valid" in result.output
    assert f"{path}:2: field 'input.0.role': Field required" in result.output
    assert "input.str" not in result.output and "list[Message]" not in result.output


@pytest.mark.parametrize(("args", "message"), [
    (("run", "--sample-rate", "x"), "error: Invalid value for '--sample-rate'"),
    (("nope",), "error: No such command 'nope'"),
    (("datasets", "build"), "error: Missing option '--name'"),
])
def test_usage_errors_are_one_line(args, message, monkeypatch, capsys):
    code, err = run_main(monkeypatch, capsys, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(message) and "--help`)" in err
