"""Structured logs: JSON lines when stderr is not a terminal, readable lines on one, and the
trace_id / evaluation_id of the evaluation at hand on every line logged while judging it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import subprocess
import sys

import pytest

from evaluator.core.errors import ConfigError
from evaluator.core.logging_setup import (
    CHATTY_LIBRARY_LOGGERS,
    JsonLinesFormatter,
    build_handler,
    configure_logging,
    evaluation_context,
    resolve_level,
)
from evaluator.core.records import Trace
from evaluator.core.settings import Settings
from evaluator.core.work import SampleDecision, WorkItem
from evaluator.judges.base import JudgeVerdict
from evaluator.rubrics import RubricRegistry
from evaluator.worker.pipeline import evaluate_items


class TTYStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def capture(stream, json_lines=None) -> logging.Logger:
    logger = logging.getLogger(f"test.logging.{id(stream)}")
    logger.handlers[:] = [build_handler(stream, json_lines)]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_when_not_a_terminal():
    stream = io.StringIO()
    logger = capture(stream)
    logger.warning("judge slow: %d ms", 1200, extra={"judge": "gpt"})
    with evaluation_context("trace-1", "eval-1"):
        logger.info("parsed verdict")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed")
    first, second, third = lines(stream)
    assert first["message"] == "judge slow: 1200 ms" and first["level"] == "WARNING"
    assert first["judge"] == "gpt" and "trace_id" not in first
    assert (second["trace_id"], second["evaluation_id"]) == ("trace-1", "eval-1")
    assert "RuntimeError: boom" in third["exception"]
    assert first["ts"].endswith("+00:00")


def test_readable_lines_on_a_terminal():
    stream = TTYStream()
    logger = capture(stream)
    with evaluation_context("trace-2", "eval-2"):
        logger.warning("judge retry")
    text = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue())  # rich's colours
    assert "judge retry" in text and "trace_id=trace-2" in text and not text.startswith("{")


def test_explicit_ids_win_over_the_context():
    stream = io.StringIO()
    logger = capture(stream, json_lines=True)
    with evaluation_context("outer", "outer-eval"):
        logger.info("x", extra={"trace_id": "own", "evaluation_id": "own-eval"})
    assert lines(stream)[0]["trace_id"] == "own"


class LoggingJudge:
    """Logs from inside the judge call, as a real judge's retries or parse problems would."""

    name = "logging-judge"
    config_hash = "cfg"

    async def judge(self, rubric, trace, prompt) -> JudgeVerdict:
        await asyncio.sleep(0.001 * (hash(trace.trace_id) % 5))  # interleave the tasks
        logging.getLogger("evaluator.judges.test").warning("judging %s", trace.trace_id)
        return JudgeVerdict(status="scored", label=next(iter(rubric.labels)), reasoning="ok")


def test_every_line_about_an_evaluation_carries_its_ids():
    stream = io.StringIO()
    root = logging.getLogger()
    handler = build_handler(stream, json_lines=True)
    root.addHandler(handler)
    try:
        registry = RubricRegistry.load(Settings.from_env().rubrics_dir)
        rubrics = [registry.get("relevance"), registry.get("refusal")]
        items = [WorkItem(Trace(trace_id=f"tr-{i}", input="q?", output="a."),
                          SampleDecision(True, "random", 10.0)) for i in range(6)]
        evaluations = asyncio.run(evaluate_items(items, rubrics, LoggingJudge()))
    finally:
        root.removeHandler(handler)
    logged = [line for line in lines(stream) if line["logger"] == "evaluator.judges.test"]
    assert len(logged) == len(evaluations) == 12
    expected = {(e.trace_id, e.evaluation_id) for e in evaluations}
    assert {(line["trace_id"], line["evaluation_id"]) for line in logged} == expected
    assert all(line["message"] == f"judging {line['trace_id']}" for line in logged)


def test_level_from_option_environment_or_default(monkeypatch):
    from evaluator.core.settings import Settings

    monkeypatch.delenv("EVALUATOR_LOG_LEVEL", raising=False)
    assert resolve_level(None) == logging.WARNING
    assert resolve_level(None, "INFO") == logging.INFO
    monkeypatch.setenv("EVALUATOR_LOG_LEVEL", "debug")
    assert resolve_level(Settings.from_env().log_level) == logging.DEBUG
    assert resolve_level("error") == logging.ERROR
    with pytest.raises(ConfigError, match="unknown log level 'loud'"):
        resolve_level("loud")


def test_configure_logging_replaces_its_own_handler():
    root = logging.getLogger()
    level = root.level
    try:
        configure_logging("INFO", io.StringIO())
        configure_logging("INFO", io.StringIO())
        ours = [h for h in root.handlers if h.get_name() == "evaluator"]
        assert len(ours) == 1 and isinstance(ours[0].formatter, JsonLinesFormatter)
    finally:
        for handler in [h for h in root.handlers if h.get_name() == "evaluator"]:
            root.removeHandler(handler)
        root.setLevel(level)


def test_per_call_library_lines_only_at_debug():
    root = logging.getLogger()
    level = root.level
    try:
        configure_logging("INFO", io.StringIO())
        assert not logging.getLogger("httpx2").isEnabledFor(logging.INFO)
        assert logging.getLogger("LiteLLM").isEnabledFor(logging.WARNING)
        configure_logging("DEBUG", io.StringIO())
        assert logging.getLogger("httpx2").isEnabledFor(logging.DEBUG)
    finally:
        for handler in [h for h in root.handlers if h.get_name() == "evaluator"]:
            root.removeHandler(handler)
        root.setLevel(level)
        for name in CHATTY_LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_cli_logs_json_lines_when_piped(tmp_path):
    env = {**os.environ, "EVALUATOR_LOG_LEVEL": "DEBUG"}
    done = subprocess.run(
        [sys.executable, "-m", "evaluator", "run", "--db", str(tmp_path / "l.duckdb"), "--json",
         "--rubric", "refusal"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert records and all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    bad = subprocess.run([sys.executable, "-m", "evaluator", "--log-level", "loud", "report"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown log level" in bad.stderr
