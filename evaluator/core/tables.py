"""The CLI's console, and its one table style: no outer frame, one space between columns, a rule
under the header, so tables fit 80 columns. Long cells wrap; numbers never do."""

from __future__ import annotations

import os
from typing import Any


def console():
    """The terminal's console; when piped, at least 160 columns wide unless $COLUMNS says."""
    # here rather than in monitoring.report, whose imports (spend checks, cost queries) the
    # commands that only print (agreement, dead letters) do not need
    # lazy: rich takes 0.2 s to import; the CLI imports this module at start-up
    from rich.console import Console

    probe = Console()
    if probe.is_terminal or os.environ.get("COLUMNS"):
        return probe
    return Console(width=max(probe.width, 160))


def compact_table(title: str | None = None, **options: Any):
    """A rich Table in the compact style; `options` go to rich's Table."""
    # lazy: rich takes 0.2 s to import; the CLI imports this module at start-up
    from rich import box
    from rich.table import Table

    return Table(title=title, title_justify="left", caption_justify="left", box=box.SIMPLE_HEAD,
                 show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), **options)


class Fitted:
    """A wide table when the console can show it whole, else each of its rows as a small block
    of `column: value` lines under the row's first cell (a narrow terminal, or 80 columns)."""

    def __init__(self, wide, records: list[tuple[str, list[tuple[str, str]]]]):
        self.wide = wide
        self.records = records

    def __rich_console__(self, console, options):
        # lazy: rich takes 0.2 s to import; the CLI imports this module at start-up
        from rich.measure import Measurement

        natural = Measurement.get(console, options.update(max_width=10_000), self.wide).maximum
        if natural <= options.max_width:
            yield self.wide
            return
        # lazy: rich takes 0.2 s to import; the CLI imports this module at start-up
        from rich.text import Text

        if self.wide.title:
            yield Text(str(self.wide.title))
        for head, fields in self.records:
            block = compact_table(show_header=False)
            block.add_column(no_wrap=True)
            block.add_column(overflow="fold")
            for name, value in fields:
                block.add_row(Text(name), Text(value))
            yield Text(head, style="bold")
            yield block
