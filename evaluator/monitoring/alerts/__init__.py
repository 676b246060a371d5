"""Quality alerts: rules over time windows of the store, with evidence, state and sinks.

Modules: `rules` (the config file), `evidence` (weighted Wilson intervals), `windows` (SQL
aggregates per window), `evaluation` (pure verdicts), `state` (dedup, cooldown, resolution in
the `alerts` table), `sinks` (log, stdout, file, webhook), `check` (one pass of all of it).
"""

from evaluator.monitoring.alerts.check import CheckReport, check_alerts, evaluate_rules
from evaluator.monitoring.alerts.rules import AlertConfig, load_alert_config

__all__ = ["AlertConfig", "CheckReport", "check_alerts", "evaluate_rules", "load_alert_config"]
