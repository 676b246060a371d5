"""The annotation queue behind the page: batches, one annotator's progress, an item to show, and
labels written (and undone) through the same validated, idempotent path as `labels import`.

The store is opened for each call and closed at once: read-only to read, read-write only for
the one statement of a label or an undo. So the page holds the DuckDB file for milliseconds, and
it and `evaluator sink` (which does the same per batch) wait out each other's lock (Store's lock
wait) instead of failing: the page can run next to the sink in service mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from evaluator.core.errors import DatasetError
from evaluator.core.records import Trace, sha256_hex
from evaluator.humans.labels import import_rows
from evaluator.rubrics import Rubric, RubricRegistry
from evaluator.rubrics.definitions import label_definitions
from evaluator.store import Store
from evaluator.store import annotation_queries as queries
from evaluator.store.annotation_queries import BatchLabel, Verdict

MAX_ANNOTATOR_CHARS = 64


class LabelRejected(DatasetError):
    """The page sent a label that `labels import` would reject (the reason says which rule)."""


def clean_annotator(name: str) -> str:
    """The name labels are stored under: 1 to 64 printable characters, outer spaces dropped."""
    name = name.strip()
    if not name or len(name) > MAX_ANNOTATOR_CHARS or not name.isprintable():
        raise ValueError(f"an annotator name is 1 to {MAX_ANNOTATOR_CHARS} printable characters")
    return name


@dataclass(frozen=True)
class Batch:
    batch_id: str
    criterion: str
    rubric_version: int | None
    """The version the batch was exported for; None: the latest, labels apply to every version."""
    judge: str | None
    size: int
    exported_at: datetime

    @classmethod
    def from_row(cls, row: queries.BatchRow) -> Batch:
        return cls(row.batch_id, row.rubric, row.rubric_version, row.judge, row.size, row.exported_at)

    @property
    def ref(self) -> str:
        """The rubric as labels name it: NAME@vN, or NAME when the batch names no version."""
        return self.criterion if self.rubric_version is None else f"{self.criterion}@v{self.rubric_version}"

    @property
    def source(self) -> str:
        """The `source` of the labels the page writes for this batch (what undo may remove)."""
        return f"annotate {self.batch_id}"


@dataclass(frozen=True)
class BatchProgress:
    batch: Batch
    labelled: dict[str, int]
    """{annotator: items labelled}."""


@dataclass(frozen=True)
class Progress:
    """One annotator's pass through a batch: items in their shown order, and what they labelled."""

    trace_ids: list[str]
    labels: dict[str, BatchLabel]

    @property
    def done(self) -> int:
        return len(self.labels)

    def next_position(self, after: int = 0) -> int | None:
        """The first unlabelled item after position `after` (1-based), wrapping around: skipped
        items come back once the rest are done. None when every item is labelled."""
        total = len(self.trace_ids)
        for step in range(1, total + 1):
            position = (after + step - 1) % total + 1
            if self.trace_ids[position - 1] not in self.labels:
                return position
        return None


@dataclass(frozen=True)
class ItemView:
    batch: Batch
    rubric: Rubric
    definitions: dict[str, str]
    position: int
    progress: Progress
    trace_id: str
    trace: Trace | None
    """None when the store holds no text for the trace any more."""
    own_label: BatchLabel | None
    verdicts: list[Verdict] | None
    """The judge's verdicts: only once the annotator labelled the item and the page shows them."""
    can_undo: bool


def shown_order(batch_id: str, trace_ids: list[str]) -> list[str]:
    """A fixed shuffle per batch: never by stratum, which would tell the judge's verdict."""
    return sorted(trace_ids, key=lambda trace_id: sha256_hex(f"{batch_id}\x1f{trace_id}"))


