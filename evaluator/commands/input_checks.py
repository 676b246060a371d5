"""What `run` and `ingest` say about the input file: its dead letters' top reasons, and exit
NO_VALID_TRACE_EXIT (4) when not one line of it was a valid trace (the wrong --format, say)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from evaluator.monitoring.dead_letters import preview, top_reason_lines

__all__ = ["NO_VALID_TRACE_EXIT", "echo_dead_letter_reasons", "exit_on_no_valid_trace",
           "top_reason_lines"]

NO_VALID_TRACE_EXIT = 4


def echo_dead_letter_reasons(reasons: Counter) -> None:
    """The top reasons of the input's dead letters, after the summary line (none: nothing)."""
    for line in top_reason_lines(reasons):
        click.echo(line)


def exit_on_no_valid_trace(ctx: click.Context, source: Path, fmt: str, traces_read: int,
                           invalid: int, reasons: Counter) -> None:
    """Exit NO_VALID_TRACE_EXIT, saying why in one line, when `source` gave no valid trace."""
    if traces_read > invalid:
        return
    if traces_read == 0:
        what = f"{source} holds no trace read as --format {fmt}"
    else:
        top = reasons.most_common(1)[0][0] if reasons else "see evaluator dead-letters"
        what = (f"none of the {traces_read} records of {source} is a valid trace "
                f"(read as --format {fmt}; the most common reason: {preview(top, 120)})")
    more = f", and `evaluator dead-letters --source {source}`" if invalid else ""
    click.echo(f"error: {what}; check --format and the trace format (README, Formats){more}",
               err=True)
    ctx.exit(NO_VALID_TRACE_EXIT)
