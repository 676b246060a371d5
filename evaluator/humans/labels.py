"""Human labels: importing them from CSV/JSONL into the store, exporting batches to annotate.

A label file has one row per (item, rubric, annotator): `trace_id` (or `item_id`, a dataset
item id), `rubric` (NAME or NAME@vN; or a separate `rubric_version`), `label` and/or `score`,
`annotator`, optional `note`. Other columns (the text an exported batch shows) are ignored.
Every row ends up imported, already present, changed, or rejected with its line and reason.

An annotation batch (`export_batch`) holds, by priority: every judge failure, then traces whose
repeated judging disagreed (judges gave different labels, or one judge's repeated samples did),
then passing traces sampled evenly across the passing labels.
Rows are shuffled and carry no verdict, so annotators are not anchored by the judge. How each
item was drawn (its stratum, and taken / eligible in that stratum) is recorded in the store,
not in the files: agreement weights the labels by it to correct the failure rate without bias.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from evaluator.core.errors import DatasetError, RubricError
from evaluator.core.records import Trace, sha256_hex, utcnow
from evaluator.humans.label_files import RowError, read_rows, write_csv, write_jsonl
from evaluator.rubrics import Rubric, RubricRegistry, parse_ref
from evaluator.store import Store
from evaluator.store import label_batch_queries as batch_queries
from evaluator.store import labels_queries as queries

ID_COLUMNS = ("trace_id", "item_id")
LABEL_COLUMNS = ("rubric", "rubric_version", "label", "score", "annotator", "note")
BATCH_TEXT_COLUMNS = ("allowed_labels", "question", "context", "output")
EXPORT_COLUMNS = ("trace_id", "rubric", *BATCH_TEXT_COLUMNS, "label", "score", "annotator", "note")
CONTEXT_SEPARATOR = "\n\n-----\n\n"


def label_id_for(trace_id: str, rubric: str, annotator: str) -> str:
    """One label per annotator, item and rubric: the same row imported twice has the same id."""
    return sha256_hex(f"{trace_id}\x1f{rubric}\x1f{annotator}")[:32]


@dataclass(frozen=True)
class RowProblem:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportResult:
    """What happened to every row of one label file."""

    source: str
    rows: int = 0
    imported: int = 0
    already_present: int = 0
    changed: list[RowProblem] = field(default_factory=list)
    """Rows whose stored label differs: replaced with --replace, else the stored one is kept."""
    replaced: bool = False
    rejected: list[RowProblem] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    without_evaluation: int = 0
    """Accepted labels whose trace has no stored evaluation of that rubric (yet)."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["changed"] = [str(p) for p in self.changed]
        data["rejected"] = [str(p) for p in self.rejected]
        return data


def _text(row: dict[str, Any], name: str) -> str | None:
    value = row.get(name)
    if value is None:
        return None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"'{name}' must be text, got {type(value).__name__}")
    value = str(value).strip()
    return value or None


@overload
def _number(row: dict[str, Any], name: str, whole: Literal[True]) -> int | None: ...
@overload
def _number(row: dict[str, Any], name: str, whole: Literal[False] = False) -> float | None: ...
def _number(row: dict[str, Any], name: str, whole: bool = False) -> float | int | None:
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"'{name}' must be a number, got {value!r}") from None
    if not math.isfinite(number) or (whole and not number.is_integer()):
        raise ValueError(f"'{name}' must be a {'whole ' if whole else ''}number, got {value!r}")
    return int(number) if whole else number


class _RubricResolver:
    """Which rubric version a row names, resolved once per distinct (rubric, version) text."""

    def __init__(self, registry: RubricRegistry):
        self.registry = registry
        self.cache: dict[tuple[str, int | None], tuple[Rubric, int | None]] = {}

    def __call__(self, row: dict[str, Any]) -> tuple[Rubric, int | None]:
        """The named rubric version (the latest when none is named) and the named version."""
        ref = _text(row, "rubric")
        if ref is None:
            raise ValueError("'rubric' is missing: name the rubric, e.g. 'faithfulness' or "
                             "'faithfulness@v1'")
        key = (ref, _number(row, "rubric_version", whole=True))
        if key not in self.cache:
            self.cache[key] = self._resolve(*key)
        return self.cache[key]

    def _resolve(self, ref: str, column_version: int | None) -> tuple[Rubric, int | None]:
        criterion, version = parse_ref(ref)
        if version is not None and column_version is not None and version != column_version:
            raise ValueError(f"rubric {ref!r} and rubric_version {column_version} disagree")
        version = version if version is not None else column_version
        rubric = self.registry.get(criterion if version is None else f"{criterion}@v{version}")
        return rubric, version


