"""The sink's alert schedule: check the rules every N seconds on a background thread.

The rules file is read once at start, so a bad file stops the sink at start-up with a clear
error instead of failing silently every minute. A failed check (store locked for too long,
webhook down) is logged and the next one runs on time.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from evaluator.monitoring.alerts.check import check_alerts
from evaluator.monitoring.alerts.rules import AlertConfig
from evaluator.monitoring.alerts.sinks import build_sinks

log = logging.getLogger(__name__)


class AlertSchedule:
    def __init__(self, db_path: Path, config: AlertConfig, every_s: float,
                 lake: Path | None = None) -> None:
        self.db_path = Path(db_path)
        self.lake = lake
        self.config = config
        self.every_s = every_s
        self.sinks = build_sinks(config.sinks)
        self.checks = 0

    def check_once(self) -> None:
        if not self.db_path.exists():
            return  # nothing written yet
        try:
            report = check_alerts(self.db_path, self.config, sinks=self.sinks, lake=self.lake)
        except Exception as exc:  # keep the schedule alive; the next check may succeed
            log.warning("alert check failed: %r; next check in %gs", exc, self.every_s)
            return
        self.checks += 1
        log.debug("alert check: %d rule verdicts, %d firing, %d notifications",
                  len(report.results), len(report.firing), len(report.notifications))

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.every_s):
            self.check_once()

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="evaluator-alerts", daemon=True)
        thread.start()
        log.info("checking %d alert rules every %gs", len(self.config.enabled_rules), self.every_s)
        return thread
