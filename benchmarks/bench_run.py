"""`evaluator run` (offline judge): fixed cost per run, throughput and peak RSS against the
code before issue 23 (the baseline commit, exported with `git archive` and run by the same
interpreter in the same benchmark), and CLI start-up time.

Trace files are generated here from the bundled sample (each copy gets a new trace id), never
committed; the memory rows stream them through a named pipe instead (a writer thread here, the
run reading the FIFO), so a million traces need no 2 GB file. Every run is its own
`evaluator run` process; peak RSS is that process's VmHWM or, when larger, the PSS of it and the
reading and judging processes it forks (big inputs, named pipes), summed, polled while it runs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "sample_traces.jsonl"
BASELINE_COMMIT = "b60902a"
"""main before issue 23: the embedded run through dramatiq's in-process broker."""
MEMORY_SIZES = (100_000, 300_000, 1_000_000)
QUICK_MEMORY_SIZES = (20_000, 60_000)
MEMORY_RATE = 0.1
"""The memory rows' sample rate (the default): a million traces at rate 1.0 take ~15 minutes here.
Before issue 23 the run held every sampled trace, so at 0.1 it would hold 100,000 at 1M."""
MEMORY_RATE_1_SIZES = (20_000, 100_000)
"""Sizes also measured at rate 1.0, every trace judged (quick mode: the first)."""


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


def write_traces(path: Path, count: int) -> Path:
    """`count` traces: the sample's, cycled, each with a trace id of its own (`path` may be a
    FIFO: this blocks until a reader opens it)."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    ids = [json.loads(line)["trace_id"] for line in lines]
    with open(path, "w", encoding="utf-8") as out:
        for n in range(count):
            k = n % len(lines)
            out.write(lines[k].replace(ids[k], f"{n:010d}{ids[k][10:]}", 1) + "\n")
    return path


def _streamed_traces(tmp: Path, count: int) -> tuple[Path, threading.Thread]:
    """A FIFO that a writer thread fills with `count` traces once a run opens it."""
    fifo = tmp / f"stream-{count}.fifo"
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    writer = threading.Thread(target=write_traces, args=(fifo, count), daemon=True)
    writer.start()
    return fifo, writer


def _baseline_tree(tmp: Path) -> Path | None:
    """The baseline commit's code, or None outside a git checkout that has it."""
    tree = tmp / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BASELINE_COMMIT, "evaluator",
                              "rubrics", "judges"], capture_output=True)
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def _peak_rss_mb(pid: int, done: threading.Event, peak: list[float],
                 timeline: list[tuple[float, float]] | None = None) -> None:
    """Poll the run's memory until `done`: the larger of its own high-water mark (VmHWM: the
    rusage of a child carries the parent's RSS at fork over, here the whole benchmark runner's)
    and the proportional set size (PSS: pages shared after a fork counted once) of it and the
    reading and judging processes it forks, summed. `timeline` gets each poll's own figure (the
    larger of the parent's RSS now and the tree's PSS) with its time, to see where a peak was."""
    started = time.perf_counter()
    while not done.wait(0.1):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        now = 0.0
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak[0] = max(peak[0], int(line.split()[1]) / 1024)
            elif line.startswith("VmRSS:"):
                now = int(line.split()[1]) / 1024
        now = max(now, sum(map(_pss_kb, _process_tree(pid))) / 1024)
        peak[0] = max(peak[0], now)
        if timeline is not None:
            timeline.append((time.perf_counter() - started, now))


def _process_tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [pid, *(child for found in children for child in _process_tree(int(found)))]


def _pss_kb(pid: int) -> int:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0)


def _run(tree: Path, traces: Path, db: Path, rate: float,
         timeline: list[tuple[float, float]] | None = None) -> tuple[float, float, dict]:
    """Wall seconds and peak RSS (MB) of one `evaluator run` process, and its summary
    (`timeline`: see _peak_rss_mb)."""
    for stale in (db, db.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [sys.executable, "-m", "evaluator", "run", "--traces", str(traces), "--db", str(db),
               "--sample-rate", str(rate), "--json"]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    done, peak = threading.Event(), [0.0]
    watcher = threading.Thread(target=_peak_rss_mb, args=(process.pid, done, peak, timeline),
                               daemon=True)
    watcher.start()
    out = process.stdout.read() if process.stdout else b""
    done.set()
    watcher.join()
    status = process.wait()
    wall = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"evaluator run in {tree} failed ({status})")
    return wall, peak[0], json.loads(out)


_TIMED_RUN = """
import sys, time
if sys.argv[3] == "without-pandas":
    sys.modules["pandas"] = None  # import pandas fails, as where it is not installed
import evaluator.cli, evaluator.worker.embedded, evaluator.monitoring.report
started = time.perf_counter()
evaluator.worker.embedded.run_embedded(sys.argv[1], sys.argv[2], "offline", 1.0)
print(time.perf_counter() - started)
"""
"""A run of one trace timed inside its process, after the imports a run makes (timing the
process and subtracting a separate import-only process left the imports' noise, +-0.3 s on a
loaded machine, in the difference).

Measured twice: as installed by `make install` (no pandas), and with pandas importable (the bench
extra installs it for the peer libraries). pyarrow imports pandas, when it can, at its first
conversion of a Python list, only to check whether the list is a pandas object (~250 ms on this
machine): the store binds small batches as lists without pyarrow (store.batches), so a short run
pays neither."""

