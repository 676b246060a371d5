"""`evaluator datasets build`: failing verdicts on stored traces become regression items.

A trace qualifies when its latest verdict on a rubric fails: the judge's, or a human's, which
overrides the judge's for that rubric (`--label-source both`), so a judge failure that people
marked as a pass is left out and a failure people confirmed is marked `label_source: human`.
Verdicts come from production traffic unless the build names a run (`--run`, `--all-runs`).
Rebuilding appends inputs the dataset does not have yet and keeps every earlier item.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from evaluator.core.errors import DatasetError
from evaluator.core.records import Trace
from evaluator.core.since import parse_since
from evaluator.pii import PiiConfig, PiiMasker
from evaluator.regression.datasets import (
    ITEM_ID_CHARS,
    DatasetItem,
    DatasetManifest,
    check_name,
    read_dataset,
    read_manifest,
    write_dataset,
)
from evaluator.rubrics import RubricRegistry, parse_ref
from evaluator.store import Store
from evaluator.store.failure_queries import (
    RubricScale,
    candidate_pages,
    choose_human_labels,
    human_verdicts,
    keep_human_verdicts,
    latest_judge_verdicts,
    select_candidates,
)
from evaluator.store.scope import PRODUCTION, REPLAY_KIND, Scope

LabelSourceOption = Literal["judge", "human", "both"]
LABEL_SOURCES: tuple[LabelSourceOption, ...] = ("judge", "human", "both")
PAGE = 2000
"""New candidates read from the store at a time: each page looks its traces and verdicts up in
one pass over the store's keys (~0.3 s at 4,000,000 evaluations), so a build of up to about
this many items takes one; each is masked only when it is used."""
@dataclass(frozen=True)
class BuildOptions:
    name: str
    db: Path
    rubric: str | None = None
    """NAME or NAME@vN: only traces failing this rubric (all rubrics when None)."""
    since: str | None = None
    label_source: LabelSourceOption = "both"
    limit: int | None = None
    """Most new items added by this build; the rest are left for the next one."""
    scope: Scope = PRODUCTION
    lake: Path | None = None
    """A Parquet lake read together with the store (evaluator.store.lake)."""

    def describe(self) -> dict[str, Any]:
        return {"db": str(self.db), "rubric": self.rubric, "since": self.since,
                "label_source": self.label_source, "limit": self.limit,
                "scope": self.scope.to_dict()}


@dataclass
class BuildResult:
    path: Path
    manifest: DatasetManifest | None
    """None when nothing qualified and there was no dataset to keep."""
    candidates: int = 0
    added: int = 0
    duplicates: int = 0
    """Qualifying inputs the dataset already had, or that repeated an earlier one. Past the
    limit, traces are not read: inputs are compared by their stored hash, so two stored inputs
    that only today's masking rules would make equal count as two there."""
    left_out: int = 0
    """New inputs past the limit (counted by stored hash, as above)."""
    kept: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Verdict:
    label: str
    passed: bool
    source: Literal["judge", "human"]
    rubric_version: int | None
    at: datetime
    judge: str | None = None


def _scales(named: list[tuple[str, int | None]], registry: RubricRegistry) -> list[RubricScale]:
    """Every label's score and the pass threshold of each rubric version people's labels name
    (no version: the latest); an unknown one is an error naming the rubrics there are."""
    scales = []
    for name, version in named:
        rubric = registry.get(name if version is None else f"{name}@v{version}")
        scales += [RubricScale(name, version, label, score, rubric.pass_threshold)
                   for label, score in rubric.labels.items()]
    return scales


def _item(trace: Trace, verdicts: dict[str, _Verdict], failed: list[str]) -> DatasetItem:
    judges = sorted({v.judge for v in verdicts.values() if v.judge})
    human = sorted(r for r, v in verdicts.items() if v.source == "human")
    metadata = {
        "source_trace_id": trace.trace_id,
        "failed": failed,
        "judge": ", ".join(judges) or None,
        "human_labeled": human or None,
        "system": trace.system,
        "model": trace.model,
        "prompt_version": trace.prompt_version,
    }
    draft = DatasetItem(
        id="draft", input=trace.input, context=trace.context, output=trace.output,
        expected=trace.expected,
        expected_labels={rubric: v.label for rubric, v in sorted(verdicts.items())},
        label_source="human" if all(verdicts[r].source == "human" for r in failed) else "judge",
        metadata={k: v for k, v in metadata.items() if v is not None},
    )
    return draft.model_copy(update={"id": draft.input_hash[:ITEM_ID_CHARS]})


