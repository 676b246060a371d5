"""Read commands against a growing store: wall time and peak RSS of each, at a small store (the
baseline, same run) and at 4,000,000 evaluations (issue 23, item 3: at most 2 s and 400 MB).

The store is built in DuckDB SQL (INSERT ... SELECT FROM range(n)): production traces with four
rubrics each (about one in seven failing), their judge-call ledger rows, human labels (two
annotators) on 1 % of the traces, and two completed replay runs for the gate. Evaluations spread
over the week before the build, so the alert windows hold traffic. A built store is kept under
.bench-cache/ (gitignored), keyed by its size, the schema version and GENERATOR_VERSION; a store
reused later has its timestamps moved forward to keep the last week. Each command runs as
`python -m evaluator ...` in its own process: wall time, and peak RSS from os.wait4.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from evaluator.store import LATEST_VERSION, Store, latest_queries

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench-cache"
GENERATOR_VERSION = 1
"""Bump when the generated rows change: cached stores of an older version are rebuilt."""

RUBRICS = ("hallucination", "faithfulness", "relevance", "refusal")
# (passing labels..., failing label) per rubric, as the bundled v1 rubric files define them
LABELS = {
    "hallucination": ("factual", "factual", "factual", "hallucinated"),
    "faithfulness": ("faithful", "mostly_faithful", "faithful", "unfaithful"),
    "relevance": ("relevant", "mostly_relevant", "relevant", "irrelevant"),
    "refusal": ("complied", "complied", "complied", "refused"),
}
SCORES = {"factual": 1.0, "hallucinated": 0.0, "faithful": 1.0, "mostly_faithful": 0.75,
          "unfaithful": 0.0, "relevant": 1.0, "mostly_relevant": 0.75, "irrelevant": 0.0,
          "complied": 1.0, "refused": 0.0}
WEEK_S = 7 * 86_400
REPLAY_ITEMS = 2_000
GOAL_S, GOAL_MB = 2.0, 400.0


def _row(metric, value, unit, baseline=None, baseline_value=None, goal=None):
    ratio = value / baseline_value if baseline_value else None
    return {"benchmark": "reads", "metric": metric, "value": value, "unit": unit,
            "baseline": baseline, "baseline_value": baseline_value, "ratio": ratio, "goal": goal}


def _label_sql(rubric: str, pick: str) -> str:
    """A CASE choosing the rubric's label by `pick` (0..99): 86 % pass, 14 % fail."""
    passing_a, passing_b, passing_c, failing = LABELS[rubric]
    return (f"CASE WHEN {pick} < 14 THEN '{failing}' WHEN {pick} < 30 THEN '{passing_b}'"
            f" WHEN {pick} < 60 THEN '{passing_c}' ELSE '{passing_a}' END")


def _score_sql(label: str) -> str:
    cases = " ".join(f"WHEN '{name}' THEN {score}" for name, score in SCORES.items())
    return f"CASE {label} {cases} END"


