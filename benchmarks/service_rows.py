"""The table rows of bench_service: throughput against the limits, latency, CPU per stage, sizing."""

from __future__ import annotations

import statistics

from benchmarks.bench_limits import Limits, client_in_use
from benchmarks.e2e_support import Stored, Timeline, percentile

RUBRICS = 4
PRODUCER_STAGES = ("normalize", "mask", "sample", "enqueue")
WORKER_STAGES = ("render", "parse", "publish")
"""Timed in the worker; decode, records and metrics are not (their files are others')."""


def _row(metric, value, unit, baseline=None, baseline_value=None, goal=None, ratio=None):
    if ratio is None and baseline_value:
        ratio = value / baseline_value
    return {"benchmark": "service", "metric": metric, "value": value, "unit": unit,
            "baseline": baseline, "baseline_value": baseline_value, "ratio": ratio, "goal": goal}


def _series(values: list[int], every: int = 5) -> str:
    return " ".join(str(v) for v in values[::every]) or "-"


def throughput_rows(limits: Limits, count: int, phase: dict, stored: Stored) -> list[dict]:
    sat = phase["saturated"]
    t0, t1 = sat["t0"], sat["t1"]
    rate = stored.stored_per_s(t0, t1)
    judged = sum(t0 <= r[0] <= t1 for r in stored.rows)
    latencies = [r[3] for r in stored.rows if t0 <= r[0] <= t1]
    judge_bound = limits.judge_bound(count)
    client = client_in_use()
    where = f"{count} worker process{'es' if count > 1 else ''}"
    rows = [
        _row(f"evaluations/s stored at saturation, {where} ({limits.in_flight} in flight each, "
             f"{limits.latency_ms:g} ms judge)", rate, "evals/s",
             f"tightest limit (judge {judge_bound:.0f}, bare {client} "
             f"{limits.client_bound(client, count):.0f}, dramatiq {limits.dramatiq_bound():.0f})",
             phase["tightest"]),
        _row(f"evaluations/s stored at saturation, {where}, against the judge-bound limit", rate,
             "evals/s", "judge-bound limit (in flight / latency)", judge_bound,
             goal=">= 0.9 of the limit"),
        _row(f"judge latency per call in the ledger, p50 at saturation, {where}",
             statistics.median(latencies) * 1000 if latencies else float("nan"), "ms",
             "server latency", limits.latency_ms, goal="<= 1.1x the server's"),
        _row(f"judge calls in flight at saturation, {where} (Little's law)",
             stored.in_flight(t0, t1), "calls", "in-flight limit", limits.in_flight * count),
        _row(f"worker CPU per evaluation at saturation, {where}",
             sat["cpu"]["workers"] * 1000 / max(judged, 1), "ms",
             f"bare {client} CPU per call", limits.clients[(client, limits.in_flight, 1)]
             ["cpu_ms_per_call"]),
        _row(f"worker RSS, max over the run, {where}", sat["rss"], "MB", goal="< 350 MB"),
        _row(f"work queue depth at saturation, {where}, every 5 s: {_series(sat['depth'])}",
             max(sat["depth"], default=0), "messages (max)", "backlog queued (messages)",
             sat["backlog"]),
    ]
    return rows


def paced_rows(count: int, phase: dict, stored: Stored, timeline: Timeline,
               latency_ms: float) -> list[dict]:
    paced = phase["paced"]
    t0, t1 = paced["t0"], paced["t1"]
    made = paced["producer"]
    to_store, to_judged = stored.latencies(t0, t1)
    where = f"{count} worker process{'es' if count > 1 else ''}, paced at {paced['offered']:.0f} evals/s"
    judge_s = latency_ms / 1000
    rows = [
        _row(f"sampled traces/s in (exporter -> Redis), {where}",
             made["traces_enqueued"] / made["elapsed_s"], "traces/s", "offered (sampled traces/s)",
             paced["offered"] / RUBRICS),
        _row(f"evaluations/s stored, {where}", stored.stored_per_s(t0, t1), "evals/s",
             "offered", paced["offered"]),
    ]
    for q in (50, 95, 99):
        value = percentile(to_store, q)
        rows.append(_row(f"span end -> stored score, p{q}, {where} ({len(to_store)} evaluations)",
                         value, "s", "judge latency", judge_s,
                         goal="< judge + 2 s" if q == 95 else None))
    waited = made.get("span_end_to_enqueue_s", {})
    rows.append(_row(f"span end -> enqueued (the app's BatchSpanProcessor, default settings), p95, "
                     f"{where}", waited.get("95", float("nan")), "s"))
    rows.append(_row(f"span end -> judged (before the sink), p95, {where}",
                     percentile(to_judged, 95), "s", "judge latency", judge_s))
    lag = stored.sink_lag(t0, t1)
    rows.append(_row(f"judged -> stored (the sink's batching and write), p95, {where}",
                     percentile(lag, 95), "s"))
    window = timeline.window(t0, t1)
    rows.append(_row(f"queue depth, {where}: work messages every 5 s: "
                     f"{_series([p[1] for p in window])}; result entries: "
                     f"{_series([p[2] for p in window])}", max((p[1] for p in window), default=0),
                     "messages (max)"))
    return rows


