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