_TRACES = """
INSERT INTO traces (trace_id, trace_json, model, provider, prompt_version, status, feedback,
                    finish_reason, sample_reason, sample_weight, start_time, received_at,
                    input_hash)
SELECT trace_id,
       to_json(struct_pack(
           trace_id := trace_id, span_id := span_id, input := question, system := $system,
           context := [doc || ' The office opens at ' || (i % 12 + 7) || ' am.', $doc2],
           output := answer, model := model, provider := 'openai',
           input_tokens := 600 + i % 400, output_tokens := 80 + i % 120,
           latency_ms := 400.0 + i % 900, status := status, error := NULL,
           finish_reason := 'stop', feedback := feedback, session_id := 's' || (i // 7),
           user_id := 'u' || (i % 5000), prompt_version := 'v' || (i % 3 + 1),
           tags := ['rag', 'prod'], metadata := {'tenant': 't' || (i % 20)},
           start_time := strftime(start_time, '%Y-%m-%dT%H:%M:%S.%fZ'),
           end_time := strftime(start_time + INTERVAL 1 SECOND, '%Y-%m-%dT%H:%M:%S.%fZ'),
           truncated := []::VARCHAR[],
           input_hash := sha256('"' || question || '"'), pii_masked := true))::VARCHAR,
       model, 'openai', 'v' || (i % 3 + 1), status, feedback, 'stop',
       CASE WHEN feedback = 'negative' THEN 'negative_feedback' ELSE 'random' END,
       CASE WHEN feedback = 'negative' THEN 1.0 ELSE 10.0 END, start_time, start_time,
       sha256('"' || question || '"')
FROM (
    SELECT i, md5('trace' || i) AS trace_id, substr(md5('span' || i), 1, 16) AS span_id,
           -- one distinct question per two traces: production repeats itself
           ['How far is store ', 'When does branch ', 'Who manages office ',
            'What is the refund policy of shop '][i % 4 + 1] || (i // 8) || ' from <PERSON_1>?'
               AS question,
           ['Store ', 'Branch ', 'Office ', 'Shop '][i % 4 + 1] || (i // 8)
               || ' is open on weekdays and the answer is in the second document, as the'
               || ' manager <PERSON_1> confirmed in writing last week.' AS answer,
           'Document about location ' || (i // 8) || ': ' || repeat('It serves the district. ', 8)
               AS doc,
           ['gpt-4o-mini', 'gpt-4o', 'claude-3-5-sonnet'][i % 3 + 1] AS model,
           CASE WHEN i % 97 = 0 THEN 'error' ELSE 'ok' END AS status,
           CASE WHEN i % 53 = 0 THEN 'negative' WHEN i % 11 = 0 THEN 'positive' END AS feedback,
           $anchor - to_seconds(($week * (n - i)) // n) AS start_time
    FROM range($n) AS t(i), (SELECT $n::BIGINT AS n)
)
"""

_EVALUATIONS = """
INSERT INTO evaluations (evaluation_id, trace_id, rubric, rubric_version, rubric_hash, judge,
    judge_hash, label, score, passed, reasoning, status, reason, raw_reply, input_tokens,
    output_tokens, cost_usd, latency_ms, attempts, cached, prompt_hash, sample_reason,
    sample_weight, truncated, run_id, created_at)
SELECT md5(trace_id || rubric), trace_id, rubric, 1, sha256(rubric), judge, sha256(judge),
       label, score, score >= threshold,
       'The answer names the location and the opening days; the second document supports '
           || 'both, and nothing in it is contradicted. Label: ' || label || '.',
       'scored', NULL, '{"reasoning": "...", "label": "' || label || '"}',
       850 + i % 300, 60 + i % 90, 0.00021, 700.0 + i % 800, 1, false,
       sha256(trace_id || rubric || 'prompt'), sample_reason, sample_weight, false, NULL,
       start_time + to_seconds(2 + i % 5)
FROM (
    SELECT t.*, r.rubric, r.threshold,
           CASE WHEN hash(t.i, r.rubric) % 5 = 0 THEN 'openai/gpt-4o' ELSE 'openai/gpt-4o-mini'
           END AS judge,
           {label} AS label
    FROM (SELECT row_number() OVER () - 1 AS i, trace_id, sample_reason, sample_weight,
                 start_time FROM traces) t,
         (VALUES ('hallucination', 0.5), ('faithfulness', 0.7), ('relevance', 0.7),
                 ('refusal', 0.75)) r(rubric, threshold)
) CROSS JOIN LATERAL (SELECT {score} AS score)
"""

