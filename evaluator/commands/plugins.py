"""`evaluator plugins`: every extension point's built-ins and installed plugins, and the
plugins that failed to load (one line each, with the reason)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from evaluator.core.tables import compact_table

if TYPE_CHECKING:  # importlib.metadata under it: every command's start imports this module
    from evaluator.core.plugins import Plugin, Registry


def registries() -> list[Registry]:
    """Every extension point, in the order the listing shows them."""
    from evaluator.judges.kinds import JUDGE_KINDS
    from evaluator.judges.offline import OFFLINE_HEURISTICS
    from evaluator.judges.scorers import SCORERS
    from evaluator.judges.scorers.similarity import EMBEDDERS
    from evaluator.monitoring.alerts.sinks import ALERT_SINKS  # lazy: each pulls its package in

    return [SCORERS, JUDGE_KINDS, ALERT_SINKS, EMBEDDERS, OFFLINE_HEURISTICS]


def plugin_rows(listing: list[Plugin]) -> list[tuple[str, str, str, str]]:
    return [(p.name, p.origin, p.target, "ok" if p.problem is None else f"NOT LOADED: {p.problem}")
            for p in listing]


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json) -> None:
    """Scorers, judge kinds, alert sinks, embedders and offline heuristics: built-in and from
    installed plugins (Python entry points), with any plugin that failed to load."""
    listing = [plugin for registry in registries() for plugin in registry.listing()]
    if as_json:
        click.echo(json.dumps([vars(plugin) for plugin in listing], indent=2))
        return
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.core.tables import console

    out = console()
    for registry in registries():
        table = compact_table(f"{registry.what}s (entry-point group {registry.group})")
        for column in ("name", "from", "target", "status"):
            table.add_column(column, overflow="fold")
        for row in plugin_rows(registry.listing()):
            table.add_row(*row)
        out.print(table)