class AnnotationQueue:
    def __init__(self, db_path: Path, registry: RubricRegistry, rubric: str | None = None,
                 lock_timeout_s: float = 10.0):
        self.db_path = Path(db_path)
        self.registry = registry
        self.rubric = rubric
        """Only this criterion's batches (None: every rubric's)."""
        self.lock_timeout_s = lock_timeout_s

    def _read(self) -> Store:
        if not self.db_path.exists():
            raise DatasetError(f"no store at {self.db_path}: export a batch first "
                               "(`evaluator labels export --rubric R --n N`)")
        return Store(self.db_path, read_only=True, lock_timeout_s=self.lock_timeout_s)

    def batches(self) -> list[BatchProgress]:
        with self._read() as store:
            rows = queries.batches(store, self.rubric)
            counts = queries.labelled_counts(store, [row.batch_id for row in rows])
        return [BatchProgress(Batch.from_row(row), counts.get(row.batch_id, {}))
                for row in rows]

    def find(self, batch_id: str) -> Batch:
        """The batch with this id (or the one whose id starts with it), within the rubric."""
        with self._read() as store:
            return self._find(store, batch_id)

    def _find(self, store: Store, batch_id: str) -> Batch:
        rows = queries.batches(store, self.rubric, batch_id)
        exact = [row for row in rows if row.batch_id == batch_id]
        if len(exact) == 1 or len(rows) == 1:
            return Batch.from_row((exact or rows)[0])
        scope = f" of rubric {self.rubric}" if self.rubric else ""
        if not rows:
            raise DatasetError(f"no annotation batch {batch_id!r}{scope} in {self.db_path}: "
                               "`evaluator labels export` prints the batch id")
        raise DatasetError(f"{len(rows)} batches{scope} start with {batch_id!r}: give more of the id")

    def progress(self, batch_id: str, annotator: str) -> tuple[Batch, Progress]:
        with self._read() as store:
            batch = self._find(store, batch_id)
            return batch, self._progress(store, batch, annotator)

    @staticmethod
    def _progress(store: Store, batch: Batch, annotator: str) -> Progress:
        order = shown_order(batch.batch_id, queries.batch_trace_ids(store, batch.batch_id))
        labels = {label.trace_id: label for label in
                  queries.batch_labels(store, batch.batch_id, annotator)}
        return Progress(order, labels)

    @staticmethod
    def _trace_at(batch: Batch, progress: Progress, position: int) -> str:
        if not 1 <= position <= len(progress.trace_ids):
            raise DatasetError(f"batch {batch.batch_id} has items 1 to "
                               f"{len(progress.trace_ids)}, not {position}")
        return progress.trace_ids[position - 1]

    def item(self, batch_id: str, position: int, annotator: str, show_verdicts: bool) -> ItemView:
        with self._read() as store:
            batch = self._find(store, batch_id)
            progress = self._progress(store, batch, annotator)
            trace_id = self._trace_at(batch, progress, position)
            stored = store.traces([trace_id])
            own = progress.labels.get(trace_id)
            verdicts = (queries.verdicts(store, trace_id, batch.criterion, batch.rubric_version,
                                         batch.judge) if own is not None and show_verdicts else None)
            can_undo = queries.latest_label_from(store, annotator, batch.source) is not None
        rubric = self.registry.get(batch.ref)
        return ItemView(batch, rubric, label_definitions(rubric), position, progress, trace_id,
                        stored[0].trace if stored else None, own, verdicts, can_undo)

    def label(self, batch_id: str, position: int, annotator: str, label: str,
              note: str | None) -> Batch:
        """Store the annotator's label of item `position` (replacing their earlier one), with one
        open of the store."""
        with self._write() as store:
            batch = self._find(store, batch_id)
            trace_id = self._trace_at(batch, self._progress(store, batch, annotator), position)
            row = {"trace_id": trace_id, "rubric": batch.ref, "label": label,
                   "annotator": annotator, "note": note}
            result = import_rows([(1, row)], batch.source, store, self.registry, replace=True)
        if result.rejected:
            raise LabelRejected(result.rejected[0].reason)
        return batch

    def undo(self, batch_id: str, annotator: str) -> tuple[Batch, int | None]:
        """Remove the annotator's newest label written by the page in this batch; the batch and
        the position of the item it labelled (None: nothing to undo)."""
        with self._write() as store:
            batch = self._find(store, batch_id)
            latest = queries.latest_label_from(store, annotator, batch.source)
            if latest is None:
                return batch, None
            queries.delete_label(store, latest.label_id)
            order = shown_order(batch.batch_id, queries.batch_trace_ids(store, batch.batch_id))
        return batch, order.index(latest.trace_id) + 1

    def _write(self) -> Store:
        """Read-write for one label or undo: held for milliseconds, so the sink is not kept out."""
        return Store(self.db_path, lock_timeout_s=self.lock_timeout_s)
