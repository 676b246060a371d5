import subprocess
import sys
import uuid

import pytest

from evaluator.errors import ConfigError
from evaluator.records import parse_trace
from evaluator.sampling import SamplingPolicy, decide, trace_fraction


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
        "import sys; from evaluator.sampling import trace_fraction;"
        "print(''.join('1' if trace_fraction(l.strip()) < 0.1 else '0' for l in sys.stdin))"
    )
    other = subprocess.run([sys.executable, "-c", code], input="\n".join(ids), text=True,
                           capture_output=True, check=True).stdout.strip()
    here = "".join("1" if trace_fraction(i) < 0.1 else "0" for i in ids)
    assert other == here


def test_segment_rates_override_the_base_rate_first_match_wins():
    from evaluator.sampling import SegmentRate

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
    from evaluator.sampling import AttributeRule

    policy = SamplingPolicy(rate=0.0, always_when=(AttributeRule("tier", "enterprise"),
                                                   AttributeRule("tag", "canary"),
                                                   AttributeRule("experiment")))
    assert decide(_trace(metadata={"tier": "enterprise"}), policy).reason == "attribute:tier=enterprise"
    assert decide(_trace(tags=["canary"]), policy).reason == "attribute:tag=canary"
    assert decide(_trace(metadata={"experiment": "b"}), policy).reason == "attribute:experiment"
    assert decide(_trace(metadata={"experiment": "b"}), policy).weight == 1.0
    assert not decide(_trace(metadata={"tier": "free"}, tags=["beta"]), policy).sampled


def test_sampling_config_file_is_validated_data(tmp_path):
    from evaluator.sampling_config import sampling_policy

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

    from evaluator.runner import run_embedded

    config = tmp_path / "sampling.yaml"
    config.write_text("always_when:\n  - {key: tag, value: canary}\n", encoding="utf-8")
    monkeypatch.setenv("EVALUATOR_SAMPLING_CONFIG", str(config))
    traces = tmp_path / "t.jsonl"
    traces.write_text("\n".join(json.dumps({"trace_id": f"t{i}", "input": "q", "output": "a",
                                            "tags": ["canary"] if i % 2 else []})
                                for i in range(10)) + "\n", encoding="utf-8")
    report = run_embedded(traces, tmp_path / "s.duckdb", "offline", sample_rate=0.0)
    assert report.sampled == 5 and report.sample_reasons == {"attribute:tag=canary": 5}
