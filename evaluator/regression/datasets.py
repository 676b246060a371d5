"""Regression datasets: items (DESIGN.md "Dataset item"), JSONL read/validate/write, manifests.

A dataset is `<name>.jsonl`, one canonical-JSON item a line, next to `<name>.manifest.json`
(version, content hash, item count, how it was built). The content hash is the sha256 of the
file's bytes as written here, so `sha256sum` checks it too. Items are keyed by the hash of their
input; `evaluator datasets build` (see dataset_build.py) only ever appends.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evaluator.core.errors import DatasetError, FieldProblem, RubricError, first_problem
from evaluator.core.records import Message, canonical_json, sha256_hex, utcnow
from evaluator.core.settings import BUNDLED_DATASETS_DIR

if TYPE_CHECKING:
    from evaluator.rubrics import RubricRegistry

DATASET_SUFFIX = ".jsonl"
MANIFEST_SUFFIX = ".manifest.json"
ITEM_ID_CHARS = 16
"""Hex characters of the input hash used as a built item's id."""
MAX_SHOWN_ERRORS = 5
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")

LabelSource = Literal["human", "judge"]


class DatasetItem(BaseModel):
    """One regression case: an input, what the app answered, and the labels that answer earned."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100)
    input: str | list[Message]
    context: list[str] = Field(default_factory=list)
    output: str = ""
    expected: str | None = None
    """A reference answer: what a correct output says (rubrics requiring `expected` use it)."""
    expected_labels: dict[str, str] = Field(default_factory=dict)
    """criterion -> label the output earned, e.g. {"hallucination": "hallucinated"}."""
    label_source: LabelSource
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Provenance: source_trace_id, the failing rubrics, the judge, and the trace's `system`."""

    @model_validator(mode="before")
    @classmethod
    def _legacy_expected_labels(cls, data: Any) -> Any:
        """Files written before the reference answer existed hold the labels in `expected` (a
        JSON object): read them as `expected_labels`. Writers write the new form."""
        if isinstance(data, dict) and isinstance(data.get("expected"), dict):
            if "expected_labels" in data:
                raise ValueError("'expected' is an object and 'expected_labels' is given too: "
                                 "put the labels in 'expected_labels' and the reference answer "
                                 "(a string) in 'expected'")
            data = {**data, "expected_labels": data["expected"]}
            del data["expected"]
        return data

    @field_validator("id")
    @classmethod
    def _printable_id(cls, value: str) -> str:
        if not value.isprintable() or value != value.strip():
            raise ValueError("must be printable, without leading or trailing spaces")
        return value

    @field_validator("input")
    @classmethod
    def _non_empty_input(cls, value: str | list[Message]) -> str | list[Message]:
        if not value:
            raise ValueError("must be a non-empty string or a non-empty list of chat messages")
        return value

    @property
    def question(self) -> str:
        """The user's question: the plain input, or the last user message."""
        if isinstance(self.input, str):
            return self.input
        users = [m.content for m in self.input if m.role == "user"]
        return users[-1] if users else self.input[-1].content

    def input_json(self) -> str | list[dict[str, str]]:
        return self.input if isinstance(self.input, str) else [m.model_dump() for m in self.input]

    @property
    def input_hash(self) -> str:
        """The dedup key: sha256 of the canonical JSON of the input."""
        return hash_input(self.input_json())

    def line(self) -> str:
        """The canonical JSON line this item is written as (no newline)."""
        return canonical_json(self.model_dump(mode="json"))

    def trace_payload(self, trace_id: str, output: str | None = None,
                      context: Sequence[str] | None = None) -> dict[str, Any]:
        """The trace a replay judges (for `parse_trace`): this item, or its regenerated output."""
        system = self.metadata.get("system")
        return {
            "trace_id": trace_id,
            "input": self.input_json(),
            "system": system if isinstance(system, str) else None,
            "context": list(self.context if context is None else context),
            "output": self.output if output is None else output,
            "expected": self.expected,
            "metadata": {"dataset_item_id": self.id,
                         "source_trace_id": self.metadata.get("source_trace_id")},
        }


