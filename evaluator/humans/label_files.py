"""Reading and writing the flat label files people edit: CSV or JSONL, one record a row.

Rows come back with the line they start on, so every complaint about a row can cite it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from evaluator.core.errors import DatasetError

FileFormat = Literal["csv", "jsonl"]
FORMATS: tuple[FileFormat, ...] = ("csv", "jsonl")

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet runs a cell starting with one of these as a formula (CSV injection)."""


def detect_format(path: Path, fmt: str | None = None) -> FileFormat:
    """The explicit format, else the one the file extension names."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise DatasetError(f"unknown file format {fmt!r}: use one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise DatasetError(f"{path}: cannot tell the format from the extension {suffix or '(none)'!r};"
                       " name the file .csv or .jsonl, or pass --format csv|jsonl")


class RowError(DatasetError):
    """One row of a label file is unreadable; the reader carries on with the next one."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


def read_rows(path: Path, fmt: str | None = None
              ) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(line, row) for each record of a CSV or JSONL file; an unreadable row comes as a RowError.

    CSV cells are stripped strings (without the formula escape `write_csv` adds), an empty
    cell is None; JSONL values stay as parsed.
    """
    path = Path(path)
    kind = detect_format(path, fmt)
    if not path.is_file():
        raise DatasetError(f"label file {path} not found")
    if kind == "csv":
        yield from _read_csv(path)
    else:
        yield from _read_jsonl(path)


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        names = [name.strip() for name in header]
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(names):
                yield line, RowError(line, f"{len(cells)} cells but the header names "
                                           f"{len(names)} columns: quote cells holding commas")
                continue
            values = [csv_unescape(cell.strip()) or None for cell in cells]
            yield line, dict(zip(names, values + [None] * (len(names) - len(values)), strict=True))


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    with open(path, encoding="utf-8-sig") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
                yield line, RowError(line, f"not valid JSON ({exc})")
                continue
            if not isinstance(row, dict):
                yield line, RowError(line, f"expected a JSON object, got {type(row).__name__}")
                continue
            yield line, row


def csv_safe(text: str) -> str:
    """Text a spreadsheet shows as text: a leading formula character gets a ' in front.

    A leading ' gets one more, so `csv_unescape` can tell our mark from the text's own.
    """
    return "'" + text if text.startswith((*_FORMULA_STARTS, "'")) else text


def csv_unescape(text: str) -> str:
    """The text `csv_safe` was given: the ' it put in front is taken off again."""
    return text[1:] if text.startswith("'") and text[1:].startswith((*_FORMULA_STARTS, "'")) \
        else text


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """Every text cell formula-escaped (`csv_safe`): ids and labels as much as trace text."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({name: csv_safe(value) if isinstance(value, str) else value
                          for name, value in row.items()} for row in rows)


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
