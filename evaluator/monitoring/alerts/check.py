"""One alert check: aggregate windows, judge every rule, update the alert book, notify.

`check_alerts` is what `evaluator alerts check` and the sink's schedule call. The store is
held only while reading and recording; notifications go out after it is closed, so a slow
webhook never blocks the sink's writes. A rule that fails to evaluate is logged at ERROR and
listed in the report's `rule_failures` (`alerts check` then exits 2); the other rules still run
and notify, and the failed rule's open alerts stay open.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from evaluator.core.errors import StoreError
from evaluator.core.records import utcnow
from evaluator.monitoring.alerts.evaluation import (
    RuleResult,
    cost_result,
    drop_result,
    silent_failure_result,
    threshold_result,
)
from evaluator.monitoring.alerts.rules import (
    AlertConfig,
    LabelRateRule,
    MeanScoreRule,
    ScoreDropRule,
    SilentFailureRule,
    StatusRateRule,
)
from evaluator.monitoring.alerts.sinks import AlertSink, Notification, build_sinks, deliver
from evaluator.monitoring.alerts.state import AlertBook
from evaluator.store import Store
from evaluator.store import window_queries as w
from evaluator.worker.metrics import metrics

log = logging.getLogger("evaluator.monitoring.alerts")


@dataclass(frozen=True)
class RuleFailure:
    """A rule that could not be evaluated in this check."""

    rule: str
    priority: str
    error: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "priority": self.priority, "error": self.error}


@dataclass
class CheckReport:
    checked_at: datetime
    results: list[RuleResult] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    delivery_failures: list[str] = field(default_factory=list)
    rule_failures: list[RuleFailure] = field(default_factory=list)

    @property
    def firing(self) -> list[RuleResult]:
        return [r for r in self.results if r.state == "firing"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked_at": self.checked_at.isoformat(),
            "firing": len(self.firing),
            "results": [r.to_dict() for r in self.results],
            "notifications": [n.to_dict() for n in self.notifications],
            "delivery_failures": self.delivery_failures,
            "rule_failures": [f.to_dict() for f in self.rule_failures],
        }


def window_bounds(now: datetime, length: timedelta, count: int) -> list[tuple[datetime, datetime]]:
    """`count` consecutive windows ending at now, (now - length, now] first, then the one before."""
    return [(now - (i + 1) * length, now - i * length) for i in range(count)]


def _span_judges(store: Store, rule: Any, now: datetime,
                 rubric: str | None) -> list[str]:
    bounds = window_bounds(now, rule.window, rule.windows_needed())
    return w.judges_seen(store, bounds[-1][0], bounds[0][1], rubric)


def _rate_results(store: Store, rule: LabelRateRule | StatusRateRule | MeanScoreRule,
                  now: datetime) -> list[RuleResult]:
    bounds = window_bounds(now, rule.window, rule.windows_needed())
    rubrics: list[str | None]
    measure: w.Measure
    values: list[str] | None
    if isinstance(rule, StatusRateRule):
        rubrics, measure, values = [None], "status_rate", list(rule.statuses)
        what = f"judge {'/'.join(rule.statuses)} rate"
    elif isinstance(rule, LabelRateRule):
        rubrics, measure, values = list(rule.rubrics), "label_rate", rule.labels
        what = f"rate of {'/'.join(rule.labels)}"
    else:
        rubrics, measure, values, what = list(rule.rubrics), "mean_score", None, "mean score"
    threshold = rule.below if isinstance(rule, MeanScoreRule) else rule.above
    results = []
    for rubric in rubrics:
        for judge in _span_judges(store, rule, now, rubric):
            stats = [w.measure_window(store, measure, start, end, judge, rubric, values, rule.weighted)
                     for start, end in bounds]
            labels = {"rubric": rubric, "judge": judge} if rubric else {"judge": judge}
            results.append(threshold_result(
                rule, labels, stats, threshold=threshold, above=not isinstance(rule, MeanScoreRule),
                what=what, percent=not isinstance(rule, MeanScoreRule)))
    return results


def _drop_results(store: Store, rule: ScoreDropRule,
                  now: datetime) -> list[RuleResult]:
    (current, previous) = window_bounds(now, rule.window, 2)
    app_errors = w.app_error_window(store, *current) if isinstance(rule, SilentFailureRule) else None
    results = []
    for rubric in rule.rubrics:
        for judge in _span_judges(store, rule, now, rubric):
            now_stats, before = (w.measure_window(store, "mean_score", start, end, judge, rubric,
                                                  weighted=rule.weighted)
                                 for start, end in (current, previous))
            labels = {"rubric": rubric, "judge": judge}
            if isinstance(rule, SilentFailureRule) and app_errors is not None:
                results.append(silent_failure_result(rule, labels, now_stats, before, app_errors,
                                                     "mean score"))
            else:
                results.append(drop_result(rule, labels, now_stats, before, "mean score"))
    return results


def _rule_results(store: Store, rule: Any, now: datetime) -> list[RuleResult]:
    if isinstance(rule, (LabelRateRule, StatusRateRule, MeanScoreRule)):
        return _rate_results(store, rule, now)
    if isinstance(rule, ScoreDropRule):
        return _drop_results(store, rule, now)
    current, previous = window_bounds(now, rule.window, 2)
    return [cost_result(rule, w.cost_window(store, *current), w.cost_window(store, *previous))]


def evaluate_rules(store: Store, config: AlertConfig,
                   now: datetime) -> tuple[list[RuleResult], list[RuleFailure]]:
    """Every enabled rule's verdicts at `now` (one per rubric and judge where it applies), and
    the rules that failed: one failing rule never takes the others down with it."""
    results: list[RuleResult] = []
    failures: list[RuleFailure] = []
    for rule in config.enabled_rules:
        try:
            results.extend(_rule_results(store, rule, now))
        except Exception as exc:  # isolate it: a P1 rule must still run when a P3 one breaks
            failure = RuleFailure(rule.name, rule.priority, f"{type(exc).__name__}: {exc}")
            log.error("alert rule %s (%s) could not be checked, the other rules ran: %s",
                      rule.name, rule.priority, failure.error,
                      extra={"rule": rule.name, "priority": rule.priority})
            failures.append(failure)
    return results, failures


def check_alerts(db_path: str | Path, config: AlertConfig, now: datetime | None = None,
                 sinks: Sequence[AlertSink] | None = None, lake: Path | None = None) -> CheckReport:
    """Evaluate the rules once against the store (and the Parquet `lake`, if any), record
    alerts, send notifications."""
    now = now or utcnow()
    if not Path(db_path).exists():
        raise StoreError(f"no store at {db_path}: run `evaluator run` or start `evaluator sink` first")
    sinks = build_sinks(config.sinks) if sinks is None else sinks
    report = CheckReport(checked_at=now)
    with Store(db_path, lake=lake) as store:
        report.results, report.rule_failures = evaluate_rules(store, config, now)
        cooldowns = {rule.name: rule.cooldown for rule in config.rules}
        report.notifications = AlertBook(store, now).apply(report.results, cooldowns)
    report.delivery_failures = deliver(sinks, report.notifications)
    _count_notifications(report.notifications)
    return report


def _count_notifications(notifications: Sequence[Notification]) -> None:
    for notification in notifications:
        metrics().alert_notifications.labels(notification.rule, notification.kind).inc()