def hash_input(value: str | list[dict[str, str]]) -> str:
    return sha256_hex(canonical_json(value))


def content_hash(items: Sequence[DatasetItem]) -> str:
    """sha256 of the dataset file as `write_dataset` writes it."""
    return hash_lines([item.line() for item in items])


def hash_lines(lines: Sequence[str]) -> str:
    """sha256 of the file made of these item lines."""
    return sha256_hex("".join(line + "\n" for line in lines))


class BuildRecord(BaseModel):
    """How one version came to be: items added, qualifying ones left out by --limit."""

    model_config = ConfigDict(extra="forbid")

    version: int
    built_at: datetime
    added: int
    left_out: int = 0
    built_from: dict[str, Any] | None = None


class DatasetManifest(BaseModel):
    """`<name>.manifest.json`: which version a dataset is and how it came to be."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: int = Field(ge=1)
    """Goes up by one every time the content changes."""
    content_hash: str
    item_count: int = Field(ge=0)
    built_at: datetime
    built_from: dict[str, Any] | None = None
    """The last build's parameters: db, rubric, since, label_source, limit."""
    history: list[BuildRecord] = Field(default_factory=list)


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class DatasetCheck:
    """What reading a dataset file found: the valid items and every problem, by line."""

    path: Path
    items: list[DatasetItem] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    manifest_problem: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and self.manifest_problem is None


def dataset_name(path: Path) -> str:
    return path.name.removesuffix(DATASET_SUFFIX)


def manifest_path(path: Path) -> Path:
    return path.with_name(dataset_name(path) + MANIFEST_SUFFIX)


def resolve_dataset(name_or_path: str | Path, datasets_dir: Path) -> Path:
    """A path as given, or for a bare name `<datasets_dir>/<name>.jsonl`, else the bundled one
    of that name when only the repository has it."""
    path = Path(name_or_path)
    if path.suffix == DATASET_SUFFIX or len(path.parts) > 1:
        return path
    file_name = f"{check_name(str(path))}{DATASET_SUFFIX}"
    bundled = BUNDLED_DATASETS_DIR / file_name
    built = datasets_dir / file_name
    return bundled if not built.exists() and bundled.exists() else built


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or name.endswith(DATASET_SUFFIX):
        raise DatasetError(f"bad dataset name {name!r}: use letters, digits, '_', '-' and '.' "
                           "(no extension), e.g. 'checkout-failures'")
    return name


def _field_error(problem: FieldProblem) -> str:
    more = problem.count - 1
    return f"field '{problem.where}': {problem.message}" + (f" (and {more} more)" if more else "")


def _label_errors(item: DatasetItem, registry: RubricRegistry) -> list[str]:
    problems = []
    for criterion, label in item.expected_labels.items():
        try:
            rubric = registry.get(criterion)
        except RubricError:
            problems.append(f"expected_labels.{criterion}: no rubric named '{criterion}'")
            continue
        if label not in rubric.labels:
            problems.append(f"expected_labels.{criterion}: {label!r} is not a label of {rubric.ref} "
                            f"({', '.join(rubric.labels)})")
    return problems


def check_dataset(path: Path, registry: RubricRegistry | None = None) -> DatasetCheck:
    """Read every line, collecting line-numbered errors instead of stopping at the first.

    With a registry, expected labels are checked against the rubric menus too.
    """
    if not path.is_file():
        raise DatasetError(f"dataset {path} not found; `evaluator datasets list` shows the "
                           "datasets, `evaluator datasets build` creates one")
    check = DatasetCheck(path)
    first_line_of: dict[str, int] = {}
    with open(path, encoding="utf-8-sig", errors="replace") as lines:  # -sig: a BOM is not text
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = DatasetItem.model_validate_json(line)
            except ValidationError as exc:
                problem = first_problem(exc, root="<item>")
                json_error = problem.kind == "json_invalid"
                message = "not valid JSON" if json_error else _field_error(problem)
                check.errors.append(LineError(number, message))
                continue
            if item.id in first_line_of:
                check.errors.append(LineError(
                    number, f"duplicate id {item.id!r} (first on line {first_line_of[item.id]})"))
                continue
            first_line_of[item.id] = number
            check.errors.extend(LineError(number, p) for p in
                                (_label_errors(item, registry) if registry else ()))
            check.items.append(item)
    check.manifest_problem = _manifest_problem(path, check.items)
    return check


