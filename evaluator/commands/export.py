"""`evaluator export --parquet DIR`: days of evaluations, traces and judge calls as a Parquet lake."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import click

from evaluator.commands.context import current_settings
from evaluator.core.errors import ConfigError
from evaluator.core.since import SINCE_HELP, parse_since


@click.command()
@click.option("--parquet", "lake", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Lake directory [default: $EVALUATOR_LAKE_DIR].")
@click.option("--since", default=None, help=f"First day (UTC) to export: {SINCE_HELP} [default: the first].")
@click.option("--until", default=None, help="Day (UTC) to stop before, same forms [default: none].")
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file.")
def export(lake, since, until, db) -> None:
    """Write the days in [--since, --until) to a hive-partitioned Parquet lake (evaluations and
    judge calls by day then rubric, traces by day). A day already there is merged, not
    duplicated; DuckDB keeps its rows (the sink's EVALUATOR_HOT_DAYS moves them)."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.store import Store

    settings = current_settings()
    lake = lake or settings.lake_dir
    if lake is None:
        raise ConfigError("say where the lake is: --parquet DIR or EVALUATOR_LAKE_DIR")

    def day(text):
        return None if text is None else parse_since(text).astimezone(UTC).date()

    with Store(db or settings.db_path, read_only=True) as store:
        exported = store.export_to_lake(lake, since=day(since), until=day(until))
    for one in exported:
        rows = ", ".join(f"{count:,} {table}" for table, count in one.rows.items())
        click.echo(f"{one.day}: {rows} ({one.files} files)")
    click.echo(f"exported {len(exported)} day(s) to {lake}")
