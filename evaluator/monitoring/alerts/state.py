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

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb

from evaluator.monitoring.alerts.evaluation import RuleResult
from evaluator.monitoring.alerts.sinks import Notification
from evaluator.core.records import canonical_json, sha256_hex

_COLUMNS = ("alert_id, rule, labels, priority, time_window, state, fired_at, resolved_at,"
            " notified_at, observed, interval_low, interval_high, threshold, n, example_trace_ids,"
            " message")


@dataclass(frozen=True)
class StoredAlert:
    alert_id: str
    rule: str
    labels: dict[str, str]
    priority: str
    window: str
    state: str
    fired_at: datetime
    resolved_at: datetime | None
    notified_at: datetime | None
    observed: float | None
    interval: tuple[float, float] | None
    threshold: float | None
    n: int | None
    example_trace_ids: tuple[str, ...]
    message: str

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["interval"] = None if self.interval is None else list(self.interval)
        data["example_trace_ids"] = list(self.example_trace_ids)
        return data


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(timezone.utc)


def _stored(row: tuple[Any, ...]) -> StoredAlert:
    (alert_id, rule, labels, priority, window, state, fired_at, resolved_at, notified_at,
     observed, low, high, threshold, n, examples, message) = row
    return StoredAlert(
        alert_id, rule, json.loads(labels), priority, window, state, _utc(fired_at),
        _utc(resolved_at), _utc(notified_at), observed,
        None if low is None or high is None else (low, high), threshold, n,
        tuple(json.loads(examples)), message,
    )


def latest_alerts(conn: duckdb.DuckDBPyConnection, limit: int = 20,
                  state: str | None = None) -> list[StoredAlert]:
    """Newest first (by when they fired)."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM alerts WHERE $state IS NULL OR state = $state"
        " ORDER BY fired_at DESC, alert_id LIMIT $limit",
        {"state": state, "limit": limit},
    ).fetchall()
    return [_stored(row) for row in rows]


def _notification(kind: str, alert_id: str, fired_at: datetime, result: RuleResult,
                  resolved_at: datetime | None = None) -> Notification:
    return Notification(
        kind=kind, alert_id=alert_id, rule=result.rule, labels=result.labels,
        priority=result.priority, window=result.window, observed=result.observed,
        interval=result.interval, threshold=result.threshold, n=result.n,
        example_trace_ids=result.example_trace_ids, message=result.message, fired_at=fired_at,
        resolved_at=resolved_at,
    )


def _values(result: RuleResult) -> dict[str, Any]:
    low, high = result.interval if result.interval is not None else (None, None)
    return {"observed": result.observed, "low": low, "high": high, "threshold": result.threshold,
            "n": result.n, "n_eff": result.n_effective, "message": result.message,
            "examples": json.dumps(list(result.example_trace_ids))}


_UPDATE_VALUES = ("observed = $observed, interval_low = $low, interval_high = $high,"
                  " threshold = $threshold, n = $n, n_effective = $n_eff, message = $message,"
                  " example_trace_ids = $examples, last_evaluated_at = $now")


class AlertBook:
    """The alert table seen through one connection, for one check at time `now`."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, now: datetime) -> None:
        self.conn = conn
        self.now = now

    def _open(self) -> dict[str, tuple[str, datetime, datetime | None]]:
        rows = self.conn.execute(
            "SELECT dedup_key, alert_id, fired_at, notified_at FROM alerts WHERE state = 'firing'"
        ).fetchall()
        return {key: (alert_id, _utc(fired), _utc(notified)) for key, alert_id, fired, notified in rows}

    def _cooling_down(self, key: str, cooldown: timedelta) -> bool:
        (last,) = self.conn.execute(
            "SELECT max(notified_at) FROM alerts WHERE dedup_key = ?", [key]).fetchone()
        return last is not None and self.now - _utc(last) < cooldown

    def apply(self, results: Sequence[RuleResult],
              cooldowns: Mapping[str, timedelta]) -> list[Notification]:
        """Record the verdicts of one check; return the notifications to send."""
        notifications: list[Notification] = []
        self.conn.begin()
        try:
            open_alerts = self._open()
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
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return notifications

    def _fire(self, result: RuleResult, cooldown: timedelta) -> Notification | None:
        notify = not self._cooling_down(result.dedup_key, cooldown)
        alert_id = sha256_hex(f"{result.dedup_key}\x1f{self.now.isoformat()}")[:16]
        self.conn.execute(
            "INSERT INTO alerts (alert_id, rule, labels, dedup_key, priority, time_window, state,"
            " fired_at, last_evaluated_at, notified_at, observed, interval_low, interval_high,"
            " threshold, n, n_effective, example_trace_ids, message) VALUES ($id, $rule, $labels,"
            " $key, $priority, $window, 'firing', $now, $now, $notified, $observed, $low, $high,"
            " $threshold, $n, $n_eff, $examples, $message)",
            {"id": alert_id, "rule": result.rule, "labels": canonical_json(result.labels),
             "key": result.dedup_key, "priority": result.priority, "window": result.window,
             "now": self.now, "notified": self.now if notify else None, **_values(result)},
        )
        return _notification("firing", alert_id, self.now, result) if notify else None

    def _refresh(self, result: RuleResult, found: tuple[str, datetime, datetime | None],
                 cooldown: timedelta) -> Notification | None:
        alert_id, fired_at, notified_at = found
        notify = notified_at is None and not self._cooling_down(result.dedup_key, cooldown)
        self.conn.execute(
            f"UPDATE alerts SET {_UPDATE_VALUES},"
            " notified_at = CASE WHEN $notify THEN $now ELSE notified_at END WHERE alert_id = $id",
            {"id": alert_id, "now": self.now, "notify": notify, **_values(result)},
        )
        return _notification("firing", alert_id, fired_at, result) if notify else None

    def _resolve(self, result: RuleResult, found: tuple[str, datetime, datetime | None]
                 ) -> Notification | None:
        alert_id, fired_at, notified_at = found
        self.conn.execute(
            f"UPDATE alerts SET {_UPDATE_VALUES}, state = 'resolved', resolved_at = $now"
            " WHERE alert_id = $id",
            {"id": alert_id, "now": self.now, **_values(result)},
        )
        if notified_at is None:
            return None  # nobody heard it fire: a resolution would be noise
        return _notification("resolved", alert_id, fired_at, result, resolved_at=self.now)
