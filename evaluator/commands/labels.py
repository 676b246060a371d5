"""`evaluator labels import|export`: human labels in, annotation batches out."""

from __future__ import annotations

import json
from pathlib import Path

import click

from evaluator.commands.context import current_settings

MAX_SHOWN_PROBLEMS = 20


@click.group()
def labels() -> None:
    """Import human labels; export batches of judged traces to annotate."""


@labels.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default=None,
              help="File format [default: from the extension].")
@click.option("--replace", is_flag=True,
              help="Overwrite stored labels that the file changes (same item, rubric, annotator).")
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def labels_import(file, fmt, replace, db, as_json) -> None:
    """Import FILE (CSV or JSONL): trace_id or item_id, rubric, label and/or score, annotator,
    note. Re-importing a file changes nothing. Every rejected row is listed with its line, and
    exits 1 (the good rows are imported all the same)."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.humans.labels import import_labels
    from evaluator.rubrics import RubricRegistry
    from evaluator.store import Store

    settings = current_settings()
    registry = RubricRegistry.load(settings.rubrics_dir)
    with Store(db or settings.db_path) as store:
        result = import_labels(file, store, registry, fmt=fmt, replace=replace)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(f"{file}: {result.rows} rows: {result.imported} imported, "
                   f"{result.already_present} already present, {len(result.changed)} changed"
                   f"{' (replaced)' if replace else ' (kept the stored label)'}, "
                   f"{len(result.rejected)} rejected")
        for title, problems in (("rejected", result.rejected), ("changed", result.changed)):
            for problem in problems[:MAX_SHOWN_PROBLEMS]:
                click.echo(f"  {title} {problem}")
            if len(problems) > MAX_SHOWN_PROBLEMS:
                click.echo(f"  ... and {len(problems) - MAX_SHOWN_PROBLEMS} more {title} rows "
                           "(--json lists them all)")
        if result.ignored_columns:
            click.echo(f"  ignored columns: {', '.join(result.ignored_columns)}")
        if result.without_evaluation:
            click.echo(f"  note: {result.without_evaluation} labels name traces with no stored "
                       "evaluation of their rubric yet (agreement uses them once there is one)")
    if result.rejected:
        raise click.exceptions.Exit(1)


@labels.command("export")
@click.option("--rubric", "rubric_ref", required=True, help="Rubric (NAME or NAME@vN).")
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Items in the batch.")
@click.option("--out", "out_prefix", type=click.Path(path_type=Path), default=None,
              help="Writes PREFIX.csv and PREFIX.jsonl [default: labels-<rubric>].")
@click.option("--judge", default=None, help="Only evaluations by this judge.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@click.option("--skip-labelled", is_flag=True, help="Leave out traces that already have labels.")
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file.")
@click.option("--json", "as_json", is_flag=True, help="Print the selection as JSON.")
def labels_export(rubric_ref, n, out_prefix, judge, seed, skip_labelled, db, as_json) -> None:
    """Write a batch to annotate: every judge failure, traces whose repeated judging disagreed,
    then a sample of passes across their labels; shuffled, without the judge's verdicts."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.humans.labels import export_batch
    from evaluator.rubrics import RubricRegistry
    from evaluator.store import Store

    settings = current_settings()
    # its rubric's labels are read, never rendered: templates are checked, not compiled
    registry = RubricRegistry.load(settings.rubrics_dir, compile_all=False)
    out_prefix = out_prefix or Path(f"labels-{rubric_ref.replace('@', '-')}")
    # it reads like a report and writes one small batch: the read commands' memory limit
    with Store(db or settings.db_path, memory_limit_mb=settings.read_memory_mb) as store:
        result = export_batch(store, registry, rubric_ref, n, out_prefix, seed=seed, judge=judge,
                              skip_labelled=skip_labelled)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    passes = ", ".join(f"{label} {count}" for label, count in result.passes.items()) or "none"
    click.echo(f"wrote {result.total} items to {' and '.join(result.paths)}: "
               f"{result.failures} judge failures, {result.disagreements} judge disagreements, "
               f"passes: {passes}")
    click.echo(f"  batch {result.batch_id}: "
               + ", ".join(f"{name} {s['taken']} of {s['eligible']}"
                           for name, s in result.strata.items())
               + " (recorded in the store: agreement weights the labels by it)")
    if result.without_trace:
        click.echo(f"  {result.without_trace} judged traces left out: no trace text in the store")
    click.echo("  annotators fill in label (one of allowed_labels), annotator and optionally "
               "score and note; then `evaluator labels import FILE`")
