"""`evaluator replay` (judge a dataset, optionally regenerating outputs) and `evaluator gate`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from evaluator.commands.context import current_settings
from evaluator.commands.judge_checks import (
    exit_on_judge_errors,
    judge_check_options,
    preflight_unless,
)
from evaluator.commands.progress import progress_bar
from evaluator.core.errors import EvaluatorError

INTERRUPTED_EXIT = 130


def _settings():
    return current_settings()


def _progress_bar():
    """A rich progress bar on stderr with rate and ETA, and the replay callback that drives it."""
    progress = progress_bar("replay", "items")
    task = None

    def on_progress(done: int, total: int) -> None:
        nonlocal task
        if task is None:  # items done before a resume are not counted in the rate
            task = progress.add_task("replay", total=total, completed=done)
        else:
            progress.update(task, completed=done)

    return progress, on_progress


@click.command()
@click.argument("dataset", required=False)
@click.option("--rubric", "rubrics", multiple=True,
              help="Rubric ref (NAME[@vN]); repeatable [default: the latest of each].")
@click.option("--judge", default=None, help="Judge config name [default: $EVALUATOR_JUDGE or offline].")
@click.option("--target", default=None, metavar="TARGET",
              help="Regenerate outputs first: module:function, or openai:MODEL@BASE_URL "
                   "[default: re-judge the stored outputs].")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Items in flight at once [default: 16].")
@click.option("--resume", "resume_run", default=None, metavar="RUN",
              help="Finish an interrupted replay run (its own dataset, rubrics, judge and target).")
@click.option("--run-id", default=None, help="Name the new run [default: replay-<time>-<random>].")
@click.option("--max-cost", type=click.FloatRange(min=0), default=None, metavar="USD",
              help="Judge budget of the run; items past it are stored as skipped.")
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@judge_check_options
@click.pass_context
def replay(ctx, dataset, rubrics, judge, target, concurrency, resume_run, run_id, max_cost, db,
           as_json, no_preflight, max_error_share) -> None:
    """Evaluate every item of DATASET (a name or a .jsonl path) and store the run. Ctrl-C leaves
    a run that `--resume RUN` finishes. Exit 3 when too many evaluations errored."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.monitoring.run_errors import run_errors
    from evaluator.regression.datasets import resolve_dataset
    from evaluator.regression.replay import DEFAULT_CONCURRENCY, resume_replay, start_replay

    settings = _settings()
    db = db or settings.db_path
    progress, on_progress = _progress_bar()
    if resume_run:
        if dataset or rubrics or judge or target or run_id or max_cost is not None:
            raise click.UsageError("--resume finishes a run with its own dataset, rubrics, judge, "
                                   "target and budget: give only --resume RUN (and --concurrency, "
                                   "--db)")
        if not no_preflight:
            preflight_unless(False, _judge_of_run(db, resume_run, settings.judge), settings)
        with progress:
            report = resume_replay(resume_run, db, settings, concurrency, on_progress)
    else:
        if not dataset:
            raise click.UsageError("give a DATASET to replay, or --resume RUN")
        path = resolve_dataset(dataset, settings.datasets_dir)
        preflight_unless(no_preflight, judge or settings.judge, settings)
        with progress:
            report = start_replay(path, db, settings, rubrics, judge, target,
                                  concurrency or DEFAULT_CONCURRENCY, run_id, on_progress,
                                  max_cost)
    errors = run_errors(report.db, report.run_id, report.summaries)
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "errors": errors.to_dict()}, indent=2,
                              default=str))
    else:
        # lazy: `evaluator --help` imports every command module: keep it fast
        from evaluator.core.tables import console
        from evaluator.monitoring.report import summary_table

        out = console()
        out.print(f"replay [bold]{report.run_id}[/]: {report.done}/{report.total} items "
                  f"({report.done_this_session} now, {report.items_per_s:,.1f} items/s), "
                  f"{report.target_errors} target errors, {report.judge_calls} judge calls "
                  f"({report.cached} cached replies) -> {report.db}")
        out.print(summary_table(report.summaries, title=f"Replay {report.run_id}"))
        for line in errors.lines():
            out.print(line, markup=False, highlight=False)
    if report.status != "completed":
        click.echo(f"interrupted: {report.done} of {report.total} items done; finish with "
                   f"`evaluator replay --resume {report.run_id} --db {report.db}`", err=True)
        ctx.exit(INTERRUPTED_EXIT)
    exit_on_judge_errors(ctx, errors, max_error_share)


