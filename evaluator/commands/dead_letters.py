"""`evaluator dead-letters`: the payloads that could not become traces, and why."""

from __future__ import annotations

import json
from pathlib import Path

import click

from evaluator.commands.context import current_settings
from evaluator.core.since import SINCE_HELP, parse_since


@click.command("dead-letters")
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file.")
@click.option("--since", default=None,
              help=f"Only dead letters stored since then: {SINCE_HELP}.")
@click.option("--source", default=None, metavar="FILE",
              help="Only those of this source (a trace file: every line of it).")
@click.option("--limit", type=click.IntRange(min=0), default=10, show_default=True,
              help="Latest dead letters to show (the counts cover all of them).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dead_letters(db, since, source, limit, as_json) -> None:
    """Rejected traces (kept, masked, in the store's dead_letters table): how many, the most
    common reasons, and the latest ones with their source line and payload."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.monitoring.dead_letters import read_dead_letters

    report = read_dead_letters(db or current_settings().db_path,
                               None if since is None else parse_since(since), source, limit)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    _print(report)


def _print(report) -> None:
    # lazy: `evaluator --help` imports every command module: keep it fast
    from rich.table import Table
    from rich.text import Text

    from evaluator.core.tables import console as make_console
    from evaluator.monitoring.dead_letters import preview

    console = make_console()
    console.print(report.describe(), markup=False, highlight=False)
    if not report.total:
        return
    table = Table(title="Top reasons", title_justify="left")
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("field", overflow="fold")
    table.add_column("reason", overflow="fold")
    for reason in report.reasons:
        table.add_row(str(reason.count), Text(reason.field or "-"), Text(reason.reason))
    console.print(table)
    if report.latest:
        console.print(f"latest {len(report.latest)}:", markup=False, highlight=False)
    for dead in report.latest:
        console.print(f"{dead.created_at:%Y-%m-%d %H:%M:%S}  {dead.source}\n"
                      f"  {preview(dead.error)}\n  payload: {preview(dead.payload)}",
                      markup=False, highlight=False, overflow="fold")