def _judge_verdicts(rows) -> dict[str, dict[str, _Verdict]]:
    verdicts: dict[str, dict[str, _Verdict]] = {}
    for row in rows:
        verdicts.setdefault(row.trace_id, {})[row.rubric] = _Verdict(
            row.label, row.passed, "judge", row.rubric_version, row.created_at, row.judge)
    return verdicts


def _human_verdicts(rows) -> dict[str, dict[str, _Verdict]]:
    verdicts: dict[str, dict[str, _Verdict]] = {}
    for row in rows:
        verdicts.setdefault(row.trace_id, {})[row.rubric] = _Verdict(
            row.label, row.passed, "human", row.rubric_version, row.judged_at)
    return verdicts


def _check_scope(store: Store, scope: Scope) -> None:
    """A named run must exist and judge stored traces (a replay judges dataset items)."""
    store.check_scope(scope)
    run = store.run(scope.run_id) if scope.run_id else None
    if run is not None and run.kind == REPLAY_KIND:
        raise DatasetError(f"run {run.run_id!r} is a replay: it judged dataset items, not stored"
                           " traces, so no item can be built from it; name an `evaluator run`"
                           " or leave out --run for production traffic")


def _new_items(store: Store, scope: Scope, judge: bool) -> Iterator[DatasetItem]:
    """The new candidates `select_candidates` found, as items, in order. Traces are read a page
    at a time and masked one at a time, so a build that stops at its limit reads and masks
    only what it needs."""
    # Mask here too: a stored trace may predate masking at ingest, or the rules may have grown.
    masker = PiiMasker(PiiConfig())
    for page in candidate_pages(store, PAGE):
        ids = [row.trace_id for row in page]
        judged = _judge_verdicts(latest_judge_verdicts(store, scope, ids)) if judge and ids else {}
        humans = _human_verdicts(human_verdicts(store, ids)) if ids else {}
        for row in page:
            verdicts = {**judged.get(row.trace_id, {}), **humans.get(row.trace_id, {})}
            failed = sorted(r for r, v in verdicts.items() if not v.passed)
            trace = masker.mask_trace(Trace.model_validate_json(row.trace_json))
            yield _item(trace, verdicts, failed)


def build_dataset(options: BuildOptions, datasets_dir: Path,
                  registry: RubricRegistry) -> BuildResult:
    """Append the qualifying failures that are new (by input hash) to `<datasets_dir>/<name>`."""
    check_name(options.name)
    if options.limit is not None and options.limit < 0:
        raise DatasetError(f"--limit must be 0 or more, got {options.limit}")
    path = datasets_dir / f"{options.name}.jsonl"
    try:
        existing = read_dataset(path) if path.exists() else []
    except DatasetError as exc:
        raise DatasetError(f"{exc}. A build never overwrites a dataset it cannot read: fix it "
                           "first") from None
    result = BuildResult(path, read_manifest(path), kept=len(existing))
    seen = {item.input_hash for item in existing}
    ids = {item.id for item in existing}
    new: list[DatasetItem] = []
    criterion, version = parse_ref(options.rubric) if options.rubric else (None, None)
    if options.rubric:
        registry.get(options.rubric)  # an unknown rubric is a typo: say so before reading
    since = parse_since(options.since) if options.since else None
    source, scope = options.label_source, options.scope
    with Store(options.db, read_only=True, lake=options.lake) as store:
        _check_scope(store, scope)
        keep_human_verdicts(store, _scales(choose_human_labels(store, scope), registry)
                            if source != "judge" else None)
        counts = select_candidates(store, scope, source != "human", criterion, version, since,
                                   seen)
        result.candidates = counts.qualifying
        result.duplicates = counts.qualifying - counts.new
        read = 0  # new candidates turned into items so far
        items = _new_items(store, scope, source != "human")
        while options.limit is None or len(new) < options.limit:
            item = next(items, None)
            if item is None:
                break
            read += 1
            if item.input_hash in seen:  # masking made it equal to an earlier input
                result.duplicates += 1
                continue
            seen.add(item.input_hash)
            if item.id in ids:
                raise DatasetError(f"{path}: item id {item.id} is taken by a different input; "
                                   "rename that item (ids of built items are input-hash prefixes)")
            ids.add(item.id)
            new.append(item)
        result.left_out = counts.new - read
    result.added = len(new)
    if not existing and not new:
        result.notes.append("no failing verdicts matched: nothing to write")
        return result
    result.manifest = write_dataset(path, [*existing, *new], options.describe(), result.left_out)
    return result
