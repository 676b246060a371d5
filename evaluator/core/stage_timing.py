"""Opt-in CPU time per pipeline stage, for benchmarks and profiling.

Set `EVALUATOR_STAGE_TIMINGS=<path prefix>` (Settings.stage_timings) and the process's entry
point (the `evaluator` command, the span exporter) calls `enable(prefix)`: from then on every
function decorated with `@timed("<stage>")` adds its thread CPU time (`time.thread_time_ns`) and
a call count to that stage. Once a second, and at exit, the process writes `<prefix>.<pid>.json`:
`{"pid", "wall", "process_cpu_ns", "stages": {stage: [cpu_ns, calls]}}`, cumulative, so a
reader takes the difference of two snapshots. Nested decorated calls are counted in both stages.

Off (the default), a decorated call costs one check of a module flag.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

FLUSH_EVERY_S = 1.0

F = TypeVar("F", bound=Callable)

_totals: dict[str, list[int]] = {}
_lock = threading.Lock()
_writer: threading.Thread | None = None
_prefix: str | None = None


def enable(prefix: str) -> None:
    """Count stages from now on and write snapshots to `<prefix>.<pid>.json`."""
    global _prefix
    _prefix = prefix


def timed(stage: str) -> Callable[[F], F]:
    """Decorator: count the (synchronous) function's CPU time under `stage` when enabled."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            if _prefix is None:
                return function(*args, **kwargs)
            started = time.thread_time_ns()
            try:
                return function(*args, **kwargs)
            finally:
                _add(stage, time.thread_time_ns() - started)

        return wrapper  # type: ignore[return-value]

    return decorate


def _add(stage: str, cpu_ns: int) -> None:
    with _lock:
        entry = _totals.get(stage)
        if entry is None:
            entry = _totals[stage] = [0, 0]
            _start_writer()
        entry[0] += cpu_ns
        entry[1] += 1


def snapshot() -> dict:
    with _lock:
        stages = {name: list(entry) for name, entry in _totals.items()}
    return {"pid": os.getpid(), "wall": time.time(), "process_cpu_ns": time.process_time_ns(),
            "stages": stages}


def write_snapshot() -> None:
    if _prefix is None:
        return
    target = Path(f"{_prefix}.{os.getpid()}.json")
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(snapshot()), encoding="utf-8")
    temporary.replace(target)  # readers never see a half-written file


def _start_writer() -> None:
    """Called under _lock on the first timed call of the process."""
    global _writer
    if _writer is not None:
        return

    def loop() -> None:
        while True:
            time.sleep(FLUSH_EVERY_S)
            write_snapshot()

    _writer = threading.Thread(target=loop, name="stage-timings", daemon=True)
    _writer.start()
    atexit.register(write_snapshot)
