"""Rich progress bars on stderr (rate and ETA) for `evaluator replay` and `evaluator run`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress

    from evaluator.worker.embedded import RunProgress


def progress_bar(description: str, unit: str, narrow: bool = False) -> Progress:
    """A bar whose first column is `description` (a rich format of the task, e.g.
    "{task.description}"), then done/total, `unit`s per second, elapsed time and ETA. `narrow`
    drops the elapsed time and lets the bar take only the width left (a long description)."""
    from rich.console import Console  # lazy: rich takes 0.1 s to import, for a bar only
    from rich.progress import (  # lazy: as above
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text  # lazy: as above

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"- {unit}/s" if task.speed is None else f"{task.speed:,.1f} {unit}/s")

    timing = [TextColumn("ETA"), TimeRemainingColumn()]
    if not narrow:
        timing.insert(0, TimeElapsedColumn())
    return Progress(TextColumn(description), BarColumn(bar_width=None if narrow else 40),
                    MofNCompleteColumn(), Rate(), *timing, console=Console(stderr=True),
                    expand=narrow)


def run_progress_bar() -> tuple[Progress, Callable[[RunProgress], None]]:
    """The bar of `evaluator run`: traces read and sampled in its label, sampled traces evaluated
    in the bar (its total, hence the ETA, is known once the file is read)."""
    progress = progress_bar("{task.description}", "traces", narrow=True)
    task = progress.add_task("read 0, sampled 0; evaluated", total=None)

    def on_progress(state: RunProgress) -> None:
        progress.update(task, description=f"read {state.read:,}, sampled {state.sampled:,}; evaluated",
                        completed=state.evaluated, total=state.total)

    return progress, on_progress
