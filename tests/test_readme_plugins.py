"""The README's "Custom scorers and plugins" section: every snippet in it runs as written."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import evaluator.api.pytest_run  # noqa: F401  (loaded before pytester's in-process run, see test_pytest_plugin)
from evaluator.core.records import parse_trace
from evaluator.judges.scorers import code_scorer
from evaluator.rubrics import load_rubric

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "evaluator-plugin-example"

pytest_plugins = ["pytester"]


def snippets(language: str) -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Custom scorers and plugins\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def test_the_rubric_file_snippet_loads_and_scores(tmp_path):
    [text] = snippets("yaml")
    path = tmp_path / text.splitlines()[0].removeprefix("# ").strip()
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    rubric = load_rubric(path)
    verdicts = [asyncio.run(code_scorer(rubric).judge(rubric, parse_trace({"trace_id": "t", "output": out})))
                for out in ("Order ORD-123456 is on its way.", "It is on its way.")]
    assert [v.label for v in verdicts] == ["pass", "fail"]


def test_the_entry_points_snippet_is_the_example_plugins():
    [toml] = snippets("toml")
    assert toml.strip() in (EXAMPLE / "pyproject.toml").read_text(encoding="utf-8")


def test_the_python_api_snippet_runs():
    [api, _] = snippets("python")
    exec(compile(api, "README.md (Python API)", "exec"), {})


def test_the_pytest_snippet_passes_under_the_plugin(pytester):
    [_, test_file] = snippets("python")
    pytester.makepyfile(test_answers=test_file)
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
