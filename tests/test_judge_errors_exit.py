"""A misconfigured or failing judge is loud at the command line (issue 14.2): the preflight stops
`run`, `replay`, `ingest --embedded` and `worker` before any work (exit 2, one line), the summary
names the top error reasons with counts, and too many errors exit 3."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from evaluator.cli import cli, main
from evaluator.monitoring.run_errors import JUDGE_ERRORS_EXIT, RunErrors
from evaluator.store import RubricSummary
from tests.support.judging import KEY, KEY_ENV, judge_config, write_judge
from tests.support.openai_server import OpenAIServer

TRACES = [{"trace_id": f"t{i}", "input": f"What does plan {i} include?",
           "context": [f"Plan {i} includes 10 GB of storage."],
           "output": f"Plan {i} includes 10 GB of storage."} for i in range(3)]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EVALUATOR_JUDGES_DIR", str(tmp_path / "judges"))
    monkeypatch.setenv("EVALUATOR_DB", str(tmp_path / "e.duckdb"))
    monkeypatch.setenv(KEY_ENV, KEY)
    (tmp_path / "judges").mkdir()
    (tmp_path / "judges" / "offline.yaml").write_text("name: offline\nkind: offline\n")
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(json.dumps(t) + "\n" for t in TRACES), encoding="utf-8")
    dataset = tmp_path / "items.jsonl"
    dataset.write_text("".join(json.dumps({"id": t["trace_id"], "input": t["input"],
                                           "context": t["context"], "output": t["output"],
                                           "label_source": "human"}) + "\n"
                               for t in TRACES), encoding="utf-8")
    return tmp_path


def dead_judge(directory: Path, name: str = "dead") -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = judge_config(OpenAIServer(port=port), name, limits={"max_attempts": 3})
    write_judge(directory / "judges", config)


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`evaluator ARGS` as the installed command runs it: exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["evaluator", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code), capsys.readouterr().err


@pytest.mark.parametrize("command", [
    ["run", "--traces", "{dir}/traces.jsonl", "--sample-rate", "1", "--judge", "dead"],
    ["ingest", "{dir}/traces.jsonl", "--embedded", "--sample-rate", "1", "--judge", "dead"],
    ["replay", "{dir}/items.jsonl", "--judge", "dead"],
])
def test_the_preflight_stops_a_command_before_any_work(
        env: Path, command: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    dead_judge(env)
    started = time.monotonic()
    code, err = run_main([part.format(dir=env) for part in command], monkeypatch, capsys)
    assert time.monotonic() - started < 10
    assert code == 2
    assert err.count("\n") == 1 and "judge 'dead' is not reachable at http://127.0.0.1:" in err
    assert not (env / "e.duckdb").exists(), "no run was started"


def test_the_worker_preflight_checks_the_default_judge(
        env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    dead_judge(env)
    monkeypatch.setenv("EVALUATOR_JUDGE", "dead")
    monkeypatch.setenv("EVALUATOR_REDIS_URL", "redis://127.0.0.1:1/0")
    code, err = run_main(["worker"], monkeypatch, capsys)
    assert code == 2 and "judge 'dead' is not reachable" in err


def test_a_dead_judge_without_preflight_fails_fast_with_reasons_and_exit_3(env: Path) -> None:
    """Before: exit 0, error counts without a reason, 212 s for 3 traces."""
    dead_judge(env)
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["run", "--traces", str(env / "traces.jsonl"),
                                      "--sample-rate", "1", "--judge", "dead", "--no-preflight"])
    elapsed = time.monotonic() - started
    assert result.exit_code == JUDGE_ERRORS_EXIT, result.output
    assert elapsed < 20, elapsed
    assert "errors: 12 of 12 evaluations (100.0%), the judge never answered" in result.output
    assert "APIConnectionError" in result.output
    assert "judge unavailable (circuit open)" in result.output


def test_replay_exits_3_past_the_configured_share_and_0_below_it(env: Path) -> None:
    with OpenAIServer(faults=["500"] * 8) as server:
        write_judge(env / "judges", judge_config(server, "flaky", limits={"max_attempts": 1},
                                                 breaker={"consecutive_failures": 100}))
        args = ["replay", str(env / "items.jsonl"), "--judge", "flaky", "--no-preflight",
                "--concurrency", "1", "--json"]
        result = CliRunner().invoke(cli, [*args, "--max-error-share", "0.9"])
        assert result.exit_code == 0, result.output
        errors = json.loads(result.stdout)["errors"]
        assert errors["errors"] == 8 and errors["top_reasons"][0]["count"] == 8
        server.set_faults(["500"] * 100)
        result = CliRunner().invoke(cli, [*args, "--run-id", "second"])
    assert result.exit_code == JUDGE_ERRORS_EXIT, result.output


def summary(evaluated: int, scored: int, errors: int, skipped: int = 0) -> RubricSummary:
    return RubricSummary("hallucination", 1, "j", evaluated, scored, scored, 1.0, 1.0, 1.0,
                         errors=errors, skipped=skipped,
                         unscored=evaluated - scored - errors - skipped)


@pytest.mark.parametrize(("summaries", "max_share", "fails"), [
    ([summary(10, 0, 1, skipped=9)], None, True),    # the judge never answered: any error
    ([summary(10, 5, 5)], None, False),              # half: not more than half
    ([summary(10, 4, 6)], None, True),
    ([summary(10, 9, 1)], 0.05, True),
    ([summary(10, 10, 0)], 0.0, False),
])
def test_the_error_share_rule(summaries: list[RubricSummary], max_share: float | None,
                              fails: bool) -> None:
    assert RunErrors.of(summaries).too_many(max_share) is fails