def _judge_of_run(db: Path, run_id: str, default: str) -> str:
    """The judge a replay run was started with (the preflight of --resume checks that one)."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.store import Store

    with Store(db, read_only=True) as store:
        found = store.run(run_id)
    return (found.params.get("judge") if found else None) or default


@click.command()
@click.option("--run", "run_id", required=True, help="The replay run to check.")
@click.option("--baseline", default=None, metavar="RUN|DATASET",
              help="A replay run id, or a dataset (a name, as `replay` takes, or a .jsonl path) "
                   "whose expected labels are the baseline [default: the run's dataset].")
@click.option("--min-pass-rate", type=click.FloatRange(0, 1), default=None,
              help="Fail a rubric whose pass rate is below R.")
@click.option("--max-regression", type=click.FloatRange(0, 1), default=None,
              help="Fail a rubric whose pass rate on the shared items dropped by more than D.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Level of the exact one-sided McNemar test that decides.")
@click.option("--min-items", type=click.IntRange(min=1), default=10, show_default=True,
              help="Fewer items scored on both sides than this: could not decide (exit 2).")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write JUnit XML: a test case per rubric and per regressed item.")
@click.option("--markdown", "markdown_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write a Markdown summary for a pull-request comment.")
@click.option("--db", type=click.Path(path_type=Path), default=None, help="DuckDB file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--pairwise", "pairwise_rubric", default=None, metavar="RUBRIC",
              help="Instead: judge each item's output against the baseline run's with this pairwise "
                   "rubric (both orders), and gate on wins vs losses by a one-sided sign test.")
@click.option("--judge", default=None, help="Judge of --pairwise [default: $EVALUATOR_JUDGE].")
@click.pass_context
def gate(ctx, run_id, baseline, min_pass_rate, max_regression, alpha, min_items, seed, junit_file,
         markdown_file, db, as_json, pairwise_rubric, judge) -> None:
    """Compare a replay run with a baseline, per rubric: a regression is more pass->fail than
    fail->pass items by the exact one-sided McNemar test at --alpha, or a broken floor. Exit 0
    pass, 1 regression, 2 could not decide (too few items, unfinished run, or an error)."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.regression.gate import GateOptions, GateUndecidedError, evaluate_gate
    from evaluator.regression.gate_output import gate_junit, gate_markdown, gate_table, write_text
    from evaluator.rubrics import RubricRegistry

    settings = _settings()
    if pairwise_rubric is not None:
        _pairwise_gate(ctx, db or settings.db_path, run_id, baseline, pairwise_rubric,
                       judge or settings.judge, alpha, as_json)
    options = GateOptions(alpha=alpha, min_pass_rate=min_pass_rate, max_regression=max_regression,
                          min_items=min_items, seed=seed)
    try:
        result = evaluate_gate(db or settings.db_path, run_id, baseline,
                               RubricRegistry.load(settings.rubrics_dir), options, settings.datasets_dir)
    except EvaluatorError:
        raise
    except Exception as exc:  # a crash must not read as "regression" (exit 1)
        raise GateUndecidedError(f"the gate failed: {exc!r}") from exc
    if junit_file:
        write_text(junit_file, gate_junit(result))
    if markdown_file:
        write_text(markdown_file, gate_markdown(result))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        # lazy: `evaluator --help` imports every command module: keep it fast
        from evaluator.core.tables import console

        out = console()
        out.print(gate_table(result))
        for note in result.notes:
            out.print(f"note: {note}")
        out.print(f"gate: [bold]{result.verdict}[/] (exit {result.exit_code})")
    ctx.exit(result.exit_code)


def _pairwise_gate(ctx, db: Path, run_id: str, baseline: str | None, rubric_ref: str, judge_name: str,
                   alpha: float, as_json: bool) -> None:
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.judges.factory import load_judge
    from evaluator.judges.runtime import JudgeRuntime
    from evaluator.regression.gate import GateUndecidedError, completed_replay
    from evaluator.regression.pairwise import judge_pairwise, pairwise_gate
    from evaluator.rubrics import RubricRegistry
    from evaluator.store import Store

    settings = _settings()
    if baseline is None:
        raise GateUndecidedError("--pairwise compares two runs' outputs: name the baseline run, --baseline RUN")
    with Store(db, read_only=True) as store:
        completed_replay(store, run_id, "candidate")
        completed_replay(store, baseline, "baseline")
    rubric = RubricRegistry.load(settings.rubrics_dir).get(rubric_ref)
    judge = load_judge(judge_name, settings.judges_dir, JudgeRuntime.from_settings(settings, db))
    result = pairwise_gate(rubric.criterion, baseline,
                           judge_pairwise(db, run_id, baseline, rubric, judge, settings), alpha)
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.line())
    ctx.exit(2 if result.p_value is None else 1 if result.regression else 0)
