"""`evaluator alerts check|list`: evaluate the alert rules once (cron, CI), show stored alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from evaluator.commands.context import current_settings


def _db(db: Path | None) -> Path:
    return db or current_settings().db_path


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO time, e.g. 2026-11-20T12:00:00Z",
                                 param_hint="--at") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _interval_text(interval) -> str:
    return "-" if interval is None else f"{interval[0]:.4g} to {interval[1]:.4g}"


@click.group()
def alerts() -> None:
    """Quality alerts: evaluate the rules, list fired and resolved alerts."""


@alerts.command("check")
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="Alert rules [default: $EVALUATOR_ALERTS_CONFIG or alerts.yaml].")
@click.option("--at", "at", default=None, help="Evaluate as of this ISO time instead of now.")
@click.option("--json", "as_json", is_flag=True, help="Print every rule's verdict as JSON.")
@click.option("--fail-on-firing", is_flag=True, help="Exit with 1 when any rule fires (CI).")
def check(db, config_file, at, as_json, fail_on_firing) -> None:
    """Evaluate every rule once, record and notify what fired or resolved.

    Exits with 2 when a rule could not be checked (the other rules still ran and notified)."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.monitoring.alerts import check_alerts, load_alert_config

    settings = current_settings()
    report = check_alerts(db or settings.db_path, load_alert_config(config_file or settings.alerts_config),
                          now=_parse_time(at), lake=settings.lake_dir)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        _print_results(report)
    if report.rule_failures:
        click.get_current_context().exit(2)
    if fail_on_firing and report.firing:
        click.get_current_context().exit(1)


def _print_results(report) -> None:
    # lazy: `evaluator --help` imports every command module: keep it fast
    from rich.markup import escape
    from rich.table import Table

    from evaluator.core.tables import console

    table = Table(title=f"Alert rules at {report.checked_at:%Y-%m-%d %H:%M:%S %Z}",
                  title_justify="left")
    for column in ("state", "priority", "rule", "labels", "window", "observed", "interval",
                   "threshold", "n"):
        table.add_column(column, no_wrap=column != "labels")
    colors = {"firing": "bold red", "pending": "yellow", "ok": "green"}
    for r in report.results:
        table.add_row(
            f"[{colors.get(r.state, 'dim')}]{r.state}[/]", r.priority, r.rule,
            ", ".join(f"{k}={v}" for k, v in r.labels.items()) or "-", r.window,
            "-" if r.observed is None else f"{r.observed:.4g}", _interval_text(r.interval),
            "-" if r.threshold is None else f"{r.threshold:.4g}", str(r.n),
        )
    out = console()
    out.print(table)
    failures = len(report.delivery_failures)
    out.print(f"{len(report.firing)} firing; {len(report.notifications)} notification(s) sent"
              + (f"; {failures} delivery failure(s)" if failures else ""))
    for failure in report.rule_failures:
        out.print(f"[bold red]rule {escape(failure.rule)} ({failure.priority}) could not be"
                  f" checked:[/] {escape(failure.error)}")


@alerts.command("list")
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file.")
@click.option("--state", type=click.Choice(["firing", "resolved"]), default=None)
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_alerts(db, state, limit, as_json) -> None:
    """Stored alerts, newest first (works while the sink is writing)."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.store import Store
    from evaluator.store.alert_queries import latest_alerts

    with Store(_db(db), read_only=True) as store:
        found = latest_alerts(store, limit, state)
    if as_json:
        click.echo(json.dumps([a.to_dict() for a in found], indent=2, default=str))
        return
    for alert in found:
        ended = f" -> resolved {alert.resolved_at:%Y-%m-%d %H:%M}" if alert.resolved_at else ""
        click.echo(f"{alert.fired_at:%Y-%m-%d %H:%M} [{alert.priority}] {alert.state}{ended}: "
                   f"{alert.message}")
    if not found:
        click.echo("no alerts")
