"""Usage: tokens, cost and time as one value, summed the one way everywhere."""

from evaluator.core.rows import CACHED, OK, JudgeCall
from evaluator.core.usage import FREE, Usage, gather_usage, spread_usage
from evaluator.judges.ledger import totals


def test_an_unknown_cost_makes_the_sum_unknown_while_unknown_tokens_are_left_out():
    assert Usage(10, None, 0.5, 2.0) + Usage(5, 3, 0.25, None) == Usage(15, 3, 0.75, 2.0)
    assert (Usage(10, 1, 0.5, 2.0) + Usage(cost_usd=None)).cost_usd is None
    assert Usage() + Usage() == Usage()
    assert sum([Usage(1, 2, 0.1, 3.0)] * 2, FREE) == Usage(2, 4, 0.2, 6.0)


def call(status: str, usage: Usage) -> JudgeCall:
    return JudgeCall.new(judge="j", model="m", transport="t", sample=0, attempt=1, status=status,
                         usage=usage, cached=status == CACHED)


def test_a_ledger_totals_its_calls_and_no_call_costs_unknown():
    summed = totals([call(OK, Usage(100, 10, 0.001, 12.3456)), call(CACHED, Usage(0, 0, 0.0, 0.5))])
    assert (summed.attempts, summed.usage) == (1, Usage(100, 10, 0.001, 12.846))
    assert totals([]).usage == Usage(None, None, None, 0.0)


def test_stored_and_sent_flat_in_the_record_s_own_order():
    flat = spread_usage({"a": 1, "usage": Usage(1, 2, None, 3.0).flat(), "b": 2})
    assert list(flat) == ["a", "input_tokens", "output_tokens", "cost_usd", "latency_ms", "b"]
    assert gather_usage(dict(flat)) == {"a": 1, "b": 2, "usage": Usage(1, 2, None, 3.0).flat()}
