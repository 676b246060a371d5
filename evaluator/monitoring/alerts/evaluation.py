"""Rule verdicts as pure functions of aggregated windows (no store, no clock).

Every verdict has a state:
- `firing`: the evidence is strong: enough samples, and the interval bound beyond the
  threshold in every window the rule needs (the newest window first);
- `pending`: the point estimate is beyond the threshold, the evidence not (yet) strong enough;
- `ok`: the point estimate is within the threshold: an open alert resolves;
- `insufficient`: too few samples to say anything: an open alert stays open;
- `unknown`: the input is incomplete (judge calls with unknown cost): noted, never fired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from evaluator.core.records import canonical_json
from evaluator.monitoring.alerts.evidence import Estimate, drop_lower_bound, weighted_estimate
from evaluator.monitoring.alerts.rules import (
    CostRatioRule,
    RuleBase,
    ScoreDropRule,
    SilentFailureRule,
    format_duration,
)
from evaluator.store.window_queries import CostStats, WindowStats

State = Literal["firing", "pending", "ok", "insufficient", "unknown"]


@dataclass(frozen=True)
class RuleResult:
    rule: str
    labels: dict[str, str]
    priority: str
    window: str
    state: State
    message: str
    observed: float | None = None
    interval: tuple[float, float] | None = None
    threshold: float | None = None
    n: int = 0
    n_effective: float | None = None
    example_trace_ids: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def dedup_key(self) -> str:
        """One open alert at most per rule and labels."""
        return f"{self.rule}|{canonical_json(self.labels)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "labels": self.labels, "priority": self.priority,
            "window": self.window, "state": self.state, "message": self.message,
            "observed": self.observed,
            "interval": None if self.interval is None else list(self.interval),
            "threshold": self.threshold, "n": self.n, "n_effective": self.n_effective,
            "example_trace_ids": list(self.example_trace_ids), "notes": list(self.notes),
        }


def fmt(value: float, percent: bool) -> str:
    if not percent:
        return f"{value:.3f}"
    return f"{100 * value:.2f}%" if value < 0.1 else f"{100 * value:.1f}%"


def _describe(estimate: Estimate, confidence: float, percent: bool) -> str:
    return (f"{fmt(estimate.value, percent)} ({confidence:.0%} CI {fmt(estimate.low, percent)}"
            f" to {fmt(estimate.high, percent)}, n={estimate.n}, n_eff={estimate.n_effective:.0f})")


def _estimate(window: WindowStats, rule: RuleBase) -> Estimate | None:
    if window.n < rule.min_samples:
        return None
    return weighted_estimate(window.n, window.sum_w, window.sum_w2, window.sum_wx, rule.confidence)


def _base(rule: RuleBase, labels: dict[str, str]) -> dict[str, Any]:
    return {"rule": rule.name, "labels": labels, "priority": rule.priority,
            "window": rule.window_text()}


def _too_few(rule: RuleBase, labels: dict[str, str], what: str, window: WindowStats,
             threshold: float | None, when: str = "the last") -> RuleResult:
    return RuleResult(
        **_base(rule, labels), state="insufficient", threshold=threshold, n=window.n,
        message=(f"{_head(rule, labels)}: {what} from {window.n} evaluations in {when} {_one(rule)},"
                 f" fewer than the {rule.min_samples} needed to decide"),
    )


def threshold_result(rule: RuleBase, labels: dict[str, str], windows: Sequence[WindowStats], *,
                     threshold: float, above: bool, what: str, percent: bool) -> RuleResult:
    """A rate or mean against a fixed threshold; `windows` newest first, all must breach."""
    estimates = [_estimate(w, rule) for w in windows]
    current = estimates[0]
    if current is None:
        return _too_few(rule, labels, what, windows[0], threshold)

    def breached(e: Estimate) -> bool:
        return e.value > threshold if above else e.value < threshold

    def evident(e: Estimate | None) -> bool:
        return e is not None and (e.low > threshold if above else e.high < threshold)

    notes: tuple[str, ...] = ()
    if all(evident(e) for e in estimates):
        state: State = "firing"
    elif breached(current):
        state = "pending"
        if evident(current) and len(windows) > 1:
            notes = (f"breach not yet sustained over {rule.window_text()}",)
    else:
        state = "ok"
    relation = "above" if above else "below"
    sustained = f" for {len(windows)} windows in a row" if len(windows) > 1 else ""
    return RuleResult(
        **_base(rule, labels), state=state, observed=current.value,
        interval=(current.low, current.high), threshold=threshold, n=current.n,
        n_effective=current.n_effective, example_trace_ids=windows[0].examples, notes=notes,
        message=(f"{_head(rule, labels)}: {what} {_describe(current, rule.confidence, percent)}"
                 f" over the last {_one(rule)}; alerts {relation} {fmt(threshold, percent)}{sustained}"),
    )


def _drop_verdict(rule: ScoreDropRule, current: Estimate, previous: Estimate) -> State:
    if drop_lower_bound(previous, current, rule.max_drop) > 0:
        return "firing"
    return "pending" if current.value < (1 - rule.max_drop) * previous.value else "ok"


def drop_result(rule: ScoreDropRule, labels: dict[str, str], current: WindowStats,
                previous: WindowStats, what: str) -> RuleResult:
    """The mean score of the newest window against (1 - max_drop) x the window before."""
    now_estimate, before = _estimate(current, rule), _estimate(previous, rule)
    if now_estimate is None or before is None:
        if now_estimate is None:
            return _too_few(rule, labels, what, current, None)
        return _too_few(rule, labels, what, previous, None, when="the previous")
    threshold = (1 - rule.max_drop) * before.value
    change = now_estimate.value / before.value - 1 if before.value else 0.0
    return RuleResult(
        **_base(rule, labels), state=_drop_verdict(rule, now_estimate, before),
        observed=now_estimate.value, interval=(now_estimate.low, now_estimate.high),
        threshold=threshold, n=now_estimate.n, n_effective=now_estimate.n_effective,
        example_trace_ids=current.examples,
        message=(f"{_head(rule, labels)}: {what} {_describe(now_estimate, rule.confidence, False)}"
                 f" in the last {_one(rule)}, {change:+.1%} vs {before.value:.3f} in the {_one(rule)}"
                 f" before; alerts on a drop of more than {rule.max_drop:.0%} (below {threshold:.3f})"),
    )


def silent_failure_result(rule: SilentFailureRule, labels: dict[str, str], current: WindowStats,
                          previous: WindowStats, app_errors: WindowStats, what: str) -> RuleResult:
    """A quality drop while the app's own error rate is low: nothing else would page anyone."""
    dropped = drop_result(rule, labels, current, previous, what)
    if dropped.state == "insufficient":
        return dropped
    errors = weighted_estimate(app_errors.n, app_errors.sum_w, app_errors.sum_w2, app_errors.sum_wx,
                               rule.confidence)
    if errors is None:
        app_note, quiet = "app error rate unknown (no traces stored for the window)", False
    else:
        # What the app's own dashboards show: the point estimate, not a bound.
        app_note = f"app error rate {_describe(errors, rule.confidence, True)}"
        quiet = errors.value < rule.app_error_below
    state = dropped.state
    if state in ("firing", "pending") and not quiet:
        state = "ok" if errors is not None else "pending"  # failing loudly: not silent
    return replace(dropped, state=state, notes=(app_note,), message=f"{dropped.message}; {app_note}")


