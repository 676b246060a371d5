"""The opt-in stage timer: nothing counted when off; CPU and call counts per stage when on."""

import json

from evaluator.core import stage_timing
from evaluator.core.stage_timing import timed


def busy(n: int) -> int:
    return sum(i * i for i in range(n))


def test_off_counts_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(stage_timing, "_prefix", None)
    monkeypatch.setattr(stage_timing, "_totals", {})
    wrapped = timed("render")(busy)
    assert wrapped(1_000) == busy(1_000) and wrapped.__name__ == "busy"
    stage_timing.write_snapshot()
    assert stage_timing._totals == {} and not list(tmp_path.iterdir())


def test_on_counts_cpu_and_calls_and_writes_a_snapshot(monkeypatch, tmp_path):
    prefix = tmp_path / "timings"
    monkeypatch.setattr(stage_timing, "_prefix", None)
    monkeypatch.setattr(stage_timing, "_totals", {})
    monkeypatch.setattr(stage_timing, "_writer", object())  # no background writer in tests
    wrapped = timed("test-stage")(busy)  # decorated before it is enabled, as at import time
    stage_timing.enable(str(prefix))
    assert wrapped(20_000) == busy(20_000) and wrapped.__name__ == "busy"
    wrapped(20_000)
    stage_timing.write_snapshot()
    written = json.loads(next(tmp_path.glob("timings.*.json")).read_text())
    cpu_ns, calls = written["stages"]["test-stage"]
    assert calls == 2 and cpu_ns > 0
    assert written["process_cpu_ns"] >= cpu_ns
