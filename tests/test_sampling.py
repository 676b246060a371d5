import subprocess
import sys
import uuid

import pytest

from evaluator.core.errors import ConfigError
from evaluator.core.records import parse_trace
from evaluator.sampling.policy import SamplingPolicy, decide, trace_fraction


def _trace(**fields):
    return parse_trace({"trace_id": fields.pop("trace_id", uuid.uuid4().hex), "output": "a", **fields})


def test_random_share_is_close_to_the_rate_over_20000_traces():
    policy = SamplingPolicy(rate=0.10)
    ids = [f"{i:032x}" for i in range(20_000)]
    share = sum(decide(_trace(trace_id=i), policy).sampled for i in ids) / len(ids)
    print(f"sampled share at rate 0.10 over 20,000 traces: {share:.4f}")
    assert 0.09 <= share <= 0.11


def test_always_evaluate_rules_win_with_weight_one():
    policy = SamplingPolicy(rate=0.0)
    assert decide(_trace(status="error"), policy).reason == "error"
    assert decide(_trace(feedback="negative"), policy).reason == "negative_feedback"
    decision = decide(_trace(finish_reason="content_filter"), policy)
    assert decision.sampled and decision.reason == "content_filter" and decision.weight == 1.0
    assert not decide(_trace(), policy).sampled


def test_random_sample_weight_is_inverse_rate():
    policy = SamplingPolicy(rate=0.25)
    decisions = [decide(_trace(), policy) for _ in range(400)]
    assert {d.weight for d in decisions if d.sampled} == {4.0}


def test_rate_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match="between 0 and 1"):
        SamplingPolicy(rate=1.5)


def test_decisions_agree_across_processes():
    ids = [f"trace-{i}" for i in range(2000)]
    code = (
        "import sys; from evaluator.sampling.policy import trace_fraction;"
        "print(''.join('1' if trace_fraction(l.strip()) < 0.1 else '0' for l in sys.stdin))"
    )
    other = subprocess.run([sys.executable, "-c", code], input="\n".join(ids), text=True,
                           capture_output=True, check=True).stdout.strip()
    here = "".join("1" if trace_fraction(i) < 0.1 else "0" for i in ids)
    assert other == here


def test_segment_rates_override_the_base_rate_first_match_wins():
    from evaluator.sampling.policy import SegmentRate

    policy = SamplingPolicy(rate=0.10, segment_rates=(
        SegmentRate("model", "gpt-4o", 0.0), SegmentRate("route", "/checkout", 1.0),
        SegmentRate("model", "gpt-4o", 1.0)))
    never = [decide(_trace(model="gpt-4o", metadata={"route": "/checkout"}), policy)
             for _ in range(200)]
    assert not any(d.sampled for d in never)
    always = [decide(_trace(metadata={"route": "/checkout"}), policy) for _ in range(200)]
    assert all(d.sampled and d.reason == "random" and d.weight == 1.0 for d in always)
    share = sum(decide(_trace(model="other"), policy).sampled for _ in range(4000)) / 4000
    assert 0.07 < share < 0.13


def test_attribute_rules_always_evaluate_with_a_named_reason():
    from evaluator.sampling.policy import AttributeRule

    policy = SamplingPolicy(rate=0.0, always_when=(AttributeRule("tier", "enterprise"),
                                                   AttributeRule("tag", "canary"),
                                                   AttributeRule("experiment")))
    assert decide(_trace(metadata={"tier": "enterprise"}), policy).reason == "attribute:tier=enterprise"
    assert decide(_trace(tags=["canary"]), policy).reason == "attribute:tag=canary"
    assert decide(_trace(metadata={"experiment": "b"}), policy).reason == "attribute:experiment"
    assert decide(_trace(metadata={"experiment": "b"}), policy).weight == 1.0
    assert not decide(_trace(metadata={"tier": "free"}, tags=["beta"]), policy).sampled