_JUDGE_CALLS = """
INSERT INTO judge_calls (call_id, evaluation_id, trace_id, rubric, rubric_version, run_id, judge,
    model, transport, sample, attempt, status, http_status, error_class, input_tokens,
    output_tokens, cost_usd, latency_ms, cached, created_at)
SELECT md5('call' || evaluation_id), evaluation_id, trace_id, rubric, rubric_version, run_id,
       judge, substr(judge, 8), 'openai', 0, 1, 'ok', 200, NULL, input_tokens, output_tokens,
       cost_usd, latency_ms, false, created_at
FROM evaluations
"""

# 1 % of the traces labelled by annotator a, half of those also by b; a agrees with the judge
# 80 % of the time.
_HUMAN_LABELS = """
INSERT INTO human_labels (label_id, trace_id, rubric, rubric_version, label, score, annotator,
                          note, source, imported_at)
SELECT md5(annotator || trace_id || rubric), trace_id, rubric, 1,
       CASE WHEN hash(annotator, evaluation_id) % 5 = 0
            THEN CASE WHEN passed THEN fail_label ELSE pass_label END ELSE label END,
       NULL, annotator, NULL, 'bench', created_at + INTERVAL 1 DAY
FROM (
    SELECT e.*, a.annotator,
           {fail} AS fail_label, {pass} AS pass_label
    FROM evaluations e, (VALUES ('ann-a'), ('ann-b')) a(annotator)
    WHERE e.run_id IS NULL AND hash(e.trace_id) % 100 = 0
      AND (a.annotator = 'ann-a' OR hash(e.trace_id) % 200 = 0)
)
"""

_REPLAY_RUNS = """
INSERT INTO runs (run_id, kind, started_at, finished_at, status, params)
VALUES ('bench-baseline', 'replay', $anchor, $anchor, 'completed', '{"dataset": "bench.jsonl"}'),
       ('bench-candidate', 'replay', $anchor, $anchor, 'completed', '{"dataset": "bench.jsonl"}');
INSERT INTO replay_items (run_id, item_id, position, trace_id, item_json, status, output,
                          updated_at)
SELECT run_id, item_id, i, run_id || '/' || item_id,
       '{"id":"' || item_id || '","input":"Question ' || i || '?","context":[],"output":"Answer '
           || i || '.","expected":{},"label_source":"judge","metadata":{}}',
       'done', 'Answer ' || i || '.', $anchor
FROM range($items) t(i), (SELECT substr(md5('item' || i), 1, 16) AS item_id),
     (VALUES ('bench-baseline'), ('bench-candidate')) r(run_id);
INSERT INTO evaluations (evaluation_id, trace_id, rubric, rubric_version, rubric_hash, judge,
    judge_hash, label, score, passed, reasoning, status, raw_reply, input_tokens, output_tokens,
    cost_usd, latency_ms, attempts, cached, prompt_hash, sample_reason, sample_weight, truncated,
    run_id, created_at)
SELECT md5(r.trace_id || rubric), r.trace_id, rubric, 1, sha256(rubric), 'openai/gpt-4o-mini',
       sha256('judge'), label, score, score >= threshold, 'Replayed.', 'scored', '{}', 800, 60,
       0.0002, 600.0, 1, false, sha256(r.trace_id), 'replay', 1.0, false, r.run_id, $anchor
FROM (SELECT *, {label} AS label FROM replay_items r,
      (VALUES ('hallucination', 0.5), ('faithfulness', 0.7), ('relevance', 0.7),
              ('refusal', 0.75)) x(rubric, threshold)) r
CROSS JOIN LATERAL (SELECT {score} AS score)
"""


def _label_for(pick: str) -> str:
    whens = " ".join(f"WHEN '{r}' THEN {_label_sql(r, pick)}" for r in RUBRICS)
    return f"CASE rubric {whens} END"


def _fill(sql: str, **parts: str) -> str:
    """The SQL with each {name} replaced (str.format would trip over the JSON literals)."""
    for name, text in parts.items():
        sql = sql.replace("{" + name + "}", text)
    return sql


