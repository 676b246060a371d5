"""Options and exits shared by the commands that judge (`run`, `ingest --embedded`, `replay`):
the judge preflight (exit 2 when the judge cannot answer) and the error-share exit (3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from evaluator.commands.context import current_settings

if TYPE_CHECKING:
    from evaluator.monitoring.run_errors import RunErrors


def judge_check_options(command):
    """--no-preflight and --max-error-share."""
    command = click.option(
        "--max-error-share", type=click.FloatRange(0, 1), default=None,
        help="Exit 3 when more than this share of evaluations errored [default: "
             "$EVALUATOR_MAX_ERROR_SHARE, else any error when the judge never answered, else 0.5]."
    )(command)
    return click.option("--no-preflight", is_flag=True,
                        help="Skip checking that the judge answers before starting.")(command)


def preflight_unless(skip: bool, judge: str, settings) -> None:
    """Check that `judge` answers (evaluator.judges.preflight), unless --no-preflight."""
    if not skip:
        # lazy: `evaluator --help` imports every command module: keep it fast
        from evaluator.judges.preflight import preflight

        preflight(judge, settings.judges_dir)


def exit_on_judge_errors(ctx: click.Context, errors: RunErrors, max_share: float | None) -> None:
    """Exit JUDGE_ERRORS_EXIT (3), saying why in one line, when too many evaluations errored."""
    # lazy: `evaluator --help` imports every command module: keep it fast
    from evaluator.monitoring.run_errors import JUDGE_ERRORS_EXIT

    if max_share is None:
        max_share = current_settings().max_error_share
    if errors.too_many(max_share):
        click.echo(f"error: {errors.failure(max_share)}", err=True)
        ctx.exit(JUDGE_ERRORS_EXIT)
