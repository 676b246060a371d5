"""`evaluator run` throughput with the offline judge, and CLI start-up time."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "sample_traces.jsonl"


def _row(metric, value, unit, baseline=None, baseline_value=None, goal=None, ratio=None):
    if ratio is None and baseline_value:
        ratio = value / baseline_value
    return {"benchmark": "run", "metric": metric, "value": value, "unit": unit, "baseline": baseline,
            "baseline_value": baseline_value, "ratio": ratio, "goal": goal}


def _median_seconds(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(quick: bool = False) -> list[dict]:
    from evaluator.worker.embedded import run_embedded

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rate in (0.10, 1.0):
            report = run_embedded(SAMPLE, Path(tmp) / f"bench-{rate}.duckdb", "offline", rate)
            rows.append(_row(f"traces/s read+sampled (rate {rate:g})", report.traces_read / report.elapsed_s,
                             "traces/s"))
            rows.append(_row(f"evaluations/s stored, offline judge (rate {rate:g})",
                             report.evaluations / report.elapsed_s, "evals/s"))
    repeats = 3 if quick else 7
    python_start = _median_seconds([sys.executable, "-c", "pass"], repeats)
    help_start = _median_seconds([sys.executable, "-m", "evaluator", "--help"], repeats)
    rows.append(_row("`evaluator --help` start-up", help_start * 1000, "ms", "bare `python -c pass`",
                     python_start * 1000, goal="< 500 ms"))
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
