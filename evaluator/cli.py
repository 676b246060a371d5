"""The `evaluator` command: a thin layer over the library. Heavy imports stay inside commands
so `evaluator --help` answers fast."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path

import click

from evaluator.commands.agreement import agreement, rubrics_check
from evaluator.commands.alerts import alerts
from evaluator.commands.annotate import annotate
from evaluator.commands.context import current_settings
from evaluator.commands.datasets import datasets
from evaluator.commands.dead_letters import dead_letters
from evaluator.commands.export import export
from evaluator.commands.judge_checks import (
    exit_on_judge_errors,
    judge_check_options,
    preflight_unless,
)
from evaluator.commands.labels import labels
from evaluator.commands.plugins import plugin_rows, plugins
from evaluator.commands.progress import run_progress_bar
from evaluator.commands.receive import receive
from evaluator.commands.replay import gate, replay
from evaluator.commands.schema import schema
from evaluator.commands.show import show
from evaluator.commands.user_errors import os_error_line, out_of_memory
from evaluator.core.allocator import keep_big_blocks_mapped
from evaluator.core.collector import for_bulk_work
from evaluator.core.errors import EvaluatorError
from evaluator.core.read_memory import read_memory_mb, set_read_memory_mb
from evaluator.core.since import SINCE_HELP, parse_since
from evaluator.core.stage_timing import enable as enable_stage_timings
from evaluator.core.tables import compact_table

DEFAULT_TRACES = "datasets/sample_traces.jsonl"


def _print_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="evaluator")
@click.option("--log-level", default=None, metavar="LEVEL",
              help="DEBUG, INFO, WARNING or ERROR [default: $EVALUATOR_LOG_LEVEL, else INFO for"
                   " worker and sink, WARNING otherwise]. JSON lines when stderr is not a terminal.")
@click.pass_context
def cli(ctx, log_level) -> None:
    """Evaluator: sample LLM traces, score them with versioned rubrics and a judge, store
    every score with provenance in DuckDB."""
    # lazy: `evaluator --help` stays fast: these (pydantic, DuckDB, rich, the judges) load on use
    from evaluator.core.logging_setup import configure_logging

    service = ctx.invoked_subcommand in ("worker", "sink", "receive")
    settings = current_settings()
    configure_logging(log_level, default_level="INFO" if service else "WARNING", settings=settings,
                      debug_masker=lambda: _payload_masker(settings))
    if settings.stage_timings:
        enable_stage_timings(settings.stage_timings)
    set_read_memory_mb(settings.read_memory_mb)


def _payload_masker(settings):
    """The masker of DEBUG log records, built when the first one is logged."""
    from evaluator.pii.masking import payload_masker  # lazy: pii takes 0.3 s to import, needed at DEBUG only

    return payload_masker(settings)


@cli.command()
@click.option("--traces", type=click.Path(path_type=Path), default=None,
              help=f"Trace JSONL file [default: {DEFAULT_TRACES}].")
@click.option("--judge", default=None, help="Judge config name (judges/<name>.yaml) [default: offline].")
@click.option("--sample-rate", type=float, default=None, help="Random sampling rate [default: 0.10].")
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file.")
@click.option("--rubric", "rubrics", multiple=True, help="Rubric ref (NAME[@vN]); repeatable [default: all].")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "otlp-json"]), default="jsonl",
              show_default=True, help="Trace JSONL, or OTLP/JSON (Collector file exporter).")
@click.option("--max-cost", type=click.FloatRange(min=0), default=None, metavar="USD",
              help="Judge budget of this run; evaluations past it are stored as skipped.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@judge_check_options
@click.pass_context
def run(ctx, traces, judge, sample_rate, db, rubrics, fmt, max_cost, as_json, no_preflight,
        max_error_share) -> None:
    """Embedded main job: read traces, sample, evaluate, store, print a summary. Exit 3 when
    too many evaluations errored (see --max-error-share)."""
    from evaluator.core.settings import BUNDLED_DATASETS_DIR  # lazy: keeps `evaluator --help` fast
    from evaluator.monitoring.report import summary_table
    from evaluator.monitoring.run_errors import run_errors
    from evaluator.worker.embedded import run_embedded

    settings = current_settings()
    traces = traces or BUNDLED_DATASETS_DIR / "sample_traces.jsonl"
    judge = judge or settings.judge
    preflight_unless(no_preflight, judge, settings)
    progress, on_progress = run_progress_bar() if sys.stderr.isatty() else (nullcontext(), None)
    for_bulk_work()  # this process ends with the run
    keep_big_blocks_mapped()
    with progress:
        report = run_embedded(
            traces, db or settings.db_path, judge,
            settings.sample_rate if sample_rate is None else sample_rate, rubrics, settings, fmt=fmt,
            max_cost_usd=max_cost, on_progress=on_progress,
        )
    errors = run_errors(report.db_path, report.run_id, report.summaries)
    # lazy: DuckDB (through the dead-letter queries); `evaluator --help` stays fast
    from evaluator.commands.input_checks import exit_on_no_valid_trace, top_reason_lines

    no_valid_trace = (ctx, traces, fmt, report.traces_read, report.invalid,
                      report.dead_letter_reasons)
    if as_json:
        _print_json({**report.to_dict(), "errors": errors.to_dict()})
        exit_on_no_valid_trace(*no_valid_trace)
        exit_on_judge_errors(ctx, errors, max_error_share)
        return
    # lazy: `evaluator --help` stays fast: these (pydantic, DuckDB, rich, the judges) load on use
    from evaluator.core.tables import console as make_console

    console = make_console()
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(report.sample_reasons.items()))
    console.print(
        f"run [bold]{report.run_id}[/]: read {report.traces_read} traces "
        f"({report.invalid} invalid, kept as dead letters, {report.reused_ids} of them reusing an "
        f"earlier trace's id), sampled {report.sampled} ({reasons}), "
        f"{report.evaluations} evaluations ({sum(s.skipped for s in report.summaries)} of them "
        f"skipped) with judge [bold]{report.judge}[/] "
        f"in {report.elapsed_s:.2f}s -> {report.db_path}"
    )
    for line in top_reason_lines(report.dead_letter_reasons):
        console.print(line, markup=False, highlight=False)
    if report.daily_budget is not None:
        console.print(report.daily_budget.describe())
    if report.judge == "offline":
        console.print("[yellow]note:[/] the offline judge is a heuristic baseline, not an LLM "
                      "judge; use --judge for model-graded scores.")
    if report.already_stored:
        console.print(f"{report.already_stored} evaluations already stored for this judge and rubric "
                      "versions: an earlier run evaluated these traces, so they were not stored again")
    if report.already_stored and not report.evaluations:
        console.print(summary_table(report.stored_summaries,
                                    title="Stored evaluations of production traffic"))
    else:
        console.print(summary_table(report.summaries))
    for line in errors.lines():
        console.print(line, markup=False, highlight=False)
    exit_on_no_valid_trace(*no_valid_trace)
    exit_on_judge_errors(ctx, errors, max_error_share)


@cli.command()
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file.")
@click.option("--run", "run_id", default=None,
              help="Only this run (a replay or an `evaluator run`) [default: production traffic].")
@click.option("--all-runs", is_flag=True, help="Production traffic and every replay run together.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a self-contained HTML report with charts to this file.")
@click.option("--since", default=None, help=f"Only evaluations judged since then: {SINCE_HELP}.")
def report(db, run_id, all_runs, as_json, html_file, since) -> None:
    """Summarize stored evaluations of production traffic, or of --run RUN, or --all-runs
    (works while a sink is writing)."""
    # lazy: `evaluator --help` stays fast: these (pydantic, DuckDB, rich, the judges) load on use
    from evaluator.store.scope import Scope

    scope = Scope.from_options(run_id, all_runs)
    if html_file is not None:
        # lazy: `evaluator --help` stays fast: these (pydantic, DuckDB, rich, the judges) load on use
        from evaluator.monitoring.html import write_html_report

        settings = current_settings()
        written = write_html_report(db or settings.db_path, html_file, since=since, scope=scope,
                                    rubrics_dir=settings.rubrics_dir, lake=settings.lake_dir)
        click.echo(f"wrote {written}")
        return
    # lazy: `evaluator --help` stays fast: these (pydantic, DuckDB, rich, the judges) load on use
    from evaluator.monitoring.report import database_report, judge_tables, status_table, summary_table
    from evaluator.sampling.spend_check import counted_spend

    settings = current_settings()
    scope = scope.judged_since(None if since is None else parse_since(since))
    data = database_report(db or settings.db_path, scope, counted_spend(settings.redis_url),
                           lake=settings.lake_dir)
    if as_json:
        _print_json(data.to_dict())
        return
    # lazy: `evaluator --help` stays fast: these (pydantic, DuckDB, rich, the judges) load on use
    from evaluator.core.tables import console as make_console

    console = make_console()
    title = f"Evaluations in {data.db}: {scope.describe()}"
    if data.empty_note:
        console.print(data.empty_note, markup=False, highlight=False)
    console.print(summary_table(data.rubrics, title=title))
    console.print(status_table(data.status_counts, data.dead_letters))
    for table in judge_tables(data):
        console.print(table)


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "otlp-json"]), default="jsonl",
              show_default=True, help="Trace JSONL, or OTLP/JSON (Collector file exporter).")
@click.option("--embedded", is_flag=True, help="Evaluate in this process (like `evaluator run`).")
@click.option("--judge", default=None, help="Judge config name [default: offline].")
@click.option("--sample-rate", type=float, default=None, help="Random sampling rate [default: 0.10].")
@click.option("--rubric", "rubrics", multiple=True, help="Rubric ref; repeatable [default: all].")
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file (--embedded).")
@judge_check_options
@click.pass_context
def ingest(ctx, file, fmt, embedded, judge, sample_rate, rubrics, db, no_preflight,
           max_error_share) -> None:
    """Send the sampled traces of FILE to the queue for `evaluator worker`."""
    if embedded:
        ctx.invoke(run, traces=file, judge=judge, sample_rate=sample_rate, db=db, rubrics=rubrics,
                   fmt=fmt, max_cost=None, as_json=False, no_preflight=no_preflight,
                   max_error_share=max_error_share)
        return
    # lazy: `evaluator --help` stays fast: these (pydantic, DuckDB, rich, the judges) load on use
    from evaluator.worker.ingest_job import ingest_to_queue

    settings = current_settings()
    work, messages = ingest_to_queue(
        file, settings, judge or settings.judge,
        settings.sample_rate if sample_rate is None else sample_rate, rubrics, fmt=fmt,
    )
    click.echo(
        f"read {work.traces_read} traces ({work.invalid} invalid, sent to the dead-letter "
        f"table), sampled {work.sampled}, enqueued {messages} messages"
    )
    # lazy: DuckDB (through the dead-letter queries); `evaluator --help` stays fast
    from evaluator.commands.input_checks import echo_dead_letter_reasons, exit_on_no_valid_trace

    echo_dead_letter_reasons(work.dead_letter_reasons)
    if work.pacer is not None:
        click.echo(work.pacer.describe())
    exit_on_no_valid_trace(ctx, file, fmt, work.traces_read, work.invalid,
                           work.dead_letter_reasons)


@cli.group()
def rubrics() -> None:
    """List and render versioned rubrics."""


@rubrics.command("list")
def rubrics_list() -> None:
    """Every rubric version, with its kind (judge, pairwise or a code scorer), labels,
    threshold and content hash; then the code scorers available, built-in and from plugins."""
    # lazy: `evaluator --help` stays fast: these (pydantic, DuckDB, rich, the judges) load on use
    from evaluator.core.tables import console as make_console
    from evaluator.judges.scorers import SCORERS
    from evaluator.rubrics import RubricRegistry

    table = compact_table("Rubrics")
    for column in ("rubric", "kind", "labels (score)", "pass at", "needs", "hash"):
        table.add_column(column, overflow="fold")
    for rubric in RubricRegistry.load(current_settings().rubrics_dir).all():
        labels = "\n".join(f"{k} ({v:g})" for k, v in rubric.labels.items())
        table.add_row(rubric.ref, rubric.kind, labels, f"{rubric.pass_threshold:g}",
                      ", ".join(rubric.required_inputs), rubric.content_hash[:12])
    scorers = compact_table("Code scorers (rubric kinds; plugins: entry-point group evaluator.scorers)")
    for column in ("kind", "from", "target", "status"):
        scorers.add_column(column, overflow="fold")
    for row in plugin_rows(SCORERS.listing()):
        scorers.add_row(*row)
    out = make_console()
    out.print(table)
    out.print(scorers)


@rubrics.command("lock")
@click.option("--check", is_flag=True, help="Only verify; exit 2 if a published version changed.")
def rubrics_lock(check) -> None:
    """Record new rubric versions in rubrics.lock (published versions can never change)."""
    # lazy: `evaluator --help` stays fast: these (pydantic, DuckDB, rich, the judges) load on use
    from evaluator.rubrics import LOCK_FILE_NAME, RubricRegistry, update_lock, verify_lock

    directory = current_settings().rubrics_dir
    registry = RubricRegistry.load(directory)
    lock_path = directory / LOCK_FILE_NAME
    if check:
        verify_lock(registry, lock_path)
        click.echo(f"{lock_path}: all {len(registry.all())} rubric versions match")
        return
    added = update_lock(registry, lock_path)
    click.echo(f"{lock_path}: added {', '.join(added)}" if added else f"{lock_path}: nothing new")


@rubrics.command("render")
@click.argument("ref")
@click.option("--trace", "trace_file", type=click.Path(exists=True, path_type=Path), default=None,
              help="A JSON file with one trace, or a JSONL file (see --line).")
@click.option("--item", "dataset", default=None,
              help="A dataset (a name or a .jsonl path): one of its items, as a replay judges it "
                   "(see --id, --line).")
@click.option("--id", "item_id", default=None, help="With --item: the item with this id.")
@click.option("--line", type=click.IntRange(min=1), default=1, show_default=True,
              help="Which line of a JSONL file (a trace, or a dataset item).")
def rubrics_render(ref, trace_file, dataset, item_id, line) -> None:
    """Show the exact prompt a judge would get for REF (NAME[@vN]) on one trace or dataset item;
    warns on stderr when the rubric needs a field the trace or item lacks (a run would store
    `skipped` for it and never ask the judge)."""
    # lazy: `evaluator --help` stays fast: these (pydantic, DuckDB, rich, the judges) load on use
    from evaluator.core.records import parse_trace
    from evaluator.ingest.files import read_one_trace
    from evaluator.regression.datasets import find_item, resolve_dataset
    from evaluator.rubrics import RubricRegistry, missing_inputs, render

    if (trace_file is None) == (dataset is None):
        raise click.UsageError("give either --trace FILE or --item DATASET")
    if item_id is not None and dataset is None:
        raise click.UsageError("--id picks an item of --item DATASET")
    settings = current_settings()
    rubric = RubricRegistry.load(settings.rubrics_dir).get(ref)
    if dataset is not None:
        item = find_item(resolve_dataset(dataset, settings.datasets_dir), item_id, line)
        trace = parse_trace(item.trace_payload(item.id), settings.max_text_chars)
        subject = f"item {item.id!r}"
    else:
        trace = read_one_trace(trace_file, line, settings.max_text_chars)
        subject = f"trace {trace.trace_id!r}"
    missing = missing_inputs(rubric, trace)
    if missing:
        click.echo(f"warning: {subject} has no {' and no '.join(missing)}, which {rubric.ref} "
                   "requires: a run stores this evaluation as skipped (not applicable) and never "
                   "asks the judge; the prompt below shows the field empty", err=True)
    prompt = render(rubric, trace)
    for message in prompt.messages:
        click.echo(f"===== {message['role']} =====")
        click.echo(message["content"])
    click.echo(f"===== prompt_hash {prompt.prompt_hash} =====")


@cli.command()
@click.option("--processes", type=int, default=1, show_default=True, help="Worker processes.")
@click.option("--threads", type=int, default=32, show_default=True,
              help="Messages judged at once per process; at least the judge's max_in_flight, so "
                   "slow calls cannot leave its slots idle.")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics on this port (with --processes N: ports P..P+N-1)"
                   " [default: $EVALUATOR_METRICS_PORT, else none].")
@click.option("--no-preflight", is_flag=True,
              help="Skip checking that the default judge ($EVALUATOR_JUDGE) answers.")
def worker(processes, threads, metrics_port, no_preflight) -> None:
    """Service mode: consume trace batches from Redis and judge them."""
    # lazy: `evaluator --help` stays fast: these (pydantic, DuckDB, rich, the judges) load on use
    from evaluator.worker.service import run_workers

    settings = current_settings()
    preflight_unless(no_preflight, settings.judge, settings)
    metrics_port = settings.metrics_port if metrics_port is None else metrics_port
    click.get_current_context().exit(run_workers(settings, processes=processes, threads=threads,
                                                 metrics_port=metrics_port))


@cli.command()
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file.")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics on this port [default: $EVALUATOR_METRICS_PORT, else none].")
@click.option("--alerts-every", type=float, default=None,
              help="Check the alert rules every N seconds (0: never) [default: $EVALUATOR_ALERTS_EVERY_S,"
                   " else 60].")
@click.option("--alerts-config", type=click.Path(path_type=Path), default=None,
              help="Alert rules [default: $EVALUATOR_ALERTS_CONFIG or alerts.yaml].")
def sink(db, metrics_port, alerts_every, alerts_config) -> None:
    """Service mode: the single writer draining results from Redis into DuckDB."""
    # lazy: `evaluator --help` stays fast: these (pydantic, DuckDB, rich, the judges) load on use
    from evaluator.worker.service import run_sink

    settings = current_settings()
    db_path = db or settings.db_path
    every_s = settings.alerts_every_s if alerts_every is None else alerts_every
    run_sink(settings, db_path,
             metrics_port=settings.metrics_port if metrics_port is None else metrics_port,
             alongside=_alert_schedule(db_path, every_s, alerts_config or settings.alerts_config,
                                       settings.lake_dir)
             if every_s > 0 else None)


def _alert_schedule(db_path: Path, every_s: float, config: Path | None, lake: Path | None):
    """What starts the alert checks beside the sink (run_sink's `alongside`)."""
    from evaluator.monitoring.alerts import load_alert_config  # lazy: keeps `evaluator --help` fast
    from evaluator.monitoring.alerts.schedule import AlertSchedule  # lazy: as above

    rules = load_alert_config(config)
    return lambda stop: AlertSchedule(db_path, rules, every_s, lake).start(stop)


# The command groups that live in evaluator/commands/.
cli.add_command(datasets)
cli.add_command(replay)
cli.add_command(gate)
cli.add_command(alerts)
cli.add_command(labels)
cli.add_command(agreement)
cli.add_command(annotate)
rubrics.add_command(rubrics_check)
cli.add_command(dead_letters)
cli.add_command(show)
cli.add_command(schema)
cli.add_command(receive)
cli.add_command(export)
cli.add_command(plugins)


def main() -> None:
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # one line, like every other user error
        command = exc.ctx.command_path if exc.ctx else "evaluator"
        click.echo(f"error: {exc.format_message()} (see `{command} --help`)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except EvaluatorError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # a path the user gave cannot be written or created

        click.echo(f"error: {os_error_line(exc)}", err=True)
        sys.exit(2)
    except Exception as exc:
        if not out_of_memory(exc):
            raise
        click.echo(f"error: {exc}".splitlines()[0] + "; raise EVALUATOR_READ_MEMORY_MB (DuckDB's"
                   f" memory for reading the store, now {read_memory_mb()} MB), or set it to 0"
                   " for DuckDB's own limit", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
