"""Alert rules on constructed score streams: each fires on a sustained breach, not on a single
spike nor on a sample too small, and resolves when the condition clears. Plus the evidence
math, de-duplication, cooldown, the shipped rules file and the CLI."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from evaluator.cli import cli
from evaluator.core.errors import ConfigError
from evaluator.monitoring.alerts import check_alerts, load_alert_config
from evaluator.monitoring.alerts.evidence import drop_lower_bound, weighted_estimate, wilson
from evaluator.monitoring.alerts.rules import DEFAULT_CONFIG_PATH, parse_duration
from evaluator.store import Store
from evaluator.store.alert_queries import latest_alerts
from tests.support.alert_streams import (
    MINUTE,
    NOW,
    RecordingSink,
    config,
    evaluation,
    label_stream,
    score_stream,
    spread,
    status_stream,
    traces_for,
    write,
)

HALLUCINATION = {"name": "hallucination_rate", "kind": "label_rate", "rubrics": ["hallucination"],
                 "labels": ["hallucinated"], "above": 0.005, "window": "15m", "min_samples": 100,
                 "priority": "P1"}
LOW_SCORE = {"name": "quality_score_low", "kind": "mean_score", "rubrics": ["faithfulness"],
             "below": 0.7, "window": "15m", "min_samples": 30}
DROP = {"name": "quality_score_drop", "kind": "score_drop", "rubrics": ["faithfulness"],
        "max_drop": 0.10, "window": "15m", "min_samples": 30}
REFUSAL = {"name": "refusal_rate", "kind": "label_rate", "rubrics": ["refusal"],
           "labels": ["refused"], "above": 0.05, "window": "5m", "sustained_for": "10m",
           "min_samples": 30}
JUDGE_ERRORS = {"name": "judge_error_rate", "kind": "status_rate", "statuses": ["error"],
                "above": 0.01, "window": "15m", "min_samples": 100}
COST = {"name": "judge_cost_spike", "kind": "cost_ratio", "max_ratio": 2.0, "window": "1d",
        "min_cost_usd": 1.0}
SILENT = {"name": "silent_failure", "kind": "silent_failure", "rubrics": ["faithfulness"],
          "app_error_below": 0.02, "max_drop": 0.10, "window": "15m", "min_samples": 30}


@pytest.fixture
def db(tmp_path):
    return tmp_path / "alerts.duckdb"


def check(db, rule, at=NOW, sink=None):
    report = check_alerts(db, config(rule), now=at, sinks=[sink or RecordingSink()])
    return report


def only(report):
    assert len(report.results) == 1, report.results
    return report.results[0]


def hallucinations(tag, start, end, count, bad, **fields):
    return label_stream(tag, "hallucination", start, end, count, bad, "hallucinated", "factual",
                        **fields)


# -- evidence ---------------------------------------------------------------------------------


def test_wilson_matches_published_values():
    low, high = wilson(10, 100)  # Newcombe (1998), method 3: 0.0552 to 0.1744
    assert low == pytest.approx(0.0552, abs=5e-4) and high == pytest.approx(0.1744, abs=5e-4)
    assert wilson(0, 50)[0] == 0.0 and wilson(50, 50)[1] == 1.0


def test_weights_shrink_the_effective_sample():
    equal = weighted_estimate(100, 100.0, 100.0, 10.0)
    assert (equal.low, equal.high) == pytest.approx(wilson(10, 100))
    # Half the rows stand for 9x more traffic: same n, fewer effective samples, wider interval.
    mixed = weighted_estimate(100, 50 * 1 + 50 * 9, 50 * 1 + 50 * 81, 5 * 1 + 5 * 9)
    assert mixed.n_effective == pytest.approx(500 ** 2 / 4100)
    assert mixed.high - mixed.low > equal.high - equal.low


def test_drop_bound_needs_evidence():
    before = weighted_estimate(100, 100.0, 100.0, 90.0)
    far = weighted_estimate(100, 100.0, 100.0, 60.0)
    near = weighted_estimate(100, 100.0, 100.0, 78.0)
    assert drop_lower_bound(before, far, 0.10) > 0
    assert drop_lower_bound(before, near, 0.10) < 0  # 78 < 81 but not surely


# -- hallucination rate (label_rate) ---------------------------------------------------------


def test_hallucination_rate_fires_on_a_sustained_breach(db):
    write(db, hallucinations("h", NOW - 15 * MINUTE, NOW, 200, 12))
    sink = RecordingSink()
    result = only(check(db, HALLUCINATION, sink=sink))
    assert result.state == "firing"
    assert result.observed == pytest.approx(0.06)
    assert result.interval[0] > 0.005
    [sent] = sink.sent
    assert (sent.kind, sent.rule, sent.window, sent.priority, sent.n) == (
        "firing", "hallucination_rate", "15m", "P1", 200)
    assert sent.threshold == 0.005 and sent.interval == result.interval
    assert 0 < len(sent.example_trace_ids) <= 10
    assert "hallucination_rate" in sent.text and "CI" in sent.text
    with Store(db, read_only=True) as store:
        [stored] = latest_alerts(store)
    assert (stored.rule, stored.state, stored.window, stored.n) == (
        "hallucination_rate", "firing", "15m", 200)
    assert stored.labels == {"rubric": "hallucination", "judge": "judge-a"}
    assert stored.example_trace_ids == sent.example_trace_ids


def test_hallucination_rate_ignores_a_single_spike(db):
    write(db, hallucinations("h", NOW - 15 * MINUTE, NOW, 300, 2))  # 0.67%: above, not surely
    sink = RecordingSink()
    result = only(check(db, HALLUCINATION, sink=sink))
    assert result.state == "pending" and result.interval[0] < 0.005
    assert sink.sent == []


def test_hallucination_rate_needs_a_minimum_sample(db):
    write(db, hallucinations("h", NOW - 15 * MINUTE, NOW, 40, 20))  # 50%, but 40 < 100
    sink = RecordingSink()
    assert only(check(db, HALLUCINATION, sink=sink)).state == "insufficient"
    assert sink.sent == []


def test_hallucination_rate_resolves(db):
    write(db, hallucinations("bad", NOW - 15 * MINUTE, NOW, 200, 12)
          + hallucinations("good", NOW, NOW + 15 * MINUTE, 300, 0))
    sink = RecordingSink()
    check(db, HALLUCINATION, sink=sink)
    result = only(check(db, HALLUCINATION, at=NOW + 15 * MINUTE, sink=sink))
    assert result.state == "ok"
    assert [n.kind for n in sink.sent] == ["firing", "resolved"]
    assert sink.sent[1].alert_id == sink.sent[0].alert_id
    assert sink.sent[1].resolved_at == NOW + 15 * MINUTE
    with Store(db, read_only=True) as store:
        [stored] = latest_alerts(store)
    assert stored.state == "resolved" and stored.resolved_at == NOW + 15 * MINUTE


def test_rates_use_the_sampling_weights(db):
    """Hallucinations concentrated in the always-evaluated (weight 1) traces are a small share
    of all traffic when the random sample (weight 10) is clean: no alert."""
    always = hallucinations("err", NOW - 15 * MINUTE, NOW, 50, 10, weight=1.0)
    sampled = hallucinations("rnd", NOW - 15 * MINUTE, NOW, 100, 0, weight=10.0)
    write(db, always + sampled)
    result = only(check(db, HALLUCINATION))
    assert result.observed == pytest.approx(10 / 1050)
    assert result.n_effective < 150
    assert result.state != "firing"
    unweighted = only(check(db, {**HALLUCINATION, "weighted": False}))
    assert unweighted.state == "firing"  # 10/150 = 6.7% if every row counted once


# -- mean score below a floor ------------------------------------------------------------------


def faithfulness(tag, start, end, scores):
    return score_stream(tag, "faithfulness", start, end, scores)


def test_low_mean_score_fires_ignores_spikes_and_small_samples_and_resolves(db):
    write(db, faithfulness("bad", NOW - 15 * MINUTE, NOW, [0.4] * 60)
          + faithfulness("spike", NOW, NOW + 15 * MINUTE, [1.0] * 95 + [0.0] * 5)
          + faithfulness("few", NOW + 15 * MINUTE, NOW + 30 * MINUTE, [0.0] * 10))
    sink = RecordingSink()
    fired = only(check(db, LOW_SCORE, sink=sink))
    assert fired.state == "firing" and fired.interval[1] < 0.7
    resolved = only(check(db, LOW_SCORE, at=NOW + 15 * MINUTE, sink=sink))
    assert resolved.state == "ok"  # five zeros among a hundred scores: mean 0.95
    assert only(check(db, LOW_SCORE, at=NOW + 30 * MINUTE, sink=sink)).state == "insufficient"
    assert [n.kind for n in sink.sent] == ["firing", "resolved"]


# -- score drop vs the previous window ---------------------------------------------------------


def test_score_drop_fires_on_a_real_drop(db):
    write(db, faithfulness("before", NOW - 30 * MINUTE, NOW - 15 * MINUTE, [0.9] * 100)
          + faithfulness("now", NOW - 15 * MINUTE, NOW, [0.6] * 100))
    result = only(check(db, DROP))
    assert result.state == "firing"
    assert result.threshold == pytest.approx(0.81)
    assert "-33.3%" in result.message


def test_score_drop_ignores_a_spike_and_small_samples(db):
    write(db, faithfulness("before", NOW - 30 * MINUTE, NOW - 15 * MINUTE, [0.9] * 100)
          + faithfulness("now", NOW - 15 * MINUTE, NOW, [0.9] * 97 + [0.0] * 3)
          + faithfulness("few", NOW, NOW + 15 * MINUTE, [0.0] * 10))
    assert only(check(db, DROP)).state == "ok"
    assert only(check(db, DROP, at=NOW + 15 * MINUTE)).state == "insufficient"


def test_score_drop_resolves(db):
    write(db, faithfulness("before", NOW - 30 * MINUTE, NOW - 15 * MINUTE, [0.9] * 100)
          + faithfulness("now", NOW - 15 * MINUTE, NOW, [0.6] * 100)
          + faithfulness("after", NOW, NOW + 15 * MINUTE, [0.9] * 100))
    sink = RecordingSink()
    check(db, DROP, sink=sink)
    assert only(check(db, DROP, at=NOW + 15 * MINUTE, sink=sink)).state == "ok"
    assert [n.kind for n in sink.sent] == ["firing", "resolved"]


# -- refusal rate sustained for 10 minutes -----------------------------------------------------


def refusals(tag, start, end, count, bad):
    return label_stream(tag, "refusal", start, end, count, bad, "refused", "complied")


def test_refusal_rate_fires_when_sustained_for_ten_minutes(db):
    write(db, refusals("a", NOW - 10 * MINUTE, NOW - 5 * MINUTE, 60, 12)
          + refusals("b", NOW - 5 * MINUTE, NOW, 60, 12))
    result = only(check(db, REFUSAL))
    assert result.state == "firing" and result.window == "2 x 5m"


def test_refusal_spike_in_one_window_does_not_fire(db):
    write(db, refusals("a", NOW - 10 * MINUTE, NOW - 5 * MINUTE, 60, 0)
          + refusals("b", NOW - 5 * MINUTE, NOW, 60, 12))
    sink = RecordingSink()
    result = only(check(db, REFUSAL, sink=sink))
    assert result.state == "pending" and "not yet sustained" in result.notes[0]
    assert sink.sent == []


def test_refusal_rate_small_sample_and_resolution(db):
    write(db, refusals("a", NOW - 10 * MINUTE, NOW - 5 * MINUTE, 60, 12)
          + refusals("b", NOW - 5 * MINUTE, NOW, 60, 12)
          + refusals("c", NOW, NOW + 5 * MINUTE, 60, 0)
          + refusals("d", NOW + 5 * MINUTE, NOW + 10 * MINUTE, 10, 5))
    sink = RecordingSink()
    check(db, REFUSAL, sink=sink)
    assert only(check(db, REFUSAL, at=NOW + 5 * MINUTE, sink=sink)).state == "ok"
    assert only(check(db, REFUSAL, at=NOW + 10 * MINUTE, sink=sink)).state == "insufficient"
    assert [n.kind for n in sink.sent] == ["firing", "resolved"]


# -- judge error rate (status_rate, unweighted) ------------------------------------------------


def test_judge_error_rate(db):
    write(db, status_stream("bad", NOW - 15 * MINUTE, NOW, 200, 10, weight=10.0)
          + status_stream("spike", NOW, NOW + 15 * MINUTE, 300, 1)
          + status_stream("few", NOW + 15 * MINUTE, NOW + 30 * MINUTE, 50, 25))
    sink = RecordingSink()
    fired = only(check(db, JUDGE_ERRORS, sink=sink))
    assert fired.state == "firing" and fired.n_effective == 200  # unweighted: every call counts once
    assert fired.labels == {"judge": "judge-a"}
    assert only(check(db, JUDGE_ERRORS, at=NOW + 15 * MINUTE, sink=sink)).state == "ok"
    assert only(check(db, JUDGE_ERRORS, at=NOW + 30 * MINUTE, sink=sink)).state == "insufficient"
    assert [n.kind for n in sink.sent] == ["firing", "resolved"]


# -- judge cost per day ------------------------------------------------------------------------


DAY = timedelta(days=1)


def costs(tag, start, end, count, each):
    return [evaluation(f"{tag}-{i}", "relevance", at, label="relevant", score=1.0, cost=each)
            for i, at in enumerate(spread(count, start, end))]


def test_cost_per_day_fires_above_twice_the_day_before_and_resolves(db):
    write(db, costs("d1", NOW - 2 * DAY, NOW - DAY, 50, 0.2)      # 10 USD
          + costs("d2", NOW - DAY, NOW, 50, 0.5)                 # 25 USD > 2 x 10
          + costs("d3", NOW, NOW + DAY, 50, 0.3))                # 15 USD < 2 x 25
    sink = RecordingSink()
    fired = only(check(db, COST, sink=sink))
    assert fired.state == "firing"
    assert fired.observed == pytest.approx(25) and fired.threshold == pytest.approx(20)
    assert only(check(db, COST, at=NOW + DAY, sink=sink)).state == "ok"
    assert [n.kind for n in sink.sent] == ["firing", "resolved"]


def test_unknown_cost_never_fires_but_is_noted(db):
    spend = costs("d1", NOW - 2 * DAY, NOW - DAY, 50, 0.2) + costs("d2", NOW - DAY, NOW, 50, 0.5)
    unknown = evaluation("unpriced", "relevance", NOW - MINUTE, label="relevant", score=1.0, cost=None)
    write(db, spend + [unknown])
    sink = RecordingSink()
    result = only(check(db, COST, sink=sink))
    assert result.state == "unknown" and "unknown cost" in result.message
    assert sink.sent == []


def test_cost_needs_a_previous_day(db):
    write(db, costs("d2", NOW - DAY, NOW, 50, 0.5))
    assert only(check(db, COST)).state == "insufficient"


# -- silent failure ----------------------------------------------------------------------------


def test_silent_failure_fires_when_the_app_looks_healthy(db):
    streams = (faithfulness("before", NOW - 30 * MINUTE, NOW - 15 * MINUTE, [0.9] * 100)
               + faithfulness("now", NOW - 15 * MINUTE, NOW, [0.6] * 100))
    write(db, streams, traces_for(streams))
    result = only(check(db, SILENT))
    assert result.state == "firing" and "app error rate 0.00%" in result.notes[0]


def test_silent_failure_stays_quiet_when_the_app_fails_loudly(db):
    streams = (faithfulness("before", NOW - 30 * MINUTE, NOW - 15 * MINUTE, [0.9] * 100)
               + faithfulness("now", NOW - 15 * MINUTE, NOW, [0.6] * 100))
    write(db, streams, traces_for(streams, error_every=3))
    assert only(check(db, SILENT)).state == "ok"


def test_silent_failure_small_sample_and_resolution(db):
    streams = (faithfulness("before", NOW - 30 * MINUTE, NOW - 15 * MINUTE, [0.9] * 100)
               + faithfulness("now", NOW - 15 * MINUTE, NOW, [0.6] * 100)
               + faithfulness("after", NOW, NOW + 15 * MINUTE, [0.9] * 100)
               + faithfulness("few", NOW + 15 * MINUTE, NOW + 30 * MINUTE, [0.1] * 5))
    write(db, streams, traces_for(streams))
    sink = RecordingSink()
    check(db, SILENT, sink=sink)
    assert only(check(db, SILENT, at=NOW + 15 * MINUTE, sink=sink)).state == "ok"
    assert only(check(db, SILENT, at=NOW + 30 * MINUTE, sink=sink)).state == "insufficient"
    assert [n.kind for n in sink.sent] == ["firing", "resolved"]


# -- de-duplication and cooldown ---------------------------------------------------------------


def test_an_open_alert_is_not_sent_twice(db):
    write(db, hallucinations("h", NOW - 20 * MINUTE, NOW, 300, 20))
    sink = RecordingSink()
    for minute in range(4):
        check(db, HALLUCINATION, at=NOW - 3 * MINUTE + minute * MINUTE, sink=sink)
    assert [n.kind for n in sink.sent] == ["firing"]
    with Store(db, read_only=True) as store:
        assert len(latest_alerts(store)) == 1


def test_cooldown_holds_back_a_flapping_alert(db):
    rule = {**HALLUCINATION, "cooldown": "1h"}
    write(db, hallucinations("a", NOW - 15 * MINUTE, NOW, 200, 12)
          + hallucinations("b", NOW, NOW + 15 * MINUTE, 200, 0)
          + hallucinations("c", NOW + 15 * MINUTE, NOW + 30 * MINUTE, 200, 12)
          + hallucinations("d", NOW + 50 * MINUTE, NOW + 65 * MINUTE, 200, 12))
    sink = RecordingSink()
    check(db, rule, sink=sink)                                   # fires, notified
    check(db, rule, at=NOW + 15 * MINUTE, sink=sink)             # resolves, notified
    again = check(db, rule, at=NOW + 30 * MINUTE, sink=sink)     # fires again within 1h: held
    assert only(again).state == "firing"
    assert [n.kind for n in sink.sent] == ["firing", "resolved"]
    check(db, rule, at=NOW + 65 * MINUTE, sink=sink)             # still firing, cooldown over
    assert [n.kind for n in sink.sent] == ["firing", "resolved", "firing"]
    assert sink.sent[2].fired_at == NOW + 30 * MINUTE


def test_rates_are_per_judge(db):
    write(db, hallucinations("a", NOW - 15 * MINUTE, NOW, 200, 12, judge="judge-a")
          + hallucinations("b", NOW - 15 * MINUTE, NOW, 200, 0, judge="judge-b"))
    states = {r.labels["judge"]: r.state for r in check(db, HALLUCINATION).results}
    assert states == {"judge-a": "firing", "judge-b": "ok"}


# -- the rules file and the CLI ----------------------------------------------------------------


def test_shipped_rules_carry_the_documented_defaults():
    rules = {rule.name: rule for rule in load_alert_config(DEFAULT_CONFIG_PATH).rules}
    assert rules["hallucination_rate"].above == 0.005
    assert rules["quality_score_low"].below == 0.7
    assert set(rules["quality_score_low"].rubrics) == {"faithfulness", "relevance"}
    assert rules["quality_score_drop"].max_drop == 0.10
    assert rules["refusal_rate"].above == 0.05
    assert rules["refusal_rate"].windows_needed() == 2
    assert rules["judge_error_rate"].above == 0.01
    assert rules["judge_cost_spike"].max_ratio == 2.0
    assert rules["silent_failure"].kind == "silent_failure"
    assert {rule.window for rule in rules.values()} <= {parse_duration(x) for x in ("5m", "15m", "1d")}
    assert {rule.priority for rule in rules.values()} == {"P1", "P2", "P3"}


def test_bad_rules_file_names_file_and_field(tmp_path):
    path = tmp_path / "alerts.yaml"
    path.write_text("rules:\n  - name: x\n    kind: label_rate\n    rubrics: [refusal]\n"
                    "    labels: [refused]\n    above: 5\n")
    with pytest.raises(ConfigError, match=r"alerts\.yaml: rules\.0\.label_rate\.above"):
        load_alert_config(path)
    with pytest.raises(ConfigError, match="no alert rules at"):
        load_alert_config(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("ten minutes")


def test_cli_check_and_list(db, tmp_path):
    write(db, hallucinations("h", NOW - 15 * MINUTE, NOW, 200, 12))
    rules = tmp_path / "rules.yaml"
    rules.write_text(json.dumps({"rules": [HALLUCINATION], "sinks": [
        {"kind": "file", "path": str(tmp_path / "sent.jsonl")}]}))
    runner = CliRunner()
    args = ["alerts", "check", "--db", str(db), "--config", str(rules), "--at", NOW.isoformat()]
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["firing"] == 1 and report["notifications"][0]["rule"] == "hallucination_rate"
    assert json.loads((tmp_path / "sent.jsonl").read_text())["alert"]["n"] == 200
    assert runner.invoke(cli, [*args, "--fail-on-firing"]).exit_code == 1
    listed = runner.invoke(cli, ["alerts", "list", "--db", str(db), "--json"])
    assert json.loads(listed.output)[0]["state"] == "firing"


# -- hostile rules files (issue 13) ------------------------------------------------------------


def rules_file(tmp_path, *rules):
    path = tmp_path / "rules.yaml"
    path.write_text(json.dumps({"rules": list(rules), "sinks": [{"kind": "log"}]}))
    return path


@pytest.mark.parametrize("field, value, problem", [
    ("window", 0.5, "at least 1s"),
    ("window", "0.5s", "at least 1s"),
    ("window", "99999999999d", "at most"),
    ("window", "9" * 400 + "d", "at most"),
    ("cooldown", "99999999999d", "at most"),
    ("sustained_for", "99999999999d", "at most"),
    ("sustained_for", "365d", "at most 100 windows"),
])
def test_a_window_that_cannot_be_checked_is_refused_at_load(tmp_path, field, value, problem):
    path = rules_file(tmp_path, {**REFUSAL, "window": "1s", field: value})
    with pytest.raises(ConfigError, match=rf"rules\.0\.label_rate.*{problem}"):
        load_alert_config(path)


def test_a_rule_reading_more_than_a_year_back_is_refused(tmp_path):
    path = rules_file(tmp_path, {**DROP, "window": "300d"})
    with pytest.raises(ConfigError, match="366d"):
        load_alert_config(path)


def test_parse_duration_never_overflows():
    for text in ("99999999999d", "9" * 400 + "s", "1e308"):
        with pytest.raises(ValueError):
            parse_duration(text)
    with pytest.raises(ValueError):
        parse_duration(float("nan"))
    assert parse_duration("1.5m") == timedelta(seconds=90)


def test_report_since_a_huge_duration_is_a_clear_error(tmp_path):
    db = tmp_path / "r.duckdb"
    write(db, [])
    result = CliRunner().invoke(cli, ["report", "--db", str(db), "--html", str(tmp_path / "r.html"),
                                      "--since", "99999999999d"])
    assert isinstance(result.exception, ConfigError), result.exception
    assert "--since" in str(result.exception)


def broken_for(monkeypatch, rubric):
    """Make every window query of one rubric fail, as a corrupt table or a bug would."""
    from evaluator.store import window_queries

    real = window_queries.measure_window

    def measure(store, measure, start, end, judge, rubric_=None, *args, **kwargs):
        if rubric_ == rubric:
            raise RuntimeError(f"cannot read {rubric}")
        return real(store, measure, start, end, judge, rubric_, *args, **kwargs)

    monkeypatch.setattr(window_queries, "measure_window", measure)


def test_one_failing_rule_does_not_disable_the_others(db, monkeypatch, caplog):
    write(db, hallucinations("h", NOW - 15 * MINUTE, NOW, 200, 12)
          + faithfulness("f", NOW - 15 * MINUTE, NOW, [0.9] * 40))
    broken_for(monkeypatch, "faithfulness")
    sink = RecordingSink()
    with caplog.at_level("ERROR", logger="evaluator.monitoring.alerts"):
        report = check_alerts(db, config(LOW_SCORE, HALLUCINATION), now=NOW, sinks=[sink])
    assert [(r.rule, r.state) for r in report.results] == [("hallucination_rate", "firing")]
    assert [n.rule for n in sink.sent] == ["hallucination_rate"]
    [failure] = report.rule_failures
    assert failure.rule == "quality_score_low" and "cannot read faithfulness" in failure.error
    assert report.to_dict()["rule_failures"][0]["rule"] == "quality_score_low"
    assert "quality_score_low" in caplog.text and "cannot read faithfulness" in caplog.text


def test_cli_check_exits_2_when_a_rule_failed(db, tmp_path, monkeypatch):
    write(db, hallucinations("h", NOW - 15 * MINUTE, NOW, 200, 12)
          + faithfulness("f", NOW - 15 * MINUTE, NOW, [0.9] * 40))
    broken_for(monkeypatch, "faithfulness")
    rules = rules_file(tmp_path, LOW_SCORE, HALLUCINATION)
    args = ["alerts", "check", "--db", str(db), "--config", str(rules), "--at", NOW.isoformat()]
    as_json = CliRunner().invoke(cli, [*args, "--json"])
    assert as_json.exit_code == 2, as_json.output
    report = json.loads(as_json.stdout)
    assert report["firing"] == 1 and report["rule_failures"][0]["rule"] == "quality_score_low"
    table = CliRunner().invoke(cli, args)
    assert table.exit_code == 2 and "quality_score_low" in table.output
    assert "could not be checked" in table.output
