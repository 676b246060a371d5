"""Measure what each template of tests/data/escape_templates/ costs to load and render.

Each template runs twice, each time in its own process (address space capped, wall time capped)
that loads the rubric and renders it for an ordinary trace: once timed, once under tracemalloc
(which slows allocation-heavy code down). Printed per template: the outcome (the first words of
the RubricError, or what went wrong), the wall time of load + render, the process's peak RSS and
the Python allocation peak. The figures table in RELIABILITY.md section 4 comes from this script:

    .venv/bin/python scripts/template_attacks.py [NAME_SUBSTRING ...]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "escape_templates"
SECONDS = 30
ADDRESS_SPACE = 3 * 2**30
FRONT_MATTER = (CORPUS / "front_matter.yaml").read_text(encoding="utf-8")
"""The rubric header each template of the corpus is put under."""
CHILD = """
import json, sys, time, tracemalloc, resource
from pathlib import Path
from evaluator.core.errors import RubricError
from evaluator.core.records import Trace
from evaluator.rubrics import load_rubric, render
trace = Trace(trace_id="t", input="What is the refund window?", context=["Refunds: 30 days."],
              output="Refunds are accepted within 30 days. " * 300)
if sys.argv[2] == "memory":
    tracemalloc.start()
started = time.perf_counter()
try:
    render(load_rubric(Path(sys.argv[1])), trace)
    outcome = "RENDERED"
except RubricError as exc:
    outcome = str(exc).split(": ", 1)[-1]
except BaseException as exc:
    outcome = f"CRASH {type(exc).__name__}"
elapsed = time.perf_counter() - started
peak = tracemalloc.get_traced_memory()[1] if tracemalloc.is_tracing() else 0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"outcome": outcome[:90], "seconds": elapsed, "peak": peak, "rss": rss}))
"""


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def measure(template: Path, directory: Path) -> dict[str, object]:
    rubric = directory / template.stem / "escape" / "v1.jinja"
    rubric.parent.mkdir(parents=True)
    rubric.write_text(FRONT_MATTER + template.read_text(encoding="utf-8"), encoding="utf-8")
    timed = _run(rubric, "time")
    if "rss" in timed:
        timed["peak"] = _run(rubric, "memory").get("peak", 0)
    return timed


def _run(rubric: Path, mode: str) -> dict[str, object]:
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, str(rubric), mode], capture_output=True,
                              text=True, timeout=SECONDS, preexec_fn=_limit, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"outcome": f"TIMEOUT after {SECONDS} s", "seconds": float(SECONDS)}
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1][:80]
        return {"outcome": f"DIED rc={done.returncode}: {tail}",
                "seconds": time.perf_counter() - started}
    return json.loads(lines[-1])


def main(patterns: list[str]) -> None:
    templates = [path for path in sorted(CORPUS.glob("*.jinja"))
                 if not patterns or any(p in path.stem for p in patterns)]
    print("| template | outcome | seconds | peak RSS | tracemalloc peak |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as directory:
        for template in templates:
            result = measure(template, Path(directory))
            peak = f"{result['peak'] / 2**20:.1f} MB" if "peak" in result else "-"
            rss = f"{result['rss'] / 2**20:.0f} MB" if "rss" in result else "-"
            print(f"| {template.stem} | {result['outcome']} | {result['seconds']:.2f} | {rss} | "
                  f"{peak} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