def stage_rows(limits: Limits, phase: dict, stored: Stored, drain: dict) -> list[dict]:
    """CPU per evaluation by stage. App process and worker stages: EVALUATOR_STAGE_TIMINGS over
    the paced 1-process window. The worker's split: py-spy over the saturated 1-process window
    (when installed), else worker CPU minus the bare client's CPU per call. The sink: draining
    a backlog (at a trickle its per-batch open and checkpoint dominate, shown apart)."""
    paced, sat = phase["paced"], phase["saturated"]
    produced = max(paced["producer_evaluations"], 1)
    in_window = [r for r in stored.rows if paced["t0"] <= r[0] <= paced["t1"]]
    judged = max(len(in_window), 1)
    written = max(sum(paced["t0"] <= r[1] <= paced["t1"] for r in stored.rows), 1)
    client = client_in_use()
    client_ms = limits.clients[(client, limits.in_flight, 1)]["cpu_ms_per_call"]
    app = {name: paced["producer_stages"].get(name, 0.0) * 1000 / produced
           for name in PRODUCER_STAGES}
    rows = [_row(f"CPU per evaluation, {name} (app process, exporter)", ms * 1000, "µs")
            for name, ms in app.items()]
    rows += [_row(f"CPU per evaluation, {name} (worker)",
                  paced["worker_stages"].get(name, 0.0) * 1e6 / judged, "µs") for name in WORKER_STAGES]
    sat_judged = max(sum(sat["t0"] <= r[0] <= sat["t1"] for r in stored.rows), 1)
    worker_ms = sat["cpu"]["workers"] * 1000 / sat_judged
    split = sat["profile"] or {f"judge client (bare {client} CPU per call)": client_ms / worker_ms,
                               "everything else in the worker (by difference)":
                                   1 - client_ms / worker_ms}
    for name, share in split.items():
        rows.append(_row(f"CPU per evaluation, worker: {name}"
                         f"{' (py-spy)' if sat['profile'] else ''}", share * worker_ms * 1000, "µs",
                         "worker CPU per evaluation", worker_ms * 1000))
    client_share = next((share for name, share in split.items() if name.startswith("judge client")), 0)
    sink_ms = drain["cpu_ms_per_eval"]
    rows += [
        _row("CPU per evaluation, store: sink draining a backlog (decode + Arrow + DuckDB)",
             sink_ms * 1000, "µs"),
        _row("CPU per evaluation, sink at the paced trickle (a batch every 0.5 s)",
             paced["cpu"]["sink"] * 1e6 / written, "µs"),
        _row("CPU per evaluation, Redis server (paced)", paced["cpu"]["redis"] * 1e6 / written, "µs"),
    ]
    service = worker_ms * (1 - client_share) + sink_ms
    rows.append(_row("our own CPU per evaluation, service side (worker minus the judge client, "
                     "plus the sink)", service * 1000, "µs", f"bare {client} CPU per call",
                     client_ms * 1000, goal="< 1,000 µs"))
    rows.append(_row("our own CPU per evaluation, with the app-side exporter (normalize, mask, "
                     "sample, enqueue at 10 % sampling)", (service + sum(app.values())) * 1000, "µs",
                     f"bare {client} CPU per call", client_ms * 1000))
    return rows


def sizing_rows(limits: Limits, phases: dict, stored: Stored, queued_bytes: float,
                drain: dict) -> list[dict]:
    one = stored.stored_per_s(phases[1]["saturated"]["t0"], phases[1]["saturated"]["t1"])
    two = stored.stored_per_s(phases[2]["saturated"]["t0"], phases[2]["saturated"]["t1"])
    return [
        _row("evaluations answered from the judge cache (every benchmark prompt is unique)",
             stored.cached, "evaluations", "evaluations stored", len(stored.rows), goal="0"),
        _row("scaling: evaluations/s, 2 worker processes / 1 (2-core machine, judge server, sink "
             "and Redis on it too)", two, "evals/s", "1 worker process", one),
        _row(f"worker processes per 100 judge calls/s ({limits.in_flight} in flight, "
             f"{limits.latency_ms:g} ms judge)", 100 / one if one else float("nan"), "processes"),
        _row("sink drain rate, wall clock (a backlog of worker-shaped entries: 5 traces and "
             "their 20 evaluations each)", drain["evals_per_s"], "evals/s", goal=">= 10,000 evals/s"),
        _row("sink capacity on one core: evaluations per CPU-second of the sink process",
             1000 / drain["cpu_ms_per_eval"], "evals/s", goal=">= 10,000 evals/s"),
        _row("Redis memory per 1,000 queued sampled traces (work queue)",
             queued_bytes * 1000 / 2**20, "MB"),
        _row("Redis memory per 1,000 evaluations waiting for the sink (results stream)",
             drain["redis_bytes_per_eval"] * 1000 / 2**20, "MB"),
        _row("DuckDB growth per million evaluations (with their traces)",
             drain["db_bytes_per_eval"] * 1e6 / 2**20, "MB"),
    ]


def rows(limits: Limits, phases: dict, stored: Stored, timeline: Timeline, queued_bytes: float,
         drain: dict) -> list[dict]:
    out = []
    for count in sorted(phases):
        out += throughput_rows(limits, count, phases[count], stored)
        out += paced_rows(count, phases[count], stored, timeline, limits.latency_ms)
    out += stage_rows(limits, phases[1], stored, drain)
    out += sizing_rows(limits, phases, stored, queued_bytes, drain)
    return out
