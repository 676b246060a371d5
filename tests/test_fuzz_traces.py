"""Fuzzing trace payloads with hypothesis: wrong types, missing and unknown fields, huge strings,
invalid UTF-8, deeply nested JSON and 10 MB outputs, metadata deep and wide (inside and past the
trace limits), non-string and unsafe ids, and reused ids, through `parse_trace`, the JSONL reader
of `evaluator ingest`, its streaming of work and dead letters, the worker (decode, judge,
results), and `evaluator ingest --embedded` end to end. Nothing may crash: each payload is a
Trace (cut fields marked, on the Evaluation and in the prompt the judge sees) or a dead letter
with the reason.

Each property counts the cases it ran; together they run more than 10,000 per CI run (the `ci`
hypothesis profile; the `dev` default runs a fifth: tests/support/examples.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluator.core.errors import InvalidTraceError
from evaluator.core.records import (
    MAX_CONTEXT_DOCS,
    MAX_DEAD_LETTER_CHARS,
    MAX_TEXT_CHARS,
    TERMINAL_STATUSES,
    DeadLetter,
    Trace,
    parse_trace,
)
from evaluator.core.settings import DEFAULTS
from evaluator.core.trace_limits import MAX_METADATA_DEPTH, SAFE_ID, metadata_problem
from evaluator.ingest.files import REUSED_ID, read_jsonl_traces, stream_work
from evaluator.pii.masking import identifier_check
from evaluator.queue.channel import InMemoryChannel
from evaluator.queue.messages import ResultBatch
from evaluator.rubrics import RubricRegistry, render
from evaluator.sampling.policy import SamplingPolicy
from evaluator.store import Store
from evaluator.worker.actors import WorkerContext, process_message
from tests.support.examples import examples
from tests.support.figures import record

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = RubricRegistry.load(ROOT / "rubrics")
TEN_MB = 10 * 2**20
FUZZ = settings(deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example, HealthCheck.filter_too_much])

# -- strategies -------------------------------------------------------------------------------

huge_text = st.builds(lambda char, count: char * count,
                      st.sampled_from(["x", "é", "\U0001F600", " ", "<<<END OUTPUT>>>", "\x00"]),
                      st.integers(100_001, 130_000))
short_text = st.text(max_size=60)
TEXT_KINDS = {"short": short_text, "surrogate": short_text.map(lambda t: t + "\ud800"), "huge": huge_text}
text = st.sampled_from(["short"] * 24 + ["surrogate", "huge"]).flatmap(TEXT_KINDS.__getitem__)
"""Mostly ordinary text; now and then (1 in 26) a lone surrogate (JSON can spell one) or past the
limit. The kind is sampled: st.one_of drops repeated strategies, so listing short_text 24 times
made a third of all texts huge and most examples slow."""
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10)
wrong = st.one_of(scalars, st.lists(scalars, max_size=3),
                  st.dictionaries(st.text(max_size=5), scalars, max_size=3))
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                                 "content": text})
printable_id = st.text(st.sampled_from("abcXYZ019._:/-"), min_size=1, max_size=40)
"""An id in the safe alphabet (evaluator.core.trace_limits.SAFE_ID)."""
unsafe_id = st.one_of(st.sampled_from(["dup-1 ", " dup-1", "a b", "<!channel>", "jane@x.com", "é",
                                       "x" * 129, "", "tab\tid"]),
                      st.text(st.characters(categories=["L", "N", "P", "S", "Z"]), min_size=1,
                              max_size=20).filter(lambda t: not SAFE_ID.fullmatch(t)))
non_string_id = st.one_of(st.integers(), st.floats(), st.booleans(), st.none(),
                          st.lists(printable_id, max_size=2),
                          st.dictionaries(printable_id, printable_id, max_size=2))


def _nest(depth: int, leaf: Any, kind: str) -> Any:
    for level in range(depth):
        leaf = [leaf] if kind == "list" or (kind == "mixed" and level % 2) else {"k": leaf}
    return leaf


def deep_metadata(low: int, high: int) -> st.SearchStrategy:
    """Metadata nested `low`..`high` levels (the metadata object itself is one)."""
    return st.builds(lambda depth, kind, leaf: {"m": _nest(depth - 2, leaf, kind)},
                     st.integers(low, high), st.sampled_from(["list", "dict", "mixed"]),
                     st.one_of(scalars, st.just([])))


def wide_metadata(low: int, high: int) -> st.SearchStrategy:
    return st.builds(lambda count, value: {f"key-{i}": value for i in range(count)},
                     st.integers(low, high), st.one_of(scalars, st.text(max_size=30)))

GOOD: dict[str, st.SearchStrategy] = {
    "trace_id": printable_id,
    "span_id": printable_id,
    "input": st.one_of(text, st.lists(message, max_size=4)),
    "system": text,
    "context": st.lists(text, max_size=8),
    "output": text,
    "model": st.text(max_size=20),
    "input_tokens": st.integers(0, 10**6),
    "latency_ms": st.floats(0, 1e6),
    "status": st.sampled_from(["ok", "error"]),
    "error": text,
    "feedback": st.sampled_from(["positive", "negative", "neutral"]),
    "tags": st.lists(st.text(max_size=10), max_size=5),
    "session_id": printable_id,
    "metadata": st.one_of(st.dictionaries(st.text(max_size=10), json_values, max_size=4),
                          deep_metadata(2, MAX_METADATA_DEPTH), wide_metadata(1, 1_500)),
    "start_time": st.just("2026-01-02T03:04:05Z"),
}
BAD: dict[str, st.SearchStrategy] = {
    "trace_id": st.one_of(st.just("  "), st.just("a\nb"), unsafe_id, non_string_id, wrong),
    "span_id": st.one_of(unsafe_id, non_string_id),
    "session_id": st.one_of(unsafe_id, non_string_id),
    "metadata": st.one_of(deep_metadata(MAX_METADATA_DEPTH + 1, 400), wide_metadata(4_000, 20_000),
                          st.builds(lambda n: {"blob": "y" * n}, st.integers(64_001, 200_000))),
    "input": st.one_of(wrong, st.lists(wrong, min_size=1, max_size=3)),
    "context": st.one_of(wrong, st.lists(st.text(max_size=5), min_size=51, max_size=60)),
    "input_tokens": st.integers(max_value=-1),
    "latency_ms": st.sampled_from([-1.0, float("nan"), float("inf")]),
    "status": st.sampled_from(["OK", "failed", ""]),
    "feedback": st.sampled_from(["meh", "thumbs"]),
    "start_time": st.text(max_size=12),
    "truncated": wrong,
}


@st.composite
def trace_dicts(draw) -> dict[str, Any]:
    """Mostly well-formed traces (fields present or missing); a quarter corrupt one to three
    fields (a wrong type or value, or an unknown field)."""
    payload: dict[str, Any] = {"trace_id": draw(printable_id)}
    for name, good in GOOD.items():
        if draw(st.booleans()):
            payload[name] = draw(good)
    if draw(st.integers(0, 3)) == 0:
        for name in draw(st.lists(st.sampled_from([*BAD, "unknown"]), min_size=1, max_size=3)):
            if name == "unknown":
                payload[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
            else:
                payload[name] = draw(BAD[name] | wrong)
    return payload


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=True)


def _nested(depth: int) -> str:
    return '{"trace_id": "deep", "metadata": ' + "[" * depth + "]" * depth + "}"


raw_payloads = st.one_of(
    trace_dicts().map(_dumps),
    trace_dicts().map(lambda d: _dumps(d).encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
    st.binary(max_size=50).map(lambda b: b'{"trace_id": "t", "output": "' + b + b'"}'),
    st.integers(1, 20_000).map(_nested),
    st.text(max_size=100),
    json_values.map(_dumps),
)
payloads = st.one_of(trace_dicts(), trace_dicts(), raw_payloads, json_values)
jsonl_lines = st.one_of(raw_payloads, trace_dicts().map(_dumps))


def _as_line(payload: str | bytes) -> bytes:
    """One JSONL line: UTF-8 (a lone surrogate keeps its bytes), no line break inside."""
    raw = payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")
    return raw.replace(b"\n", b" ").replace(b"\r", b" ")


# -- properties ---------------------------------------------------------------------------------


def check_trace(trace: Trace, limit: int) -> None:
    """What every accepted trace guarantees to the rest of the pipeline."""
    for identifier in (trace.trace_id, trace.span_id, trace.session_id):
        assert identifier is None or SAFE_ID.fullmatch(identifier)
    assert metadata_problem(trace.metadata) is None, "metadata within the depth and size limits"
    messages = [trace.input] if isinstance(trace.input, str) else [m.content for m in trace.input]
    texts = {"output": [trace.output], "system": [trace.system or ""], "error": [trace.error or ""],
             "context": trace.context, "input": messages}
    for name, values in texts.items():
        assert all(len(value) <= limit for value in values), name
        if name in trace.truncated:
            assert any(value.endswith(" characters removed ...]") for value in values), name
    assert len(trace.context) <= MAX_CONTEXT_DOCS
    again = parse_trace(trace.model_dump(mode="json"))
    assert again.model_dump_json() == trace.model_dump_json(), "validating twice changes nothing"


def check_dead_letter(payload: Any, error: InvalidTraceError) -> DeadLetter:
    assert str(error).startswith("invalid trace") and error.field
    dead = DeadLetter.from_error("fuzz", payload, error)
    assert dead.error and len(dead.payload) <= MAX_DEAD_LETTER_CHARS
    dead.payload.encode("utf-8")  # storable
    return dead


def test_parse_trace_never_crashes():
    seen: Counter = Counter()
    limit = MAX_TEXT_CHARS

    @settings(FUZZ, max_examples=examples(7_500))
    @given(payloads)
    def check(payload):
        seen["examples"] += 1
        seen["cases"] += 1
        try:
            trace = parse_trace(payload)
        except InvalidTraceError as exc:
            check_dead_letter(payload, exc)
            seen["rejected"] += 1
            return
        check_trace(trace, limit)
        seen["truncated" if trace.truncated else "accepted"] += 1

    check()
    record("fuzz", path="parse_trace", **seen)
    assert seen["cases"] >= examples(7_500) and seen["rejected"] and seen["accepted"] and seen["truncated"]


def test_ingest_reader_turns_every_line_into_a_trace_or_a_dead_letter(tmp_path):
    seen: Counter = Counter()
    file = tmp_path / "fuzz.jsonl"

    @settings(FUZZ, max_examples=examples(600))
    @given(st.lists(jsonl_lines, min_size=1, max_size=4))
    def check(lines):
        seen["examples"] += 1
        seen["cases"] += len(lines)
        encoded = [_as_line(line) for line in lines]
        file.write_bytes(b"\n".join(encoded) + b"\n")
        records = list(read_jsonl_traces(file))
        assert len(records) == sum(1 for line in encoded if line.strip())
        for found in records:
            if isinstance(found, DeadLetter):
                assert found.error.startswith("invalid trace")
                assert found.source.startswith(str(file))
                seen["dead_letters"] += 1
            else:
                check_trace(found, MAX_TEXT_CHARS)
                seen["traces"] += 1

    check()
    record("fuzz", path="ingest_reader", **seen)
    assert seen["examples"] >= examples(600) and seen["dead_letters"] and seen["traces"]


def _passes(check_ids, trace: Trace) -> bool:
    try:
        if check_ids is not None:
            check_ids(trace)
    except InvalidTraceError:
        return False
    return True


def test_streaming_keeps_the_first_of_each_reused_id(tmp_path):
    """Traces drawn from a pool of three ids: the first of each id is sampled, a later one with
    other content is a dead letter saying so, an exact repeat passes; every line is counted."""
    seen: Counter = Counter()
    file = tmp_path / "reused.jsonl"

    @settings(FUZZ, max_examples=examples(300))
    @given(st.lists(st.tuples(st.sampled_from(["dup-1", "dup-2", "dup-3"]), trace_dicts()),
                    min_size=1, max_size=8))
    def check(rows):
        seen["examples"] += 1
        seen["cases"] += len(rows)
        lines = [_dumps({**payload, "trace_id": trace_id}) for trace_id, payload in rows]
        file.write_bytes(b"\n".join(_as_line(line) for line in lines) + b"\n")
        items: list = []
        dead: list[DeadLetter] = []
        counts = stream_work(file, SamplingPolicy(rate=1.0), items.extend, dead.extend,
                             batch_size=3)
        first: dict[str, str] = {}
        expected_items = expected_reused = 0
        check_ids = identifier_check(DEFAULTS)
        for found in read_jsonl_traces(file):
            if isinstance(found, DeadLetter):
                continue
            content = found.model_dump_json()
            if first.setdefault(found.trace_id, content) != content:
                expected_reused += 1
            elif not _passes(check_ids, found):  # e.g. a drawn session id that reads as PII
                continue
            else:
                expected_items += 1
        assert counts.traces_read == len(rows) == len(items) + len(dead)
        assert len(items) == expected_items and counts.reused_ids == expected_reused
        assert sum(REUSED_ID in d.error for d in dead) == expected_reused
        kept = {item.trace.trace_id: item.trace.output for item in items}
        assert all(kept[i.trace.trace_id] == i.trace.output for i in items), "one content per id"
        seen["reused"] += expected_reused
        seen["dead_letters"] += len(dead)

    check()
    record("fuzz", path="stream_work reused ids", **seen)
    assert seen["examples"] >= examples(300) and seen["reused"]


def _accepts(payload: dict[str, Any]) -> bool:
    try:
        parse_trace(payload)
    except InvalidTraceError:
        return False
    return True


work_entries = st.one_of(
    trace_dicts().filter(_accepts).map(
        lambda d: {"trace": d, "sample_reason": "random", "sample_weight": 10.0}),
    trace_dicts().map(lambda d: {"trace": d}),
    st.fixed_dictionaries({"trace": wrong, "sample_weight": wrong}),
    wrong,
)
"""Work items as a message carries them: valid, with a bad trace, malformed, or not an object."""


def test_worker_judges_or_dead_letters_every_item():
    seen: Counter = Counter()
    context = WorkerContext(REGISTRY, InMemoryChannel(), ROOT / "judges")
    rubrics = REGISTRY.latest()
    shows_output_and_context = next(r for r in rubrics if r.criterion == "faithfulness")

    @settings(FUZZ, max_examples=examples(500))
    @given(st.lists(work_entries, min_size=1, max_size=3),
           st.sampled_from(["offline", "offline", "offline", "no-such-judge"]))
    def check(entries, judge):
        seen["examples"] += 1
        seen["cases"] += len(entries)
        message = {"items": json.loads(_dumps(entries)), "judge": judge, "rubrics": [],
                   "run_id": "fuzz"}
        batch = asyncio.run(process_message(context, message))
        assert len(batch.evaluations) == len(rubrics) * len(batch.traces)
        assert len(batch.traces) + len(batch.dead_letters) == len(entries)
        for index, stored in enumerate(batch.traces):
            evaluations = batch.evaluations[index * len(rubrics):(index + 1) * len(rubrics)]
            for evaluation in evaluations:
                assert evaluation.trace_id == stored.trace.trace_id
                assert evaluation.status in TERMINAL_STATUSES
                assert evaluation.status == "scored" or evaluation.reason
                assert evaluation.truncated == bool(stored.trace.truncated)
            if {"output", "context"} & set(stored.trace.truncated):  # faithfulness shows both
                note = render(shows_output_and_context, stored.trace).messages[-1]["content"]
                assert note.startswith("Note: these fields were too long and were truncated")
                seen["truncated"] += 1
        assert all(d.error for d in batch.dead_letters)
        assert ResultBatch.from_json(batch.to_json()).to_json() == batch.to_json()
        seen["evaluations"] += len(batch.evaluations)
        seen["dead_letters"] += len(batch.dead_letters)

    check()
    record("fuzz", path="worker", **seen)
    assert seen["examples"] >= examples(500) and seen["evaluations"] and seen["dead_letters"]


def _ten_mb_lines() -> list[bytes]:
    """The heavy cases, one each: huge outputs, contexts, inputs, invalid UTF-8, deep nesting."""
    big = "All work and no play makes a dull answer. " * (TEN_MB // 42)
    return [
        _dumps({"trace_id": "ten-mb-output", "input": "Why?", "output": big}).encode(),
        _dumps({"trace_id": "ten-mb-context", "input": "Why?", "output": "Because.",
                "context": [big, "short doc"]}).encode(),
        _dumps({"trace_id": "ten-mb-messages", "output": "Because.",
                "input": [{"role": "user", "content": big}]}).encode(),
        _dumps({"trace_id": "ten-mb-wrong-type", "output": [big]}).encode(),
        b'{"trace_id": "invalid-utf8", "output": "' + b"\xff\xfe\xc3\x28" * (TEN_MB // 4) + b'"}',
        _nested(500_000).encode(),
    ]


def _read_in_a_fresh_process(file: Path) -> tuple[set[str], list[tuple[str, str]]]:
    """The trace ids and dead letters (source, error) `collect_work` gives for `file`, read in a
    new interpreter like the CLI's: how deep json.loads gets depends on the caller's stack."""
    script = ("import json, sys; from evaluator.ingest.files import collect_work; "
              "from evaluator.sampling.policy import SamplingPolicy; "
              "w = collect_work(sys.argv[1], SamplingPolicy(rate=1.0)); "
              "print(json.dumps([[i.trace.trace_id for i in w.items], "
              "[[d.source, d.error] for d in w.dead_letters]]))")
    result = subprocess.run([sys.executable, "-c", script, str(file)], capture_output=True,
                            text=True, timeout=240, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    ids, dead = json.loads(result.stdout)
    return set(ids), sorted((source, error) for source, error in dead)


def test_evaluator_ingest_embedded_end_to_end(tmp_path):
    """One `evaluator ingest --embedded` run over 400 generated lines and the 10 MB cases:
    exit 0, every line a stored dead letter or a trace with one terminal row per rubric."""
    generated: list[bytes] = []

    @settings(FUZZ, max_examples=40)
    @given(st.lists(jsonl_lines, min_size=10, max_size=10))
    def collect(lines):
        generated.extend(_as_line(line) for line in lines)

    collect()
    encoded = [line for line in generated if line.strip()] + _ten_mb_lines()
    file, db = tmp_path / "fuzz.jsonl", tmp_path / "fuzz.duckdb"
    file.write_bytes(b"\n".join(encoded) + b"\n")
    env = {**os.environ, "EVALUATOR_JUDGE_CACHE": "off"}
    result = subprocess.run([sys.executable, "-m", "evaluator", "ingest", str(file), "--embedded",
                             "--sample-rate", "1.0", "--db", str(db)], env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    accepted, rejected = _read_in_a_fresh_process(file)
    rubrics = len(REGISTRY.latest())
    with Store(db, read_only=True) as store:
        traces = {row[0] for row in store.conn.execute("SELECT trace_id FROM traces").fetchall()}
        stored_dead = sorted(store.conn.execute("SELECT source, error FROM dead_letters").fetchall())
        dead = dict(stored_dead)
        complete = {row[0] for row in store.conn.execute(
            "SELECT trace_id FROM evaluations GROUP BY trace_id HAVING count(*) = ?"
            " AND bool_and(status IN ('scored', 'unscored', 'error', 'skipped'))"
            " AND bool_and(status = 'scored' OR reason <> '')", [rubrics]).fetchall()}
        truncated = dict(store.conn.execute(
            "SELECT trace_id, bool_and(truncated) FROM evaluations WHERE trace_id LIKE 'ten-mb-%'"
            " GROUP BY trace_id").fetchall())
    record("fuzz", path="evaluator ingest --embedded", cases=len(encoded), traces=len(traces),
           dead_letters=len(dead), ten_mb_cases=6)
    assert traces == accepted == complete, "every valid trace: one terminal row per rubric"
    assert stored_dead == rejected, "every invalid line and reused id: a dead letter with its reason"
    assert truncated == {"ten-mb-output": True, "ten-mb-context": True, "ten-mb-messages": True}
    wrong_type, bad_utf8, too_deep = (dead.get(f"{file}:{len(encoded) - back}", "")
                                      for back in (2, 1, 0))
    assert "field 'output'" in wrong_type
    assert "not valid UTF-8" in bad_utf8
    assert "nested too deeply" in too_deep or "not valid JSON" in too_deep