def _manifest_problem(path: Path, items: Sequence[DatasetItem]) -> str | None:
    manifest = read_manifest(path)
    if manifest is None:
        return None
    if manifest.content_hash != content_hash(items) or manifest.item_count != len(items):
        return (f"{manifest_path(path).name} does not match the file (edited by hand?): "
                "rebuild with `evaluator datasets build`, or delete the manifest")
    return None


def read_dataset(path: Path) -> list[DatasetItem]:
    """Every item of a dataset file; DatasetError naming the bad lines if any is invalid."""
    check = check_dataset(path)
    if check.errors:
        shown = "; ".join(str(e) for e in check.errors[:MAX_SHOWN_ERRORS])
        more = len(check.errors) - MAX_SHOWN_ERRORS
        raise DatasetError(f"{path}: {len(check.errors)} invalid line(s): {shown}"
                           + (f" (and {more} more)" if more > 0 else "")
                           + f"; run `evaluator datasets validate {path}` for the full list")
    return check.items


def find_item(path: Path, item_id: str | None = None, line: int = 1) -> DatasetItem:
    """One item of a dataset file: the one with `item_id`, else the `line`-th (from 1)."""
    items = read_dataset(path)
    if item_id is not None:
        found = next((item for item in items if item.id == item_id), None)
        if found is None:
            raise DatasetError(f"{path} has no item with id {item_id!r}; `evaluator datasets "
                               f"show {path}` lists its items")
        return found
    if not 1 <= line <= len(items):
        raise DatasetError(f"{path} has {len(items)} items, not a line {line}: pick --line from "
                           f"1 to {len(items)}, or an item by --id")
    return items[line - 1]


def read_manifest(path: Path) -> DatasetManifest | None:
    """The manifest next to a dataset file, None when there is none."""
    where = manifest_path(path)
    if not where.is_file():
        return None
    try:
        return DatasetManifest.model_validate_json(where.read_text(encoding="utf-8"))
    except ValidationError as exc:
        problem = _field_error(first_problem(exc, root="<item>"))
        raise DatasetError(f"{where}: invalid manifest ({problem}); delete it and "
                           "rebuild the dataset with `evaluator datasets build`") from None


def _replace_file(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_dataset(path: Path, items: Sequence[DatasetItem], built_from: dict[str, Any] | None = None,
                  left_out: int = 0) -> DatasetManifest:
    """Write the items and a manifest whose version goes up when the content changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = read_manifest(path)
    text = "".join(item.line() + "\n" for item in items)
    digest = sha256_hex(text)
    if previous is not None and previous.content_hash == digest:
        return previous
    version = previous.version + 1 if previous else 1
    built_at = utcnow()
    record = BuildRecord(version=version, built_at=built_at, left_out=left_out,
                         added=len(items) - (previous.item_count if previous else 0),
                         built_from=built_from)
    manifest = DatasetManifest(
        name=dataset_name(path), version=version, content_hash=digest, item_count=len(items),
        built_at=built_at, built_from=built_from,
        history=[*(previous.history if previous else []), record],
    )
    _replace_file(path, text)
    _replace_file(manifest_path(path), json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    return manifest


def list_datasets(datasets_dir: Path) -> list[tuple[Path, DatasetManifest]]:
    """Datasets that have a manifest, by name: those of `datasets_dir`, and the bundled ones
    it has no dataset of the same name for."""
    found: dict[str, tuple[Path, DatasetManifest]] = {}
    for directory in (BUNDLED_DATASETS_DIR, datasets_dir):  # a built one hides a bundled one
        for where in directory.glob(f"*{MANIFEST_SUFFIX}"):
            path = where.with_name(where.name.removesuffix(MANIFEST_SUFFIX) + DATASET_SUFFIX)
            manifest = read_manifest(path)
            if manifest is not None:
                found[dataset_name(path)] = (path, manifest)
    return [found[name] for name in sorted(found)]