def _label_and_score(row: dict[str, Any], rubric: Rubric, named_version: int | None
                     ) -> tuple[str | None, float | None]:
    label, score = _text(row, "label"), _number(row, "score")
    if label is None and score is None:
        raise ValueError("neither 'label' nor 'score' is given: fill in at least one")
    if score is not None and not 0.0 <= score <= 1.0:
        raise ValueError(f"score {score:g} is outside 0..1 (1 = desired)")
    if label is not None and label not in rubric.labels:
        which = rubric.ref if named_version is not None else f"{rubric.ref} (the latest version)"
        raise ValueError(f"label {label!r} is not on the menu of {which}: use one of "
                         f"{', '.join(rubric.labels)}"
                         + ("" if named_version is not None else ", or name the version the "
                            "label was given for (NAME@vN)"))
    if label is None:
        matching = [name for name, value in rubric.labels.items() if value == score]
        label = matching[0] if len(matching) == 1 else None
    return label, score


def _validated(row: dict[str, Any], resolve: _RubricResolver) -> dict[str, Any]:
    """One label row as store columns (without label_id, source and time); ValueError if bad."""
    ids = {name: _text(row, name) for name in ID_COLUMNS}
    trace_id = ids["trace_id"] or ids["item_id"]
    if trace_id is None:
        raise ValueError("'trace_id' (or 'item_id') is missing")
    if ids["trace_id"] and ids["item_id"] and ids["trace_id"] != ids["item_id"]:
        raise ValueError(f"trace_id {ids['trace_id']!r} and item_id {ids['item_id']!r} disagree")
    annotator = _text(row, "annotator")
    if annotator is None:
        raise ValueError("'annotator' is missing: say who gave the label (a name or an id)")
    rubric, named_version = resolve(row)
    label, score = _label_and_score(row, rubric, named_version)
    return {"trace_id": trace_id, "rubric": rubric.criterion, "rubric_version": named_version,
            "label": label, "score": score, "annotator": annotator, "note": _text(row, "note")}


def import_labels(path: Path, store: Store, registry: RubricRegistry, fmt: str | None = None,
                  replace: bool = False) -> ImportResult:
    """Validate every row of a label file and insert the good ones in one batch."""
    path = Path(path)
    result = import_rows(read_rows(path, fmt), path.name, store, registry, replace)
    result.source = str(path)
    return result


def import_rows(rows: Iterable[tuple[int, dict[str, Any] | RowError]], source: str, store: Store,
                registry: RubricRegistry, replace: bool = False) -> ImportResult:
    """Validate (line, row) pairs and insert the good ones in one batch, stored with `source`:
    the one write path of human labels (label files and the annotation page)."""
    result = ImportResult(source=source, replaced=replace)
    known = {*ID_COLUMNS, *LABEL_COLUMNS, *BATCH_TEXT_COLUMNS}
    accepted: list[dict[str, Any]] = []
    lines: list[int] = []
    first_line: dict[str, int] = {}
    resolve = _RubricResolver(registry)
    for line, row in rows:
        result.rows += 1
        if isinstance(row, RowError):
            result.rejected.append(RowProblem(line, str(row)))
            continue
        for name in row:
            if name not in known and name not in result.ignored_columns:
                result.ignored_columns.append(name)
        try:
            values = _validated(row, resolve)
        except (ValueError, RubricError) as exc:
            result.rejected.append(RowProblem(line, str(exc)))
            continue
        values["label_id"] = label_id_for(values["trace_id"], values["rubric"], values["annotator"])
        if values["label_id"] in first_line:
            first = first_line[values["label_id"]]
            result.rejected.append(RowProblem(line, f"duplicate of line {first} (same item, "
                                                    "rubric and annotator): keep one"))
            continue
        first_line[values["label_id"]] = line
        accepted.append(values)
        lines.append(line)
    if not accepted:
        return result
    now = utcnow()
    for values in accepted:
        values.update(source=source, imported_at=now)
    import pyarrow as pa  # lazy: only an import builds an Arrow table (an export does not)

    batch = pa.Table.from_pylist(accepted, schema=queries.human_label_schema())
    outcome = queries.insert_labels(store, batch, lines, replace)
    result.imported = outcome.inserted
    result.already_present = outcome.already_present
    verb = "replaced the stored label" if replace else "a different label is stored; kept it " \
                                                       "(re-import with --replace to overwrite)"
    result.changed = [RowProblem(line, verb) for line in outcome.changed_lines]
    result.without_evaluation = queries.count_without_evaluations(store, batch)
    return result


