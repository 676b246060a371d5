"""Size and depth limits of a trace (issue 13.2): a deeply nested or huge trace becomes one dead
letter with a clear reason at parse time, and never costs its neighbours their evaluations, in
`evaluator run`, `evaluator ingest`, the worker's results and the span exporter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from evaluator.core.errors import InvalidTraceError
from evaluator.core.records import MAX_DEAD_LETTER_CHARS, DeadLetter, parse_trace
from evaluator.core.trace_limits import (
    MAX_LABEL_CHARS,
    MAX_METADATA_CHARS,
    MAX_METADATA_DEPTH,
    MAX_TAG_CHARS,
    MAX_TAGS,
)
from evaluator.ingest.files import collect_work
from evaluator.ingest.otel import EvaluatorSpanExporter
from evaluator.queue.messages import ResultBatch, decode_items, encode_items
from evaluator.sampling.policy import SamplingPolicy
from evaluator.store import Store
from evaluator.worker.embedded import run_embedded

NEIGHBOURS = [{"trace_id": f"ok-{i}", "input": "What is 2+2?", "output": "4", "context": ["2+2=4"]}
              for i in range(4)]


def _nested_line(trace_id: str, depth: int) -> str:
    """A trace whose metadata holds a list nested `depth` levels deep (written by hand: json.dumps
    itself refuses to nest that deep)."""
    nested = "[" * depth + "]" * depth
    return f'{{"trace_id": "{trace_id}", "input": "q", "output": "a", "metadata": {{"x": {nested}}}}}'


def _file(tmp_path: Path, bad_lines: list[str]) -> Path:
    lines = [json.dumps(row) for row in NEIGHBOURS[:2]] + bad_lines + [
        json.dumps(row) for row in NEIGHBOURS[2:]]
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("depth", [200, 300])
def test_deep_metadata_is_one_dead_letter_and_its_batch_is_evaluated(tmp_path, depth):
    traces = _file(tmp_path, [_nested_line("deep", depth)])
    db = tmp_path / "run.duckdb"
    report = run_embedded(traces, db, "offline", sample_rate=1.0)
    with Store(db, read_only=True) as store:
        evaluated = {row[0] for row in store.conn.execute(
            "SELECT DISTINCT trace_id FROM evaluations").fetchall()}
        dead = store.conn.execute("SELECT error FROM dead_letters").fetchall()
        status = store.run(report.run_id).status
    assert evaluated == {row["trace_id"] for row in NEIGHBOURS}
    assert report.invalid == 1 and len(dead) == 1
    assert f"nested deeper than {MAX_METADATA_DEPTH} levels" in dead[0][0]
    assert status == "completed"


@pytest.mark.parametrize(("payload", "field", "words"), [
    ({"metadata": {"blob": "x" * (MAX_METADATA_CHARS + 1)}}, "metadata", "characters of JSON"),
    ({"metadata": {str(i): i for i in range(MAX_METADATA_CHARS // 4)}}, "metadata",
     "characters of JSON"),
    ({"metadata": {"a": {"b": [[{"c": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}]]}}}, "metadata",
     "nested deeper"),
    ({"metadata": {"when": object()}}, "metadata.when", "not a JSON value"),
    ({"tags": ["t"] * (MAX_TAGS + 1)}, "tags", f"at most {MAX_TAGS}"),
    ({"tags": ["t" * (MAX_TAG_CHARS + 1)]}, "tags.0", f"at most {MAX_TAG_CHARS}"),
    ({"session_id": "s" * 129}, "session_id", "1 to 128 characters"),
    ({"model": "m" * (MAX_LABEL_CHARS + 1)}, "model", f"at most {MAX_LABEL_CHARS}"),
    ({"prompt_version": "v" * (MAX_LABEL_CHARS + 1)}, "prompt_version", "at most"),
    ({"input": [{"role": "r" * (MAX_LABEL_CHARS + 1), "content": "hi"}]}, "input", "field 'input"),
])
def test_oversized_parts_of_a_trace_are_rejected_with_the_field(payload, field, words):
    with pytest.raises(InvalidTraceError) as info:
        parse_trace({"trace_id": "t", "output": "a", **payload})
    assert info.value.field.startswith(field), info.value.field
    assert words in str(info.value)


def test_metadata_at_the_limits_is_accepted():
    nested: object = "leaf"
    for _ in range(MAX_METADATA_DEPTH - 1):
        nested = [nested]
    trace = parse_trace({"trace_id": "t", "output": "a", "metadata": {"deep": nested},
                         "tags": ["t"] * MAX_TAGS})
    assert trace.metadata["deep"] == nested and len(trace.tags) == MAX_TAGS


def test_a_20_mb_metadata_blob_is_not_kept_whole(tmp_path):
    line = json.dumps({"trace_id": "blob", "output": "a", "metadata": {"b": "y" * 20_000_000}})
    work = collect_work(_file(tmp_path, [line]), SamplingPolicy(rate=1.0))
    assert [item.trace.trace_id for item in work.items] == [row["trace_id"] for row in NEIGHBOURS]
    (dead,) = work.dead_letters
    assert "characters of JSON" in dead.error and len(dead.payload) <= MAX_DEAD_LETTER_CHARS


def test_the_work_and_results_of_a_batch_with_a_deep_neighbour_survive_the_wire(tmp_path):
    """What `evaluator ingest` sends: work messages the worker decodes, and results (dead
    letters included) the sink decodes."""
    work = collect_work(_file(tmp_path, [_nested_line("deep", 260)]), SamplingPolicy(rate=1.0))
    items, dead = decode_items(json.loads(json.dumps(encode_items(work.items))), "test")
    assert not dead and len(items) == len(NEIGHBOURS)
    batch = ResultBatch(dead_letters=work.dead_letters)
    assert ResultBatch.from_json(batch.to_json()).dead_letters == work.dead_letters


def test_a_dead_letter_keeps_a_bounded_error_and_payload():
    error = InvalidTraceError("invalid trace: " + "e" * 100_000, field="f" * 100_000)
    dead = DeadLetter.from_error("test", "p" * (MAX_DEAD_LETTER_CHARS * 3), error)
    assert len(dead.payload) <= MAX_DEAD_LETTER_CHARS
    assert len(dead.error) <= 2_000 and len(dead.field or "") <= 2_000


def test_the_span_exporter_dead_letters_a_deep_trace_and_delivers_its_neighbours():
    delivered = []
    exporter = EvaluatorSpanExporter(sink=delivered.extend, policy=SamplingPolicy(rate=1.0),
                                     mask=lambda trace: trace)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    deep = '{"x": ' + "[" * 300 + "]" * 300 + "}"
    for index, metadata in enumerate(['{"ok": 1}', deep, '{"ok": 2}']):
        with tracer.start_as_current_span("chat") as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "metadata": metadata,
                                 "gen_ai.completion.0.content": f"answer {index}"})
    provider.shutdown()
    assert sorted(item.trace.output for item in delivered) == ["answer 0", "answer 2"]
    assert exporter.stats["invalid"] == 1


@pytest.mark.parametrize("depth", [300, 5_000])
def test_otlp_json_reader_dead_letters_deep_metadata_and_keeps_its_neighbours(tmp_path, depth):
    from evaluator.ingest.otel.otlp_json import read_otlp_json_traces

    def request(trace_hex: str, metadata: str) -> str:
        attributes = [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                      {"key": "gen_ai.completion.0.content", "value": {"stringValue": "fine"}},
                      {"key": "metadata", "value": {"stringValue": metadata}}]
        span = {"traceId": trace_hex, "spanId": "ab" * 8, "name": "chat",
                "startTimeUnixNano": "1", "endTimeUnixNano": "2", "attributes": attributes}
        return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})

    deep = '{"x": ' + "[" * depth + "]" * depth + "}"
    path = tmp_path / "spans.otlp.jsonl"
    path.write_text("\n".join([request("01" * 16, '{"ok": 1}'), request("02" * 16, deep),
                               request("03" * 16, '{"ok": 3}')]) + "\n", encoding="utf-8")
    records = list(read_otlp_json_traces(path))
    kept = sorted(r.trace_id for r in records if not isinstance(r, DeadLetter))
    dead = [r for r in records if isinstance(r, DeadLetter)]
    assert kept == ["01" * 16, "03" * 16]
    assert len(dead) == 1 and "nested" in dead[0].error
