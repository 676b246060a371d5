"""A misconfigured LLM judge is loud (issue 14.2): the preflight before `run`, `replay`,
`ingest --embedded` and `worker`, and the shipped `local` judge without a key. Every check goes
through the real client to the local OpenAI-compatible server (or a port nobody listens on)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import yaml

from evaluator.core.errors import JudgeUnavailableError
from evaluator.judges.config import JudgeConfig
from evaluator.judges.factory import build_llm_judge
from evaluator.judges.preflight import preflight
from evaluator.judges.runtime import JudgeRuntime
from tests.support.judging import KEY, KEY_ENV, judge_all, judge_config, prompt, write_judge
from tests.support.openai_server import OpenAIServer

REPO = Path(__file__).resolve().parents[1]


def dead_port() -> int:
    """A port on 127.0.0.1 that nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shipped_local_judge(directory: Path, base_url: str) -> Path:
    """judges/local.yaml as shipped, pointed at `base_url`."""
    data = yaml.safe_load((REPO / "judges" / "local.yaml").read_text(encoding="utf-8"))
    data["api_base"] = base_url
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "local.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return directory


def check(name: str, directory: Path, timeout_s: float = 5.0) -> str:
    with pytest.raises(JudgeUnavailableError) as caught:
        preflight(name, directory, timeout_s)
    message = str(caught.value)
    assert "\n" not in message, "one line"
    return message


def test_the_shipped_local_judge_works_against_a_server_that_needs_no_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = yaml.safe_load((REPO / "judges" / "local.yaml").read_text(encoding="utf-8"))
    monkeypatch.delenv(data["api_key_env"], raising=False)
    with OpenAIServer() as server:
        directory = shipped_local_judge(tmp_path, server.base_url)
        preflight("local", directory)
        config = JudgeConfig.model_validate({**data, "api_base": server.base_url})
        (verdict,) = judge_all(build_llm_judge(config, JudgeRuntime()), [prompt()])
    assert verdict.status == "scored", verdict.reason


def test_the_offline_judge_needs_no_preflight(tmp_path: Path) -> None:
    preflight("offline", REPO / "judges")


def test_a_dead_server_fails_fast_naming_the_address(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{dead_port()}/v1"
    directory = shipped_local_judge(tmp_path, url)
    started = time.monotonic()
    message = check("local", directory)
    assert time.monotonic() - started < 5
    assert f"judge 'local' is not reachable at {url}" in message
    assert "api_base" in message and "--no-preflight" in message


def test_a_server_that_errors_fails_with_its_status(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    with OpenAIServer(faults={"500": 1.0}) as server:
        write_judge(tmp_path, judge_config(server, "flaky"))
        message = check("flaky", tmp_path)
        assert server.stats.total == 2, "one retry for a transient failure"
    assert "judge 'flaky' failed a one-line test request" in message and "500" in message


def test_a_server_that_hangs_fails_within_the_timeout(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    with OpenAIServer(faults=["hang"] * 5) as server:
        write_judge(tmp_path, judge_config(server, "slow"))
        started = time.monotonic()
        message = check("slow", tmp_path, timeout_s=0.5)
        elapsed = time.monotonic() - started
    assert elapsed < 3, elapsed
    assert "did not answer a one-line test request within 0.5s" in message


def test_a_rejected_key_names_the_variable_and_never_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    with OpenAIServer(faults=["401"]) as server:
        write_judge(tmp_path, judge_config(server, "keyed"))
        message = check("keyed", tmp_path)
    assert f"${KEY_ENV}" in message and "401" in message
    assert KEY not in message


def test_a_hosted_judge_without_its_key_fails_before_any_request(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    message = check("openai-gpt-4o-mini", REPO / "judges")
    assert "set the environment variable OPENAI_API_KEY" in message


def test_a_judge_whose_fallback_answers_passes(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    url = f"http://127.0.0.1:{dead_port()}/v1"
    with OpenAIServer() as backup:
        write_judge(tmp_path, judge_config(backup, "backup"))
        primary = judge_config(backup, "primary", fallbacks=["backup"])
        write_judge(tmp_path, primary.model_copy(update={"api_base": url}))
        preflight("primary", tmp_path)
        assert backup.stats.total == 1


def test_a_panel_checks_every_llm_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    url = f"http://127.0.0.1:{dead_port()}/v1"
    with OpenAIServer() as good:
        write_judge(tmp_path, judge_config(good, "good"))
        write_judge(tmp_path, judge_config(good, "bad").model_copy(update={"api_base": url}))
        (tmp_path / "offline.yaml").write_text("name: offline\nkind: offline\n", encoding="utf-8")
        (tmp_path / "panel.yaml").write_text(
            "name: panel\nkind: panel\npanel: [good, offline, bad]\n", encoding="utf-8")
        message = check("panel", tmp_path)
    assert "judge 'bad' is not reachable" in message
