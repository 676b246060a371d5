"""Alert lifecycle in the `alerts` table: de-duplication, cooldown, resolution.

Per rule and labels (the dedup key) there is at most one open (`firing`) alert:
- a firing verdict with no open alert opens one and notifies, unless the same key notified
  less than the rule's cooldown ago (flapping): then the alert is stored silently and
  notified on a later check if it is still firing once the cooldown is over;
- a firing verdict with an open alert updates it (no new message);
- an `ok` verdict resolves the open alert, with a resolved message if it had been notified;
- `pending`, `insufficient` and `unknown` verdicts leave an open alert open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

from evaluator.core.records import sha256_hex
from evaluator.monitoring.alerts.evaluation import RuleResult
from evaluator.monitoring.alerts.sinks import Notification
from evaluator.store import Store
from evaluator.store import alert_queries as queries
from evaluator.store.alert_queries import AlertReading, NewAlert, OpenAlert


def _notification(kind: Literal["firing", "resolved"], alert_id: str, fired_at: datetime, result: RuleResult,
                  resolved_at: datetime | None = None) -> Notification:
    return Notification(
        kind=kind, alert_id=alert_id, rule=result.rule, labels=result.labels,
        priority=result.priority, window=result.window, observed=result.observed,
        interval=result.interval, threshold=result.threshold, n=result.n,
        example_trace_ids=result.example_trace_ids, message=result.message, fired_at=fired_at,
        resolved_at=resolved_at,
    )


def _reading(result: RuleResult) -> AlertReading:
    return AlertReading(result.observed, result.interval, result.threshold, result.n,
                        result.n_effective, result.message, result.example_trace_ids)


class AlertBook:
    """The alert table of one store, for one check at time `now`."""

    def __init__(self, store: Store, now: datetime) -> None:
        self.store = store
        self.now = now

    def _cooling_down(self, key: str, cooldown: timedelta) -> bool:
        last = queries.last_notified(self.store, key)
        return last is not None and self.now - last < cooldown

    def apply(self, results: Sequence[RuleResult],
              cooldowns: Mapping[str, timedelta]) -> list[Notification]:
        """Record the verdicts of one check; return the notifications to send."""
        notifications: list[Notification] = []
        with self.store.transaction():
            open_alerts = queries.open_alerts(self.store)
            for result in results:
                found = open_alerts.get(result.dedup_key)
                cooldown = cooldowns.get(result.rule, timedelta(0))
                if result.state == "firing":
                    notification = (self._fire(result, cooldown) if found is None
                                    else self._refresh(result, found, cooldown))
                elif result.state == "ok" and found is not None:
                    notification = self._resolve(result, found)
                else:
                    notification = None
                if notification is not None:
                    notifications.append(notification)
        return notifications

    def _fire(self, result: RuleResult, cooldown: timedelta) -> Notification | None:
        notify = not self._cooling_down(result.dedup_key, cooldown)
        alert_id = sha256_hex(f"{result.dedup_key}\x1f{self.now.isoformat()}")[:16]
        alert = NewAlert(alert_id, result.rule, result.labels, result.dedup_key, result.priority,
                         result.window)
        queries.insert_firing(self.store, alert, _reading(result), self.now, notify)
        return _notification("firing", alert_id, self.now, result) if notify else None

    def _refresh(self, result: RuleResult, found: OpenAlert,
                 cooldown: timedelta) -> Notification | None:
        notify = found.notified_at is None and not self._cooling_down(result.dedup_key, cooldown)
        queries.refresh_firing(self.store, found.alert_id, _reading(result), self.now, notify)
        return _notification("firing", found.alert_id, found.fired_at, result) if notify else None

    def _resolve(self, result: RuleResult, found: OpenAlert) -> Notification | None:
        queries.resolve(self.store, found.alert_id, _reading(result), self.now)
        if found.notified_at is None:
            return None  # nobody heard it fire: a resolution would be noise
        return _notification("resolved", found.alert_id, found.fired_at, result,
                             resolved_at=self.now)
