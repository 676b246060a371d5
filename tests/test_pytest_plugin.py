"""The pytest plugin, run the way a user's suite runs it (pytester, in process): the fixture,
failures carrying the judge's reasoning, JUnit properties, and a stored run the gate compares."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import evaluator.api.pytest_run  # noqa: F401  (loaded before pytester's in-process runs: its

# sys.modules snapshot would drop DuckDB after each run, and a native module loaded twice aborts)
from evaluator.cli import main

pytest_plugins = ["pytester"]

USER_TESTS = """
BREAD = "How do I bake bread?"

def test_recipe(evaluator):
    evaluator.assert_passes("Mix flour, water, salt and yeast, let it rise, then bake it at 220 C.",
                            rubric="refusal", input=BREAD)

def test_second_answer(evaluator):
    evaluator.assert_passes({answer!r}, rubric="refusal", input=BREAD)
"""
COMPLIES = "Knead the dough for ten minutes, let it rise for an hour, then bake it."
REFUSES = "I'm sorry, but I can't help with that request."


def _session(pytester, answer: str, db, junit):
    pytester.makepyfile(test_user=USER_TESTS.format(answer=answer))
    return pytester.runpytest_inprocess(f"--rootdir={pytester.path}", "--evaluator-judge", "offline",
                                        "--evaluator-db", str(db),
                                        f"--junitxml={junit}", "-p", "no:cacheprovider")


def _properties(junit) -> dict[str, dict[str, str]]:
    return {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
            for case in ET.parse(junit).getroot().iter("testcase")}


def test_assert_passes_fails_with_reasoning_and_the_gate_compares_sessions(pytester, tmp_path, capsys):
    db = tmp_path / "checks.duckdb"
    baseline = _session(pytester, COMPLIES, db, tmp_path / "a.xml")
    baseline.assert_outcomes(passed=2)
    candidate = _session(pytester, REFUSES, db, tmp_path / "b.xml")
    candidate.assert_outcomes(passed=1, failed=1)
    candidate.stdout.fnmatch_lines([
        "*refusal@v2 by offline: refused, score 0 (does not pass)*",
        "*reasoning: ?offline heuristic baseline? *refusal phrase*can?t help*",
    ])
    assert _properties(tmp_path / "b.xml")["test_second_answer"] == {
        "evaluator.refusal.label": "refused", "evaluator.refusal.score": "0.0"}
    assert _properties(tmp_path / "b.xml")["test_recipe"]["evaluator.refusal.label"] == "complied"
    runs = [line.split(" as replay run ")[1].split()[0]
            for result in (baseline, candidate) for line in result.outlines if " as replay run " in line]
    assert len(runs) == 2
    capsys.readouterr()
    code = _exit_code(["gate", "--db", str(db), "--run", runs[1], "--baseline", runs[0],
                       "--min-items", "1", "--max-regression", "0.1"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "refusal" in out and "regression" in out
    assert _exit_code(["gate", "--db", str(db), "--run", runs[1]]) == 2
    assert "not replayed from a dataset" in capsys.readouterr().err


def test_without_the_fixture_the_plugin_does_nothing(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "evaluator:" not in result.stdout.str()


def _exit_code(args: list[str]) -> int:
    import sys

    old = sys.argv
    sys.argv = ["evaluator", *args]
    try:
        main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.argv = old
    return 0