def build_store(path: Path, evaluations: int, anchor: datetime) -> None:
    """A store of `evaluations` production evaluations (four per trace) and everything around
    them, written in SQL."""
    n = evaluations // len(RUBRICS)
    fail = "CASE rubric " + " ".join(f"WHEN '{r}' THEN '{LABELS[r][3]}'" for r in RUBRICS) + " END"
    passing = "CASE rubric " + " ".join(f"WHEN '{r}' THEN '{LABELS[r][0]}'" for r in RUBRICS) + " END"
    with Store(path) as store:
        conn = store.conn
        conn.execute("SET enable_progress_bar = false")
        conn.execute(_TRACES, {"n": n, "anchor": anchor, "week": WEEK_S,
                               "system": "Answer from the documents only.",
                               "doc2": "Opening hours: weekdays 9 to 17. " * 4})
        conn.execute(_fill(_EVALUATIONS, label=_label_for("hash(t.i, r.rubric) % 100"),
                                         score=_score_sql("label")))
        conn.execute(_JUDGE_CALLS)
        conn.execute(_fill(_HUMAN_LABELS, fail=fail, **{"pass": passing}))
        replay = _fill(_REPLAY_RUNS, label=_label_for("hash(r.run_id, r.item_id, rubric) % 100"),
                       score=_score_sql("label"))
        for statement in replay.split(";"):
            conn.execute(statement, {k: v for k, v in {"anchor": anchor, "items": REPLAY_ITEMS}
                                     .items() if f"${k}" in statement})
        latest_queries.refill(conn)  # the rows went in around Store.write_batch
        store.checkpoint()


def _shift_forward(path: Path, anchor: datetime, now: datetime) -> None:
    """Move every timestamp by now - anchor: a cached store keeps the last week's traffic."""
    delta = now - anchor
    with Store(path) as store:
        for table, columns in (("traces", ("start_time", "received_at")),
                               ("evaluations", ("created_at",)), ("judge_calls", ("created_at",)),
                               ("human_labels", ("imported_at",)),
                               ("latest_verdicts", ("created_at",))):
            sets = ", ".join(f"{c} = {c} + $delta" for c in columns)
            store.conn.execute(f"UPDATE {table} SET {sets}", {"delta": delta})
        store.conn.execute("DELETE FROM alerts")
        store.checkpoint()


def _migrate_older(evaluations: int, path: Path) -> None:
    """A cached store of an older schema (same generator) is migrated as a user's store would
    be, instead of built again (4,000,000 evaluations take minutes to build)."""
    for older in sorted(CACHE.glob(f"reads-{evaluations}-s*-g{GENERATOR_VERSION}.duckdb")):
        if older == path or not older.with_suffix(".anchor").exists():
            continue
        started = time.perf_counter()
        with Store(older):
            pass
        older.rename(path)
        older.with_suffix(".anchor").rename(path.with_suffix(".anchor"))
        print(f"  migrated {older.name} to {path.name} in {time.perf_counter() - started:.0f}s",
              flush=True)
        return


def cached_store(evaluations: int) -> Path:
    """The store of this size, built once per schema and generator version."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"reads-{evaluations}-s{LATEST_VERSION}-g{GENERATOR_VERSION}.duckdb"
    stamp = path.with_suffix(".anchor")
    now = datetime.now(UTC)
    if not path.exists():
        _migrate_older(evaluations, path)
    if not (path.exists() and stamp.exists()):
        for stale in CACHE.glob(f"reads-{evaluations}-*"):
            stale.unlink()
        started = time.perf_counter()
        build_store(path, evaluations, now)
        stamp.write_text(now.isoformat())
        print(f"  built {path.name} in {time.perf_counter() - started:.0f}s", flush=True)
        return path
    anchor = datetime.fromisoformat(stamp.read_text())
    if (now - anchor).total_seconds() > 600:
        _shift_forward(path, anchor, now)
        stamp.write_text(now.isoformat())
    return path


def commands(db: Path, out: Path) -> dict[str, list[str]]:
    """The read commands of the issue, as `python -m evaluator` arguments."""
    d = ["--db", str(db)]
    return {
        "report": ["report", *d],
        "report --json": ["report", *d, "--json"],
        "report --html": ["report", *d, "--html", str(out / "report.html")],
        "alerts check": ["alerts", "check", *d],
        "datasets build --limit 1000": ["datasets", "build", "--name", "bench", "--limit", "1000",
                                        *d],
        "labels export --n 2000": ["labels", "export", "--rubric", "faithfulness", "--n", "2000",
                                   "--out", str(out / "batch"), *d],
        "agreement": ["agreement", *d],
        "gate": ["gate", "--run", "bench-candidate", "--baseline", "bench-baseline", *d],
    }


_RUN_WITH_PEAK = """
import atexit, runpy, sys
from pathlib import Path

