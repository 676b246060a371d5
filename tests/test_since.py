"""`--since` means one thing for evaluations: when they were judged (created_at), in the text,
JSON and HTML reports alike; an empty result says what it left out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from evaluator.cli import cli
from evaluator.core.records import Trace
from evaluator.core.rows import StoredTrace
from evaluator.store import Store
from tests.support.alert_streams import evaluation

OLD_TRACE = datetime(2020, 1, 1, tzinfo=UTC)
"""The app answered long ago (like the bundled sample data); the judge ran recently."""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "since.duckdb"
    now = datetime.now(UTC)
    recent = [evaluation(f"new-{i}", "relevance", now - timedelta(days=1), label="relevant", score=1.0)
              for i in range(3)]
    old = [evaluation(f"old-{i}", "relevance", now - timedelta(days=30), label="irrelevant", score=0.0)
           for i in range(2)]
    traces = [StoredTrace(Trace(trace_id=e.trace_id, input="q", output="a", start_time=OLD_TRACE),
                          "random", 1.0) for e in recent + old]
    Store.write_once(path, recent + old, traces)
    return path


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_report_json_counts_evaluations_judged_since(db):
    data = json.loads(invoke("report", "--db", str(db), "--json", "--since", "7d"))
    assert data["status_counts"]["scored"] == 3
    assert data["judged_before_since"] == 2
    everything = json.loads(invoke("report", "--db", str(db), "--json"))
    assert everything["status_counts"]["scored"] == 5 and everything["since"] is None


def test_html_report_since_filters_on_evaluation_time_not_trace_time(db, tmp_path):
    """Traces started in 2020, judged yesterday: `--since 7d` shows the 3 judged yesterday."""
    out = tmp_path / "r.html"
    invoke("report", "--db", str(db), "--html", str(out), "--since", "7d")
    html = out.read_text()
    assert "<b>3</b><span>evaluations</span>" in html
    assert "no evaluations judged since" not in html


def test_an_empty_result_says_what_it_left_out(db, tmp_path):
    text = invoke("report", "--db", str(db), "--since", "2099-01-01")
    assert "no evaluations judged since 2099-01-01 00:00 UTC (5 stored before)" in text
    out = tmp_path / "empty.html"
    invoke("report", "--db", str(db), "--html", str(out), "--since", "2099-01-01")
    assert "no evaluations judged since 2099-01-01 00:00 UTC (5 stored before)" in out.read_text()

