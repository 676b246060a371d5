"""SQL for the `alerts` table (migration 4): the alert book's reads and writes, and the listing.

The lifecycle (when to open, refresh, resolve or notify) is monitoring.alerts.state's; this
module only stores what it decided. Run the writes of one check inside `store.transaction()`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from evaluator.core.records import canonical_json
from evaluator.store.queries import as_utc

if TYPE_CHECKING:
    from evaluator.store.duckdb_store import Store

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


@dataclass(frozen=True)
class OpenAlert:
    """A firing alert: at most one per dedup key."""

    alert_id: str
    fired_at: datetime
    notified_at: datetime | None


@dataclass(frozen=True)
class AlertReading:
    """What one check measured for an alert's rule and labels (stored on every write)."""

    observed: float | None
    interval: tuple[float, float] | None
    threshold: float | None
    n: int | None
    n_effective: float | None
    message: str
    example_trace_ids: tuple[str, ...]


@dataclass(frozen=True)
class NewAlert:
    alert_id: str
    rule: str
    labels: dict[str, str]
    dedup_key: str
    priority: str
    window: str




def _stored(row: tuple[Any, ...]) -> StoredAlert:
    (alert_id, rule, labels, priority, window, state, fired_at, resolved_at, notified_at,
     observed, low, high, threshold, n, examples, message) = row
    return StoredAlert(
        alert_id, rule, json.loads(labels), priority, window, state, as_utc(fired_at),
        as_utc(resolved_at), as_utc(notified_at), observed,
        None if low is None or high is None else (low, high), threshold, n,
        tuple(json.loads(examples)), message,
    )


def latest_alerts(store: Store, limit: int = 20, state: str | None = None) -> list[StoredAlert]:
    """Newest first (by when they fired)."""
    rows = store.conn.execute(
        f"SELECT {_COLUMNS} FROM alerts WHERE $state IS NULL OR state = $state"
        " ORDER BY fired_at DESC, alert_id LIMIT $limit",
        {"state": state, "limit": limit},
    ).fetchall()
    return [_stored(row) for row in rows]


def open_alerts(store: Store) -> dict[str, OpenAlert]:
    """dedup key -> its firing alert."""
    rows = store.conn.execute(
        "SELECT dedup_key, alert_id, fired_at, notified_at FROM alerts WHERE state = 'firing'"
    ).fetchall()
    return {key: OpenAlert(alert_id, as_utc(fired), as_utc(notified))
            for key, alert_id, fired, notified in rows}


def last_notified(store: Store, dedup_key: str) -> datetime | None:
    """When an alert of this key last sent a message (None: never)."""
    [(last,)] = store.conn.execute(
        "SELECT max(notified_at) FROM alerts WHERE dedup_key = ?", [dedup_key]).fetchall()
    return as_utc(last)


def _values(reading: AlertReading, now: datetime) -> dict[str, Any]:
    low, high = reading.interval if reading.interval is not None else (None, None)
    return {"observed": reading.observed, "low": low, "high": high, "threshold": reading.threshold,
            "n": reading.n, "n_eff": reading.n_effective, "message": reading.message,
            "examples": json.dumps(list(reading.example_trace_ids)), "now": now}


_UPDATE_VALUES = ("observed = $observed, interval_low = $low, interval_high = $high,"
                  " threshold = $threshold, n = $n, n_effective = $n_eff, message = $message,"
                  " example_trace_ids = $examples, last_evaluated_at = $now")


def insert_firing(store: Store, alert: NewAlert, reading: AlertReading, now: datetime,
                  notified: bool) -> None:
    """A new firing alert, fired (and notified, when `notified`) at `now`."""
    store.conn.execute(
        "INSERT INTO alerts (alert_id, rule, labels, dedup_key, priority, time_window, state,"
        " fired_at, last_evaluated_at, notified_at, observed, interval_low, interval_high,"
        " threshold, n, n_effective, example_trace_ids, message) VALUES ($id, $rule, $labels,"
        " $key, $priority, $window, 'firing', $now, $now, $notified, $observed, $low, $high,"
        " $threshold, $n, $n_eff, $examples, $message)",
        {"id": alert.alert_id, "rule": alert.rule, "labels": canonical_json(alert.labels),
         "key": alert.dedup_key, "priority": alert.priority, "window": alert.window,
         "notified": now if notified else None, **_values(reading, now)},
    )


def refresh_firing(store: Store, alert_id: str, reading: AlertReading, now: datetime,
                   notify: bool) -> None:
    """A still-firing alert's latest reading; `notify` records that it notifies now."""
    store.conn.execute(
        f"UPDATE alerts SET {_UPDATE_VALUES},"
        " notified_at = CASE WHEN $notify THEN $now ELSE notified_at END WHERE alert_id = $id",
        {"id": alert_id, "notify": notify, **_values(reading, now)},
    )


def resolve(store: Store, alert_id: str, reading: AlertReading, now: datetime) -> None:
    store.conn.execute(
        f"UPDATE alerts SET {_UPDATE_VALUES}, state = 'resolved', resolved_at = $now"
        " WHERE alert_id = $id",
        {"id": alert_id, **_values(reading, now)},
    )
