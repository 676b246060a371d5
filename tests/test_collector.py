"""`evaluator run` collects garbage at a bulk pace (evaluator.core.collector) and keeps big blocks
mapped (evaluator.core.allocator), issue 23 item 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import evaluator.cli
from evaluator.cli import cli
from evaluator.core.collector import BULK_GEN0

ROOT = Path(__file__).resolve().parent.parent


def test_bulk_work_freezes_what_exists_and_collects_the_young_less_often():
    code = ("import gc; from evaluator.core.collector import for_bulk_work; before = gc.get_threshold(); "
            "for_bulk_work(); import json; "
            "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count() > 0]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    before, after, frozen = json.loads(out)
    assert after == [BULK_GEN0, *before[1:]] and frozen


def test_evaluator_run_works_at_the_bulk_pace(tmp_path, monkeypatch):
    called: list[bool] = []
    monkeypatch.setattr(evaluator.cli, "for_bulk_work", lambda: called.append("collector"))
    monkeypatch.setattr(evaluator.cli, "keep_big_blocks_mapped", lambda: called.append("allocator"))
    traces = tmp_path / "t.jsonl"
    traces.write_text((ROOT / "datasets" / "sample_traces.jsonl").read_text(encoding="utf-8")
                      .splitlines()[0] + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "--traces", str(traces), "--db", str(tmp_path / "e.duckdb"),
                                      "--sample-rate", "1.0", "--json"])
    assert result.exit_code == 0, result.output
    assert called == ["collector", "allocator"]
