"""`evaluator schema NAME`: the JSON Schema of a trace, a dataset item or a label row."""

from __future__ import annotations

from pathlib import Path

import click

SCHEMA_NAMES = ("trace", "dataset-item", "labels")
"""evaluator.regression.schemas.SCHEMAS' names: that module loads pydantic, `--help` does not."""


@click.command("schema")
@click.argument("name", type=click.Choice(SCHEMA_NAMES))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write it to this file instead of printing it.")
def schema(name, out) -> None:
    """Print the JSON Schema of NAME: `trace` (a line of a trace JSONL file), `dataset-item`
    (a line of a regression dataset) or `labels` (a row of a label file). docs/schemas/ holds
    all three."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.regression.schemas import schema_text

    text = schema_text(name)
    if out is None:
        click.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out}")