def cost_result(rule: CostRatioRule, current: CostStats, previous: CostStats) -> RuleResult:
    """Judge spend of the newest window against max_ratio x the window before."""
    base = _base(rule, {})
    if current.unknown or previous.unknown:
        return RuleResult(
            **base, state="unknown", n=current.calls, observed=current.cost_usd,
            message=(f"{rule.name}: judge cost cannot be compared, {current.unknown} of"
                     f" {current.calls} calls in the last {_one(rule)} and {previous.unknown} of"
                     f" {previous.calls} in the {_one(rule)} before have unknown cost"),
            notes=("unknown cost is never counted as free",),
        )
    if previous.calls < rule.min_samples:
        return RuleResult(
            **base, state="insufficient", n=current.calls, observed=current.cost_usd,
            message=(f"{rule.name}: {previous.calls} judge calls in the previous {_one(rule)},"
                     f" fewer than the {rule.min_samples} needed for a baseline"),
        )
    threshold = rule.max_ratio * previous.cost_usd
    over = current.cost_usd > threshold
    state: State = "firing" if over and current.cost_usd >= rule.min_cost_usd else "ok"
    notes = (f"below the {rule.min_cost_usd:.2f} USD floor",) if over and state == "ok" else ()
    return RuleResult(
        **base, state=state, observed=current.cost_usd, threshold=threshold, n=current.calls,
        example_trace_ids=current.examples, notes=notes,
        message=(f"{rule.name}: judge cost {current.cost_usd:.2f} USD over the last {_one(rule)}"
                 f" ({current.calls} calls) vs {previous.cost_usd:.2f} USD the {_one(rule)} before;"
                 f" alerts above {rule.max_ratio:g}x ({threshold:.2f} USD)"),
    )


def _one(rule: RuleBase) -> str:
    """One window's length, e.g. '5m'."""
    return format_duration(rule.window)


def _head(rule: RuleBase, labels: dict[str, str]) -> str:
    if not labels:
        return rule.name
    return f"{rule.name} (" + ", ".join(f"{k}={v}" for k, v in labels.items()) + ")"
