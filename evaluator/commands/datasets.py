"""`evaluator datasets build|list|show|validate`: regression datasets from stored failures."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click

from evaluator.commands.context import current_settings
from evaluator.core.errors import DatasetError
from evaluator.core.since import SINCE_HELP
from evaluator.core.tables import compact_table

SHOWN_ITEMS = 5


def _console():
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.core.tables import console

    return console()


@click.group()
def datasets() -> None:
    """Build, list, show and validate regression datasets (<EVALUATOR_DATASETS_DIR>/<name>.jsonl,
    default ~/.local/share/evaluator/datasets; the repository's bundled ones are read by name)."""


@datasets.command("build")
@click.option("--name", required=True,
              help="Dataset name: writes <EVALUATOR_DATASETS_DIR>/<NAME>.jsonl and its manifest.")
@click.option("--rubric", default=None, help="Only traces failing this rubric (NAME or NAME@vN).")
@click.option("--since", default=None, help=f"Only failures judged (or labelled) since then: {SINCE_HELP}.")
@click.option("--label-source", type=click.Choice(["judge", "human", "both"]), default="both",
              show_default=True, help="Whose failing verdicts count; human labels override the judge's.")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Add at most N new items (the rest are left for the next build).")
@click.option("--run", "run_id", default=None,
              help="Only this `evaluator run` [default: production traffic].")
@click.option("--all-runs", is_flag=True, help="Production traffic and every run.")
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def datasets_build(name, rubric, since, label_source, limit, run_id, all_runs, db, as_json) -> None:
    """Turn failed evaluations of production traffic into dataset items (PII-masked, one per
    distinct input). Rebuilding appends new items and keeps every earlier one."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.regression.dataset_build import BuildOptions, build_dataset
    from evaluator.rubrics import RubricRegistry
    from evaluator.store.scope import Scope

    settings = current_settings()
    options = BuildOptions(name, db or settings.db_path, rubric, since, label_source, limit,
                           Scope.from_options(run_id, all_runs), lake=settings.lake_dir)
    # rubrics give labels' scores and thresholds, never render: templates are checked, not compiled
    registry = RubricRegistry.load(settings.rubrics_dir, compile_all=False)
    result = build_dataset(options, settings.datasets_dir, registry)
    manifest = result.manifest
    if as_json:
        click.echo(json.dumps({
            "path": str(result.path), "candidates": result.candidates, "added": result.added,
            "duplicates": result.duplicates, "left_out": result.left_out, "kept": result.kept,
            "notes": result.notes,
            "manifest": manifest.model_dump(mode="json") if manifest else None,
        }, indent=2))
        return
    click.echo(f"{result.candidates} failing traces qualified: {result.added} new items added, "
               f"{result.duplicates} duplicate inputs skipped, {result.kept} earlier items kept"
               + (f", {result.left_out} left out by --limit (run again to add them)"
                  if result.left_out else ""))
    for note in result.notes:
        click.echo(f"note: {note}")
    if manifest is not None:
        click.echo(f"{result.path}: version {manifest.version}, {manifest.item_count} items, "
                   f"content hash {manifest.content_hash[:16]}")


@datasets.command("list")
def datasets_list() -> None:
    """The datasets with a manifest in the datasets directory."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.regression.datasets import list_datasets

    directory = current_settings().datasets_dir
    table = compact_table(f"Datasets in {directory}")
    for column in ("name", "version", "items", "hash", "built at"):
        table.add_column(column, no_wrap=column != "name", overflow="fold")
    table.add_column("built from", overflow="fold")
    for _, manifest in list_datasets(directory):
        built_from = manifest.built_from or {}
        source = "\n".join(f"{k}={v}" for k, v in built_from.items() if v is not None) or "-"
        table.add_row(manifest.name, str(manifest.version), str(manifest.item_count),
                      manifest.content_hash[:12], f"{manifest.built_at:%Y-%m-%d}", source)
    _console().print(table)


@datasets.command("show")
@click.argument("dataset")
@click.option("--items", "shown", type=click.IntRange(min=0), default=SHOWN_ITEMS, show_default=True,
              help="How many items to preview.")
def datasets_show(dataset, shown) -> None:
    """Manifest, label counts and the first items of DATASET (a name or a .jsonl path)."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.regression.datasets import read_dataset, read_manifest, resolve_dataset

    path = resolve_dataset(dataset, current_settings().datasets_dir)
    items = read_dataset(path)
    manifest = read_manifest(path)
    if manifest is None:
        click.echo(f"{path}: {len(items)} items, no manifest")
    else:
        built = f"{manifest.built_at:%Y-%m-%d %H:%M}"
        click.echo(f"{path}: {manifest.name} version {manifest.version}, {manifest.item_count} "
                   f"items, content hash {manifest.content_hash}, built {built} from "
                   f"{json.dumps(manifest.built_from)}")
    sources = Counter(item.label_source for item in items)
    click.echo("label sources: " + ", ".join(f"{k} {v}" for k, v in sorted(sources.items())))
    labels = Counter((criterion, label) for item in items
                     for criterion, label in item.expected_labels.items())
    for criterion in sorted({c for c, _ in labels}):
        counts = sorted(((n, label) for (c, label), n in labels.items() if c == criterion), reverse=True)
        click.echo(f"  {criterion}: " + ", ".join(f"{label} {n}" for n, label in counts))
    for item in items[:shown]:
        click.echo(f"- {item.id} [{item.label_source}] {json.dumps(item.expected_labels)}: "
                   f"{' '.join(item.question.split())[:100]}")


@datasets.command("validate")
@click.argument("dataset")
def datasets_validate(dataset) -> None:
    """Check every line of DATASET (a name or a .jsonl path): JSON, fields, unique ids, expected
    labels on the rubric menus, and the manifest. Lists each problem with its line number."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.regression.datasets import check_dataset, resolve_dataset
    from evaluator.rubrics import RubricRegistry

    settings = current_settings()
    path = resolve_dataset(dataset, settings.datasets_dir)
    check = check_dataset(path, RubricRegistry.load(settings.rubrics_dir))
    for error in check.errors:
        click.echo(f"{path}:{error.line}: {error.message}")
    if check.manifest_problem:
        click.echo(f"{path}: {check.manifest_problem}")
    if not check.ok:
        problems = len(check.errors) + bool(check.manifest_problem)
        raise DatasetError(f"{path}: {problems} problem(s), {len(check.items)} valid items")
    click.echo(f"{path}: {len(check.items)} items, all valid")
