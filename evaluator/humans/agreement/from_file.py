"""Agreement between any two columns of a labelled CSV/JSONL file (labels brought from elsewhere).

Column A plays the judge (the confusion matrix's columns), column B the reference (its rows);
kappa, alpha, accuracy and MCC do not depend on which is which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from evaluator.humans.agreement.bootstrap import DEFAULT_N_BOOT
from evaluator.humans.agreement.collapse import collapse_order
from evaluator.humans.agreement.report import agreement_report
from evaluator.humans.agreement.results import FileAgreement
from evaluator.humans.agreement.stats import AgreementError
from evaluator.humans.label_files import RowError, read_rows


def _plain(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _as_numbers(values: list[str]) -> list[float | int] | None:
    """The values as numbers (ints when whole) if every one is a number, else None."""
    try:
        numbers = [float(value) for value in values]
    except ValueError:
        return None
    return [int(x) if x.is_integer() else x for x in numbers]


def file_agreement(path: Path, column_a: str, column_b: str, fmt: str | None = None,
                   ordinal: bool | None = None, labels_order: Sequence[str] | None = None,
                   n_boot: int = DEFAULT_N_BOOT, seed: int = 0,
                   collapse_labels: Mapping[str, str] | None = None) -> FileAgreement:
    """The agreement report of two columns; rows missing either value are counted, not used.

    Labels that are all numbers are compared as numbers; `ordinal` defaults to True for those
    with more than two values (a rating scale) and for an explicit `labels_order` of more than two.
    `collapse_labels` merges labels on both sides first ({"partial": "refused"}). The report's
    confusion matrix and verdict name the columns: column_b as rows, column_a as columns.
    """
    mapping = dict(collapse_labels or {})
    a_values: list[str] = []
    b_values: list[str] = []
    columns: set[str] = set()
    rows = missing = 0
    unreadable: list[str] = []
    for line, row in read_rows(Path(path), fmt):
        rows += 1
        if isinstance(row, RowError):
            unreadable.append(f"line {line}: {row}")
            continue
        columns.update(row)
        a, b = _plain(row.get(column_a)), _plain(row.get(column_b))
        if a is None or b is None:
            missing += 1
            continue
        a_values.append(mapping.get(a, a))
        b_values.append(mapping.get(b, b))
    absent = [name for name in (column_a, column_b) if name not in columns]
    if absent:
        raise AgreementError(f"{path}: no column {', '.join(map(repr, absent))}; the file has "
                             f"{', '.join(sorted(columns)) or 'no readable rows'}")
    if not a_values:
        raise AgreementError(f"{path}: no row has both {column_a!r} and {column_b!r} filled in")
    order = None if labels_order is None else collapse_order(labels_order, mapping)
    a_labels: list[Any] = a_values
    b_labels: list[Any] = b_values
    numeric = order is None and _as_numbers(a_values + b_values) is not None
    if numeric:
        a_numbers, b_numbers = _as_numbers(a_values), _as_numbers(b_values)
        if a_numbers is not None and b_numbers is not None:  # each side is, when their union is
            a_labels, b_labels = a_numbers, b_numbers
    distinct = len(order) if order else len(set(a_labels) | set(b_labels))
    if ordinal is None:
        ordinal = (numeric or order is not None) and distinct > 2
    report = agreement_report(a_labels, b_labels, order, ordinal=ordinal,
                              n_boot=n_boot, seed=seed)
    report = replace(
        report, confusion_matrix=replace(report.confusion_matrix, rows=column_b, columns=column_a),
        verdict=report.verdict.replace("Judge-human", f"{column_a}-{column_b}", 1))
    return FileAgreement(
        file=str(path), a=column_a, b=column_b, rows=rows, collapse=mapping,
        rows_missing_either=missing, unreadable_rows=unreadable,
        roles=f"{column_a} as the judge (columns), {column_b} as the reference (rows)",
        agreement=report)
