"""The ceilings the service runs under, measured against the local judge server (300 ms):

- judge-bound: the in-flight limit / judge latency (what the judge config allows per process);
- client-bound: bare `litellm.acompletion`, bare `openai.AsyncOpenAI` and a ready body posted
  with aiohttp alone, calls/s against the same server, with the same in-flight limit (what any
  service on that client could do) and with 256 in flight (the client's CPU ceiling, for sizing);
- dramatiq's own ceiling: a no-op async actor behind the same Redis, messages the size of ours.

Each client runs in a process of its own (`benchmarks.client_probe`), so its CPU is its own.
bench_service reports its throughput as a ratio of the tightest of these (`limits()`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procstat import ROOT, judge_server

LATENCY_MS = 300.0
IN_FLIGHT = 32
"""The judge config's default `limits.max_in_flight`."""
CEILING_IN_FLIGHT = 256
TRACES_PER_MESSAGE = 5
"""The span exporter's default batch."""
RUBRICS = 4
REDIS_URL = "redis://127.0.0.1:6379/12"
"""A database of its own, flushed before and after."""


@dataclass
class Limits:
    latency_ms: float
    in_flight: int
    clients: dict[tuple[str, int, int], dict]
    """(client, in-flight, processes) -> the probe's result (calls_per_s, cpu_ms_per_call)."""
    dramatiq: dict

    def judge_bound(self, processes: int) -> float:
        return self.in_flight * processes / (self.latency_ms / 1000)

    def client_bound(self, client: str, processes: int) -> float:
        return self.clients[(client, self.in_flight, processes)]["calls_per_s"]

    def dramatiq_bound(self) -> float:
        """Evaluations/s: no-op messages/s x the evaluations one message of ours carries."""
        return self.dramatiq["consume_per_s"] * TRACES_PER_MESSAGE * RUBRICS


_measured: dict[str, Limits] = {}
"""By server settings: bench_service reuses what bench_limits measured earlier in the run."""


def client_in_use() -> str:
    """The bare client matching how a judge config of an `openai/...` model calls by default.
    The openai transport posts with aiohttp directly (judges/transport_openai.py), so its bare
    counterpart is aiohttp, not the openai client: subtracting the openai client's CPU per call
    from the worker's (which never pays it) gave a negative "our own CPU" in BENCHMARKS.md."""
    from evaluator.judges.config import JudgeConfig

    client = JudgeConfig.model_fields.get("client")
    return "aiohttp" if client is not None and client.default in ("auto", "openai") else "litellm"


def _probe(kind: str, url: str, *extra: str, processes: int = 1) -> dict:
    """Run `processes` probes at once; calls/s add up, CPU per call is their mean."""
    command = [sys.executable, "-m", "benchmarks.client_probe", kind, url, *extra]
    children = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
                for _ in range(processes)]
    results = []
    for child in children:
        out, _ = child.communicate(timeout=300)
        if child.returncode:
            raise RuntimeError(f"client probe {kind} failed ({child.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    if processes == 1:
        return results[0]
    return {"calls_per_s": sum(r["calls_per_s"] for r in results),
            "cpu_ms_per_call": sum(r["cpu_ms_per_call"] for r in results) / processes}


def measure(url: str, quick: bool, latency_ms: float = LATENCY_MS, in_flight: int = IN_FLIGHT,
            processes: tuple[int, ...] = (1, 2)) -> Limits:
    seconds = "3" if quick else "8"
    clients = {}
    for client in ("litellm", "openai", "aiohttp"):
        for flight in (in_flight, CEILING_IN_FLIGHT):
            clients[(client, flight, 1)] = _probe(client, url, "--in-flight", str(flight),
                                                  "--seconds", seconds)
    for count in processes:
        if count > 1:
            clients[(client_in_use(), in_flight, count)] = _probe(
                client_in_use(), url, "--in-flight", str(in_flight), "--seconds", seconds,
                processes=count)
    dramatiq = _probe("dramatiq", REDIS_URL, "--messages", "500" if quick else "2000")
    return Limits(latency_ms, in_flight, clients, dramatiq)


def limits(url: str, quick: bool, latency_ms: float = LATENCY_MS) -> Limits:
    """The limits at these settings: measured once per run (the server is stateless)."""
    key = f"{latency_ms}:{quick}"
    if key not in _measured:
        _measured[key] = measure(url, quick, latency_ms)
    return _measured[key]


def rows(found: Limits) -> list[dict]:
    out = []
    latency = f"{found.latency_ms:g} ms judge"
    for count in (1, 2):
        out.append(_row(f"judge-bound limit, {count} process(es) ({found.in_flight} in flight per "
                        f"process / {latency})", found.judge_bound(count), "calls/s"))
    for (client, flight, count), result in sorted(found.clients.items()):
        where = f"{count} processes" if count > 1 else "one process"
        judge_bound = found.judge_bound(count) if flight == found.in_flight else None
        out.append(_row(f"client-bound: bare {client} calls/s, {flight} in flight, {where}",
                        result["calls_per_s"], "calls/s",
                        "judge-bound limit" if judge_bound else None, judge_bound))
        out.append(_row(f"client CPU per call: bare {client}, {flight} in flight, {where}",
                        result["cpu_ms_per_call"], "ms"))
    out.append(_row(f"dramatiq ceiling: no-op async actor, {found.dramatiq['message_bytes']:,}-byte "
                    "messages, same Redis", found.dramatiq["consume_per_s"], "messages/s"))
    out.append(_row(f"dramatiq ceiling in evaluations ({TRACES_PER_MESSAGE} traces x {RUBRICS} "
                    "rubrics per message)", found.dramatiq_bound(), "evals/s"))
    out.append(_row("dramatiq enqueue rate (one producer, one message per round trip)",
                    found.dramatiq["enqueue_per_s"], "messages/s"))
    return out


def _row(metric, value, unit, baseline=None, baseline_value=None, goal=None):
    ratio = value / baseline_value if baseline_value else None
    return {"benchmark": "limits", "metric": metric, "value": value, "unit": unit,
            "baseline": baseline, "baseline_value": baseline_value, "ratio": ratio, "goal": goal}


def run(quick: bool = False) -> list[dict]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with tempfile.TemporaryDirectory(prefix="bench-limits-") as workdir:
        server, url = judge_server(LATENCY_MS, Path(workdir))
        try:
            return rows(limits(url, quick))
        finally:
            server.stop()


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