def test_sampling_config_file_is_validated_data(tmp_path):
    from evaluator.sampling.config import sampling_policy

    config = tmp_path / "sampling.yaml"
    config.write_text("segments:\n  - {field: model, value: gpt-4o, rate: 0.05}\n"
                      "always_when:\n  - {key: tag, value: canary}\n", encoding="utf-8")
    policy = sampling_policy(0.2, config)
    assert policy.rate == 0.2 and policy.rate_for(_trace(model="gpt-4o")) == 0.05
    assert decide(_trace(tags=["canary"]), SamplingPolicy(rate=0.0, always_when=policy.always_when)).sampled
    config.write_text("segments:\n  - {field: colour, value: red, rate: 0.5}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="segments.0.field"):
        sampling_policy(0.1, config)
    config.write_text("always_when: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        sampling_policy(0.1, config)


def test_evaluator_run_applies_the_sampling_config(tmp_path, monkeypatch):
    import json

    from evaluator.core.settings import Settings
    from evaluator.worker.embedded import run_embedded

    config = tmp_path / "sampling.yaml"
    config.write_text("always_when:\n  - {key: tag, value: canary}\n", encoding="utf-8")
    monkeypatch.setenv("EVALUATOR_SAMPLING_CONFIG", str(config))
    traces = tmp_path / "t.jsonl"
    traces.write_text("\n".join(json.dumps({"trace_id": f"t{i}", "input": "q", "output": "a",
                                            "tags": ["canary"] if i % 2 else []})
                                for i in range(10)) + "\n", encoding="utf-8")
    report = run_embedded(traces, tmp_path / "s.duckdb", "offline", sample_rate=0.0,
                          settings=Settings.from_env())
    assert report.sampled == 5 and report.sample_reasons == {"attribute:tag=canary": 5}


# --- per-rubric rates ---------------------------------------------------------------------------

RUBRICS = ("faithfulness", "hallucination", "refusal", "relevance")


def test_each_rubric_samples_at_its_own_rate_and_the_trace_at_the_highest():
    policy = SamplingPolicy(rate=0.10, rubric_rates={"hallucination": 0.30, "refusal": 0.02})
    traces = [_trace(trace_id=f"{i:032x}") for i in range(20_000)]
    decisions = [decide(t, policy) for t in traces]
    sent = [(t, d) for t, d in zip(traces, decisions, strict=True) if d.sampled]
    assert 0.29 <= len(sent) / len(traces) <= 0.31
    assert all(d.weight == pytest.approx(1 / 0.30) for _, d in sent)
    shares = {}
    for rubric in RUBRICS:
        chosen = [d.for_rubric(rubric, t.trace_id) for t, d in sent]
        picked = [c for c in chosen if c.sampled]
        shares[rubric] = len(picked) / len(traces)
        expected = policy.rubric_rates.get(rubric, 0.10)
        assert all(c.weight == pytest.approx(1 / expected) for c in picked)
        assert sum(c.weight for c in picked) == pytest.approx(len(traces), rel=0.12), \
            "inverse-probability weights estimate the whole traffic"
    print("per-rubric sampled shares over 20,000 traces: "
          + ", ".join(f"{r} {s:.4f}" for r, s in shares.items()))
    assert 0.29 <= shares["hallucination"] <= 0.31
    assert 0.09 <= shares["relevance"] == shares["faithfulness"] <= 0.11
    assert 0.016 <= shares["refusal"] <= 0.024
    nested = {r: {t.trace_id for t, d in sent if d.for_rubric(r, t.trace_id).sampled} for r in RUBRICS}
    assert nested["refusal"] <= nested["relevance"] <= nested["hallucination"], \
        "one trace_fraction decides every rubric: lower rates pick subsets"


def test_always_evaluate_traces_go_to_every_rubric_with_weight_one():
    policy = SamplingPolicy(rate=0.0, rubric_rates={"refusal": 0.0, "hallucination": 0.5})
    decision = decide(_trace(status="error"), policy)
    assert all(decision.for_rubric(r, "x") is decision for r in RUBRICS)
    assert decision.weight == 1.0 and decision.reason == "error"


def test_rubric_segments_and_rubric_rates_resolve_in_order():
    from evaluator.sampling.policy import SegmentRate

    policy = SamplingPolicy(
        rate=0.10, rubric_rates={"hallucination": 0.30},
        segment_rates=(SegmentRate("prompt_version", "v7", 1.0, rubric="hallucination"),
                       SegmentRate("model", "mini", 0.05)))
    v7, mini, plain = _trace(prompt_version="v7"), _trace(model="mini"), _trace()
    assert policy.rate_for(v7, "hallucination") == 1.0, "a rubric's segment first"
    assert policy.rate_for(v7, "refusal") == 0.10 and policy.rate_for(v7) == 0.10
    assert policy.rate_for(mini, "hallucination") == 0.05, "a segment beats the rubric's rate"
    assert policy.rate_for(plain, "hallucination") == 0.30
    assert policy.named_rubrics == {"hallucination"}
    scaled = policy.scaled(0.5)
    assert (scaled.rate, scaled.rubric_rates["hallucination"]) == (0.05, 0.15)
    assert [s.rate for s in scaled.segment_rates] == [0.5, 0.025]
    assert scaled.segment_rates[0].rubric == "hallucination"


def test_equal_rates_need_no_per_rubric_decision():
    policy = SamplingPolicy(rate=0.5, rubric_rates={"refusal": 0.5})
    decision = next(d for d in (decide(_trace(), policy) for _ in range(100)) if d.sampled)
    assert decision.rubric_rates == {}
    assert decision.for_rubric("refusal", "any") is decision


def test_rubric_rates_survive_the_work_message():
    from evaluator.core.work import WorkItem
    from evaluator.queue.messages import decode_items, encode_items

    policy = SamplingPolicy(rate=0.10, rubric_rates={"hallucination": 1.0})
    trace = _trace()
    decision = decide(trace, policy)
    assert decision.rubric_rates == {"hallucination": 1.0} and decision.rate == 0.10
    items, dead = decode_items(encode_items([WorkItem(trace, decision)]), "test")
    assert not dead and items[0].decision == decision
    bad = encode_items([WorkItem(trace, decision)])
    bad[0]["rubric_rates"] = ["hallucination"]
    items, dead = decode_items(bad, "test")
    assert not items and "rubric_rates must be an object" in dead[0].error


def test_pipeline_stores_a_skipped_row_for_rubrics_that_did_not_sample_the_trace():
    import asyncio

    from evaluator.core.settings import Settings
    from evaluator.core.work import WorkItem
    from evaluator.judges.factory import load_judge
    from evaluator.rubrics import RubricRegistry
    from evaluator.worker.pipeline import evaluate_items

    rubrics = RubricRegistry.load(Settings.from_env().rubrics_dir).latest()
    policy = SamplingPolicy(rate=0.05, rubric_rates={"hallucination": 1.0})
    items = []
    for i in range(400):
        trace = parse_trace({"trace_id": f"p-{i}", "input": "Capital of France?",
                             "output": "Paris.", "context": ["Paris is the capital of France."]})
        decision = decide(trace, policy)
        assert decision.sampled
        items.append(WorkItem(trace, decision))
    evaluations = asyncio.run(evaluate_items(items, rubrics, load_judge("offline")))
    assert len(evaluations) == 400 * len(rubrics), "one terminal row per trace and rubric"
    by_rubric = {r.criterion: [e for e in evaluations if e.rubric == r.criterion] for r in rubrics}
    assert all(e.status == "scored" and e.sample_weight == 1.0 for e in by_rubric["hallucination"])
    relevance = by_rubric["relevance"]
    scored = [e for e in relevance if e.status == "scored"]
    skipped = [e for e in relevance if e.status == "skipped"]
    assert 5 <= len(scored) <= 40 and len(scored) + len(skipped) == 400
    assert all(e.sample_weight == pytest.approx(20.0) and e.sample_reason == "random" for e in scored)
    assert all(e.sample_weight == 0.0 and e.sample_reason == "not_sampled" and e.attempts == 0
               for e in skipped)
    assert skipped[0].reason == ("not sampled for relevance at its rate 0.05 (another rubric's "
                                 "rate 1 picked the trace)")


def test_evaluator_run_with_rubric_rates_and_a_typo(tmp_path, monkeypatch, capsys):
    from click.testing import CliRunner

    from evaluator.cli import cli, main
    from evaluator.store import Store

    config = tmp_path / "sampling.yaml"
    config.write_text("rubrics: {hallucination: 0.5, refusal: 0.0}\n", encoding="utf-8")
    monkeypatch.setenv("EVALUATOR_SAMPLING_CONFIG", str(config))
    db = tmp_path / "r.duckdb"
    result = CliRunner().invoke(cli, ["run", "--db", str(db), "--sample-rate", "0.1", "--json"])
    assert result.exit_code == 0, result.output
    with Store(db, read_only=True) as store:
        rows = store.conn.execute(
            "SELECT rubric, sample_reason, count(*) FROM evaluations GROUP BY ALL").fetchall()
    counts = {(rubric, reason): n for rubric, reason, n in rows}
    randoms = {r: counts.get((r, "random"), 0) for r in RUBRICS}
    assert randoms["refusal"] == 0 and randoms["hallucination"] > 3 * randoms["relevance"] > 0
    assert counts[("refusal", "error")] == counts[("hallucination", "error")] > 0
    assert counts[("refusal", "not_sampled")] == randoms["hallucination"]

    config.write_text("rubrics: {halucination: 0.5}\n", encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["evaluator", "run", "--db", str(db)])
    with pytest.raises(SystemExit) as typo:
        main()  # the entry point `evaluator` runs, with its exit codes, in this process
    assert typo.value.code == 2
    stderr = capsys.readouterr().err
    assert "error: sampling config names rubric(s) halucination" in stderr
    assert "one of correctness, faithfulness, hallucination, refusal, relevance" in stderr