PANDAS_CASES = {"without-pandas": "as `make install` installs it (no pandas)",
                "with-pandas": "with pandas installed"}


def _fixed_cost_rows(trees: dict[str, Path], tmp: Path, repeats: int) -> list[dict]:
    """A run of one trace (a new store file), minus interpreter start and imports."""
    one = write_traces(tmp / "one.jsonl", 1)
    fixed: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeats):  # interleaved: the machine's load hits all alike
        for case in PANDAS_CASES:
            for name, tree in trees.items():
                db = tmp / f"one-{name}.duckdb"
                for stale in (db, db.with_suffix(".duckdb.wal")):
                    stale.unlink(missing_ok=True)
                timed = subprocess.run([sys.executable, "-c", _TIMED_RUN, str(one), str(db), case],
                                       cwd=tree, check=True, capture_output=True, text=True,
                                       env={**os.environ, "PYTHONPATH": str(tree),
                                            "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
                fixed.setdefault((case, name), []).append(float(timed.stdout.split()[-1]))
    rows = []
    for case, installed in PANDAS_CASES.items():
        now = statistics.median(fixed[(case, "now")])
        before = statistics.median(fixed[(case, "baseline")]) if "baseline" in trees else None
        rows.append(_row(f"fixed cost per run beyond interpreter start and imports (1-trace file, "
                         f"new store, median), {installed}", now * 1000, "ms",
                         f"before issue 23 ({BASELINE_COMMIT})" if before else None,
                         before and before * 1000, goal="<= 300 ms"))
    return rows


def _throughput_rows(trees: dict[str, Path], tmp: Path, count: int, repeats: int) -> list[dict]:
    traces = write_traces(tmp / "throughput.jsonl", count)
    rates: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(repeats):
        for name, tree in trees.items():
            _, _, summary = _run(tree, traces, tmp / f"tp-{name}.duckdb", 1.0)
            rates[name].append(summary["traces_read"] / summary["elapsed_s"])
    now = statistics.median(rates["now"])
    before = statistics.median(rates["baseline"]) if "baseline" in rates else None
    return [_row(f"traces/s, offline judge, rate 1.0, every latest rubric ({count:,} traces, median of "
                 f"{repeats})", now, "traces/s", f"before issue 23 ({BASELINE_COMMIT})" if before
                 else None, before, goal=">= 2x baseline")]


def _tenths(timeline: list[tuple[float, float]]) -> list[float]:
    """The highest figure polled in each tenth of the run's wall time."""
    end = timeline[-1][0]
    highest = [0.0] * 10
    for at, megabytes in timeline:
        tenth = min(int(10 * at / end), 9)
        highest[tenth] = max(highest[tenth], megabytes)
    return highest


def _memory_rows(tmp: Path, sizes: tuple[int, ...], rate: float) -> list[dict]:
    rows = []
    for count in sizes:
        fifo, writer = _streamed_traces(tmp, count)
        timeline: list[tuple[float, float]] = []
        wall, rss, summary = _run(ROOT, fifo, tmp / "memory.duckdb", rate, timeline)
        writer.join()
        fifo.unlink()
        rows.append(_row(f"peak RSS, offline judge, rate {rate:g}, {count:,} traces streamed "
                         f"({summary['sampled']:,} judged x every latest rubric, "
                         f"{summary['traces_read'] / summary['elapsed_s']:,.0f} traces/s)", rss,
                         "MB", goal="<= 500 MB at 1M, flat"))
    first = rows[0]["value"]
    for row in rows[1:]:
        row["baseline"], row["baseline_value"] = f"peak RSS at {sizes[0]:,} traces", first
        row["ratio"] = row["value"] / first
    if timeline:
        tenths = _tenths(timeline)
        rows.append(_row(
            f"peak RSS in the last tenth of the {sizes[-1]:,}-trace run (rate {rate:g}; each "
            f"tenth's peak: {', '.join(f'{mb:.0f}' for mb in tenths)} MB)", tenths[-1], "MB",
            "its second tenth (after warm-up)", tenths[1], goal="flat after warm-up"))
        rows[-1]["ratio"] = tenths[-1] / tenths[1]
    return rows


def run(quick: bool = False) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        trees = {"now": ROOT}
        baseline = _baseline_tree(tmp)
        if baseline is not None:
            trees["baseline"] = baseline
        rows += _fixed_cost_rows(trees, tmp, 3 if quick else 5)
        rows += _throughput_rows(trees, tmp, 5_000 if quick else 20_000, 1 if quick else 3)
        rows += _memory_rows(tmp, MEMORY_RATE_1_SIZES[:1] if quick else MEMORY_RATE_1_SIZES, 1.0)
        rows += _memory_rows(tmp, QUICK_MEMORY_SIZES if quick else MEMORY_SIZES, MEMORY_RATE)
    repeats = 3 if quick else 7
    python_start = _median_seconds([sys.executable, "-c", "pass"], repeats)
    help_start = _median_seconds([sys.executable, "-m", "evaluator", "--help"], repeats)
    rows.append(_row("`evaluator --help` start-up", help_start * 1000, "ms", "bare `python -c pass`",
                     python_start * 1000, goal="< 500 ms"))
    return rows


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