def _peak():
    status = Path("/proc/self/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    Path(out).write_text(kib)

out = sys.argv[1]
atexit.register(_peak)
sys.argv = ["evaluator", *sys.argv[2:]]
runpy.run_module("evaluator", run_name="__main__")
"""
"""Runs the CLI and writes its peak RSS (VmHWM: this process's own, unlike ru_maxrss, which
keeps the forking parent's) to the file named first."""


def timed(args: list[str], env: dict[str, str], scratch: Path) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of `python -m evaluator ARGS` in its own process."""
    peak = scratch / "peak-rss-kib"
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", _RUN_WITH_PEAK, str(peak), *args], cwd=ROOT,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    errors = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    # gate and alerts check exit 1 on what they find; anything else is a failed command
    findings = args[0] in ("gate", "alerts")
    if child.returncode not in ((0, 1) if findings else (0,)):
        raise RuntimeError(f"evaluator {' '.join(args)} exited {child.returncode}: "
                           f"{errors.decode(errors='replace')[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, int(peak.read_text()) / 1024


def measure(evaluations: int, repeat: int,
            only: str | None = None) -> dict[str, tuple[float, float, float]]:
    """(wall s, CPU s, peak RSS MB) of each command's fastest run on a store of this size."""
    db = cached_store(evaluations)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        env = {**os.environ, "EVALUATOR_DATASETS_DIR": str(out / "datasets"),
               "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        results = {}
        for name, args in commands(db, out).items():
            if only is not None and only not in name:
                continue
            runs = []
            for _ in range(repeat):
                shutil.rmtree(out / "datasets", ignore_errors=True)  # each build starts afresh
                runs.append(timed(args, env, out))
            results[name] = min(runs)
    return results


def run(quick: bool = False) -> list[dict]:
    small, large = (40_000, 400_000) if quick else (40_000, 4_000_000)
    baseline = measure(small, repeat=3)
    measured = measure(large, repeat=3)
    rows = []
    for name, (seconds, cpu, mb) in measured.items():
        base_s, base_cpu, base_mb = baseline[name]
        rows.append(_row(f"{name}: wall time, {large:,} evaluations", seconds, "s",
                         f"{small:,} evaluations", base_s, f"<= {GOAL_S:g} s"))
        rows.append(_row(f"{name}: CPU time, {large:,} evaluations", cpu, "s",
                         f"{small:,} evaluations", base_cpu))
        rows.append(_row(f"{name}: peak RSS, {large:,} evaluations", mb, "MB",
                         f"{small:,} evaluations", base_mb, f"<= {GOAL_MB:g} MB"))
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="time the read commands on a built store")
    parser.add_argument("--evaluations", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", default=None, help="only commands whose name contains this")
    options = parser.parse_args()
    for command, (s, cpu, rss) in measure(options.evaluations, options.repeat, options.only).items():
        print(json.dumps({"command": command, "s": round(s, 3), "cpu_s": round(cpu, 3),
                          "rss_mb": round(rss)}))
