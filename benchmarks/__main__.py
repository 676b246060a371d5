"""Run every benchmark module, print one table, write BENCHMARKS.md with the machine it ran on.

Each module `benchmarks/bench_<name>.py` exposes `run(quick: bool = False) -> list[dict]` with
rows {benchmark, metric, value, unit, baseline, baseline_value, ratio, goal}. Baselines are
measured in the same run, because machines here are shared and noisy: compare ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def machine_description() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores{memory}, "
            f"Python {platform.python_version()}")


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def run_all(selected: list[str], quick: bool) -> tuple[list[dict], list[str]]:
    rows: list[dict] = []
    failures: list[str] = []
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    for name in modules:
        if selected and not any(s in name for s in selected):
            continue
        started = time.perf_counter()
        print(f"running {name} ...", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            rows.extend(module.run(quick=quick))
        except Exception:
            failures.append(f"{name}: {traceback.format_exc(limit=3)}")
            print(f"  FAILED: {failures[-1]}", file=sys.stderr)
        print(f"  done in {time.perf_counter() - started:.1f}s", flush=True)
    return rows, failures


def markdown(rows: list[dict], failures: list[str], command: str, quick: bool) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Command: `{command}`{' (quick mode)' if quick else ''}  ",
        f"Machine: {machine_description()}  ",
        f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}",
        "",
        "Every figure is measured in the same run as its baseline; ratios are what to compare "
        "across machines (this one is shared and noisy).",
        "",
        "| benchmark | metric | value | unit | baseline | baseline value | ratio | goal |",
        "|---|---|---:|---|---|---:|---:|---|",
    ]
    for r in rows:
        lines.append("| " + " | ".join([
            r["benchmark"], r["metric"], _fmt(r["value"]), r.get("unit") or "",
            r.get("baseline") or "-", _fmt(r.get("baseline_value")), _fmt(r.get("ratio")),
            r.get("goal") or "-",
        ]) + " |")
    if failures:
        lines += ["", "## Failed benchmarks", ""] + [f"- `{f.splitlines()[0]}`" for f in failures]
    notes = HERE / "NOTES.md"
    if notes.is_file():  # the written analysis survives regenerating the table
        lines += ["", notes.read_text(encoding="utf-8").rstrip()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("only", nargs="*", help="run only benchmark modules whose name contains one of these")
    parser.add_argument("--quick", action="store_true", help="smaller workloads (smoke test)")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    rows, failures = run_all(args.only, args.quick)
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Benchmarks", title_justify="left")
    for column in ("benchmark", "metric", "value", "unit", "baseline", "baseline value", "ratio", "goal"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["benchmark"], r["metric"], _fmt(r["value"]), r.get("unit") or "",
                      r.get("baseline") or "-", _fmt(r.get("baseline_value")), _fmt(r.get("ratio")),
                      r.get("goal") or "-")
    Console(width=200).print(table)
    command = "make bench" if not args.only else f"python -m benchmarks {' '.join(args.only)}"
    if not args.only:
        Path(args.output).write_text(markdown(rows, failures, command, args.quick), encoding="utf-8")
        print(f"wrote {args.output}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