# -- export --------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    """Which traces a batch holds, by why they were chosen (the file itself does not say)."""

    rubric: str
    paths: list[str]
    failures: int = 0
    disagreements: int = 0
    passes: dict[str, int] = field(default_factory=dict)
    available: dict[str, int] = field(default_factory=dict)
    without_trace: int = 0
    """Judged traces left out because the store holds no trace text for them."""
    seed: int = 0
    batch_id: str = ""
    strata: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Stratum -> {"eligible", "taken", "selection_probability"}, as recorded in the store."""

    @property
    def total(self) -> int:
        return self.failures + self.disagreements + sum(self.passes.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}


def _evenly(sizes: dict[str, int], budget: int) -> dict[str, int]:
    """How many to take of each stratum, one from each in turn (by name): small strata are
    taken whole, the rest share."""
    taken = dict.fromkeys(sizes, 0)
    left = {name: size for name, size in sizes.items() if size}
    while budget > 0 and left:
        for name in sorted(left):
            if budget == 0:
                break
            taken[name] += 1
            budget -= 1
            left[name] -= 1
            if not left[name]:
                del left[name]
    return {name: count for name, count in taken.items() if count}


def _batch_row(trace: Trace, rubric_ref: str, rubric: Rubric) -> dict[str, Any]:
    return {"trace_id": trace.trace_id, "rubric": rubric_ref,
            "allowed_labels": " | ".join(rubric.labels), "question": trace.question,
            "context": list(trace.context), "output": trace.output,
            "label": None, "score": None, "annotator": None, "note": None}


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    flat = dict(row, context=CONTEXT_SEPARATOR.join(row["context"]))
    return {name: "" if value is None else value for name, value in flat.items()}


def _record_batch(store: Store, result: ExportResult,
                  drawn: dict[str, tuple[int, list[str]]], criterion: str,
                  version: int | None, judge: str | None) -> None:
    """Store each chosen item's stratum and selection probability (taken / eligible)."""
    now = utcnow()
    chosen: list[tuple[str, str, int, int, float]] = []  # trace, stratum, eligible, taken, p
    for stratum, (eligible, taken) in drawn.items():
        if not taken:
            continue
        probability = len(taken) / eligible
        result.strata[stratum] = {"eligible": eligible, "taken": len(taken),
                                  "selection_probability": probability}
        chosen += [(trace_id, stratum, eligible, len(taken), probability) for trace_id in taken]
    ids = sorted(trace_id for trace_id, *_ in chosen)
    result.batch_id = "batch-" + sha256_hex(
        "\x1f".join([result.rubric, judge or "", now.isoformat(), *ids]))[:16]
    batch_queries.record_batch(store, [
        batch_queries.BatchItem(result.batch_id, trace_id, criterion, version, judge, stratum,
                                eligible, taken, probability, now)
        for trace_id, stratum, eligible, taken, probability in chosen])


def export_batch(store: Store, registry: RubricRegistry, rubric_ref: str, n: int,
                 out_prefix: Path, seed: int = 0, judge: str | None = None,
                 skip_labelled: bool = False) -> ExportResult:
    """Write `<out_prefix>.csv` and `.jsonl`: up to n judged traces to label, without verdicts,
    and record in the store (opened read-write) how each was drawn."""
    if n < 1:
        raise DatasetError(f"--n must be at least 1, got {n}")
    criterion, version = parse_ref(rubric_ref)
    rubric = registry.get(rubric_ref)
    found = queries.select_export_candidates(store, criterion, version, judge, skip_labelled)
    if not found.judged:
        scope = f" by judge {judge}" if judge else ""
        raise DatasetError(f"no scored evaluations of {rubric_ref}{scope} in {store.path}: run "
                           f"`evaluator run --rubric {rubric_ref}` first")
    eligible = found.eligible
    result = ExportResult(rubric=rubric_ref, paths=[], seed=seed, without_trace=found.without_trace)
    failures, disagreements = eligible.get("failures", 0), eligible.get("disagreements", 0)
    strata = {name.removeprefix("pass:"): size for name, size in eligible.items()
              if name.startswith("pass:")}
    result.available = {"failures": failures, "disagreements": disagreements,
                        **{f"pass:{label}": size for label, size in sorted(strata.items())}}
    result.failures = min(failures, n)
    result.disagreements = min(disagreements, n - result.failures)
    result.passes = _evenly(strata, n - result.failures - result.disagreements)
    taken = {"failures": result.failures, "disagreements": result.disagreements,
             **{f"pass:{label}": count for label, count in result.passes.items()}}
    drawn = queries.draw_export_candidates(store, taken, seed)
    _record_batch(store, result, {stratum: (eligible.get(stratum, 0), [t.trace_id for t in rows])
                                  for stratum, rows in drawn.items()},
                  criterion, version, judge)
    chosen = [row for stratum in taken for row in drawn[stratum]]
    random.Random(seed).shuffle(chosen)
    rows = [_batch_row(Trace.model_validate_json(drawn_trace.trace_json), rubric_ref, rubric)
            for drawn_trace in chosen]
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    csv_path, jsonl_path = (out_prefix.with_name(out_prefix.name + ext)
                            for ext in (".csv", ".jsonl"))
    write_csv(csv_path, EXPORT_COLUMNS, [_csv_row(row) for row in rows])
    write_jsonl(jsonl_path, rows)
    result.paths = [str(csv_path), str(jsonl_path)]
    return result

