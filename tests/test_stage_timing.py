"""The opt-in stage timer: nothing at all when off; CPU and call counts per stage when on."""

import json

from evaluator.core import stage_timing
from evaluator.core.stage_timing import ENV, timed


def busy(n: int) -> int:
    return sum(i * i for i in range(n))


def test_off_returns_the_function_itself(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert timed("render")(busy) is busy


def test_on_counts_cpu_and_calls_and_writes_a_snapshot(monkeypatch, tmp_path):
    prefix = tmp_path / "timings"
    monkeypatch.setenv(ENV, str(prefix))
    monkeypatch.setattr(stage_timing, "_totals", {})
    monkeypatch.setattr(stage_timing, "_writer", object())  # no background writer in tests
    wrapped = timed("test-stage")(busy)
    assert wrapped(20_000) == busy(20_000) and wrapped.__name__ == "busy"
    wrapped(20_000)
    stage_timing.write_snapshot()
    written = json.loads(next(tmp_path.glob("timings.*.json")).read_text())
    cpu_ns, calls = written["stages"]["test-stage"]
    assert calls == 2 and cpu_ns > 0
    assert written["process_cpu_ns"] >= cpu_ns
