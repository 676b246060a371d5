"""SQL for human labels: the batched import, and what export and agreement read back.

Judge rows are "the latest scored evaluation per trace" within each (rubric, rubric_version,
judge): one trace judged twice by the same judge name (a changed judge config, say) counts once.
Only production traffic counts (store.scope): people label production traces, and the failure
rate that agreement corrects is production's, so replay runs stay out of both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from evaluator.core.records import canonical_json, sha256_hex
from evaluator.store.latest_queries import NEWEST_FIRST, SCORED_LABELLED
from evaluator.store.schema import arrow_schema, column_names
from evaluator.store.scope import PRODUCTION

if TYPE_CHECKING:
    import pyarrow as pa

    from evaluator.store.duckdb_store import Store


def human_label_schema() -> pa.Schema:
    """The Arrow schema of a batch of labels to insert (made when needed: agreement and the HTML
    report read labels without importing pyarrow)."""
    return arrow_schema("human_labels")


_BATCH = "_batch_human_labels"
_SAME_CONTENT = ("h.label IS NOT DISTINCT FROM b.label AND h.score IS NOT DISTINCT FROM b.score"
                 " AND h.note IS NOT DISTINCT FROM b.note"
                 " AND h.rubric_version IS NOT DISTINCT FROM b.rubric_version")


@dataclass(frozen=True)
class LabelInsert:
    inserted: int
    already_present: int
    changed_lines: list[int]
    """File lines whose stored label differs (replaced when asked to, else kept as stored)."""


def insert_labels(store: Store, batch: pa.Table, lines: list[int],
                  replace: bool) -> LabelInsert:
    """Insert a batch (`human_label_schema`) in one transaction; stored label_ids are kept,
    or overwritten when `replace` and their content differs."""
    import pyarrow as pa  # lazy: see human_label_schema

    table = batch.append_column("line", pa.array(lines, pa.int64()))
    columns = ", ".join(column_names("human_labels"))
    store.conn.register(_BATCH, table)
    store.conn.begin()
    try:
        same = store.conn.execute(f"SELECT count(*) FROM {_BATCH} b JOIN human_labels h USING (label_id)"
                            f" WHERE {_SAME_CONTENT}").fetchall()[0][0]
        changed = [row[0] for row in store.conn.execute(
            f"SELECT b.line FROM {_BATCH} b JOIN human_labels h USING (label_id)"
            f" WHERE NOT ({_SAME_CONTENT}) ORDER BY b.line").fetchall()]
        if replace and changed:
            store.conn.execute(f"DELETE FROM human_labels WHERE label_id IN (SELECT b.label_id FROM"
                         f" {_BATCH} b JOIN human_labels h USING (label_id)"
                         f" WHERE NOT ({_SAME_CONTENT}))")
        inserted = store.conn.execute(f"INSERT OR IGNORE INTO human_labels ({columns})"
                                f" SELECT {columns} FROM {_BATCH}").fetchall()[0][0]
        store.conn.commit()
    except BaseException:
        store.conn.rollback()
        raise
    finally:
        store.conn.unregister(_BATCH)
    return LabelInsert(inserted=inserted, already_present=same, changed_lines=changed)


def count_without_evaluations(store: Store, batch: pa.Table) -> int:
    """Labels of a batch whose trace has no stored evaluation of that rubric (yet)."""
    store.conn.register(_BATCH, batch)
    try:
        return store.conn.execute(
            f"SELECT count(*) FROM {_BATCH} b WHERE NOT EXISTS (SELECT 1 FROM evaluations e"
            " WHERE e.trace_id = b.trace_id AND e.rubric = b.rubric)").fetchall()[0][0]
    finally:
        store.conn.unregister(_BATCH)


_JUDGED_COLUMNS = ("trace_id, rubric, rubric_version, judge, label, score, passed, sample_weight,"
                   " stability")
_GROUP_WHERE = ("rubric = $judged_rubric"
                " AND ($judged_version IS NULL OR rubric_version = $judged_version)"
                " AND ($judged_judge IS NULL OR judge = $judged_judge)")
_LABELLED = "_judged_labelled"
_WEIGHTS = "_judged_weights"
JudgedRows = Literal["all", "labelled"]


def judged(store: Store, rubric: str, version: int | None, judge: str | None,
           rows: JudgedRows = "all") -> tuple[str, dict[str, Any]]:
    """The group's judge rows (the latest scored evaluation of each trace, the columns agreement
    and export read), as a relation to select from and the parameters it takes: the
    latest_verdicts rows of the group. `labelled`: only (at least) those of traces with a human
    label or in an annotation batch, from a temporary table of every group's, made once per
    Store (its reads are that command's snapshot), so the queries that join people's labels
    do not read a million verdicts per group. A Store reading the lake too ranks the group's
    evaluations into a temporary table instead (`rows` aside), dropping another group's:
    groups are read one after another, hold one in memory."""
    params = {"judged_rubric": rubric, "judged_version": version, "judged_judge": judge}
    if store.reads_lake:
        return _ranked(store, params), {}
    source = "latest_verdicts"
    if rows == "labelled":
        store.conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_LABELLED} AS SELECT {_JUDGED_COLUMNS}, run_id"
            " FROM latest_verdicts"
            " WHERE trace_id IN (SELECT trace_id FROM human_labels"
            " UNION SELECT trace_id FROM label_batch_items)")
        source = _LABELLED
    return (f"(SELECT {_JUDGED_COLUMNS} FROM {source} WHERE {_GROUP_WHERE}"
            f" AND {PRODUCTION.sql()})", params)


def _ranked(store: Store, params: dict[str, Any]) -> str:
    name = "_judged_" + sha256_hex(canonical_json(list(params.values())))[:16]
    others = store.conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary"
        " AND starts_with(table_name, '_judged_') AND table_name <> $name", {"name": name}).fetchall()
    for (other,) in others:
        store.conn.execute(f"DROP TABLE {other}")
    store.conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} AS SELECT {_JUDGED_COLUMNS}"
                       f" FROM evaluations WHERE {SCORED_LABELLED} AND {_GROUP_WHERE}"
                       f" AND {PRODUCTION.sql()}"
                       " QUALIFY row_number() OVER (PARTITION BY trace_id, rubric_version, judge"
                       f" ORDER BY {NEWEST_FIRST}) = 1", params)
    return name


def judged_weights(store: Store, rubric: str, version: int, judge: str
                   ) -> tuple[str, dict[str, Any]]:
    """The group's judge rows counted by (sample_weight, passed), as a relation of
    (sample_weight, passed, n) and its parameters; without the lake, from a temporary table of
    every group's counts made once per Store."""
    params = {"judged_rubric": rubric, "judged_version": version, "judged_judge": judge}
    if store.reads_lake:
        return (f"(SELECT sample_weight, passed, count(*) AS n FROM {_ranked(store, params)}"
                " GROUP BY ALL)"), {}
    _count_weights(store)
    return f"(SELECT sample_weight, passed, n FROM {_WEIGHTS} WHERE {_GROUP_WHERE})", params


def _count_weights(store: Store) -> None:
    """Every production group's latest verdicts counted by (sample_weight, passed), into a
    temporary table, once per Store."""
    store.conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {_WEIGHTS} AS SELECT rubric, rubric_version, judge,"
        f" sample_weight, passed, count(*) AS n FROM latest_verdicts WHERE {PRODUCTION.sql()}"
        " GROUP BY ALL")


_EXPORT_CANDIDATES = "_export_candidates"


@dataclass(frozen=True)
class ExportStrata:
    judged: int
    """Judged traces of the rubric (skipped ones included)."""
    eligible: dict[str, int]
    """Traces that may be drawn, per stratum."""
    without_trace: int
    """Judged traces left out because the store holds no trace text for them."""


def select_export_candidates(store: Store, rubric: str, version: int | None, judge: str | None,
                             skip_labelled: bool) -> ExportStrata:
    """Sort the judged traces of the rubric into strata, in a temporary table: `failures` (any
    judge failed it), `disagreements` (judges gave different labels, or one judge's repeated
    samples did: stability < 1) and `pass:<label>`; `draw_export_candidates` takes each one's
    in a random order drawn from `seed`. With `skip_labelled`, traces people labelled on the
    rubric are not eligible."""
    # Labels are grouped as their position in the sorted list of the rubric's labels (min and
    # max of the position are those of the label): string states made the grouping of ~1M
    # traces outgrow the read memory limit and spill (1.3 -> 0.9 s CPU at 4M evaluations).
    source, params = judged(store, rubric, version, judge)
    sql = f"""
    CREATE OR REPLACE TEMP TABLE {_EXPORT_CANDIDATES} AS
    WITH labels AS (SELECT list(DISTINCT label ORDER BY label) AS names FROM {source}),
    per_trace AS (
        SELECT trace_id,
               CASE WHEN bool_or(NOT passed) THEN 'failures'
                    WHEN min(code) <> max(code) OR coalesce(min(stability), 1.0) < 1.0
                    THEN 'disagreements'
                    ELSE 'pass:' || (SELECT names FROM labels)[min(code)] END AS stratum
        FROM (SELECT trace_id, list_position((SELECT names FROM labels), label) AS code, passed,
                     stability FROM {source})
        GROUP BY trace_id
    )
    SELECT trace_id, stratum, trace_id IN (SELECT trace_id FROM traces) AS stored,
           $skip_labelled AND trace_id IN (
               SELECT trace_id FROM human_labels WHERE rubric = $rubric) AS skipped
    FROM per_trace
    """
    store.conn.execute(sql, {**params, "rubric": rubric, "skip_labelled": skip_labelled})
    rows = store.conn.execute(f"SELECT stratum, stored, skipped, count(*) FROM {_EXPORT_CANDIDATES}"
                              " GROUP BY ALL ORDER BY ALL").fetchall()
    return ExportStrata(
        judged=sum(count for *_, count in rows),
        eligible={stratum: count for stratum, stored, skipped, count in rows
                  if stored and not skipped},
        without_trace=sum(count for _, stored, skipped, count in rows if not stored and not skipped))


class DrawnTrace(NamedTuple):
    trace_id: str
    trace_json: str


def draw_export_candidates(store: Store, taken: dict[str, int],
                           seed: int) -> dict[str, list[DrawnTrace]]:
    """The first `taken[stratum]` eligible traces of each stratum in its random order (md5 of
    seed and trace id, so each is drawn with the same probability), in that order. Only the
    chosen traces' text is read (looked up by key)."""
    drawn: dict[str, list[str]] = {}
    for stratum, count in taken.items():
        drawn[stratum] = [row[0] for row in store.conn.execute(
            f"SELECT trace_id FROM {_EXPORT_CANDIDATES} WHERE stratum = $stratum AND stored"
            " AND NOT skipped ORDER BY md5($seed || ':' || trace_id), trace_id LIMIT $count",
            {"stratum": stratum, "seed": str(seed), "count": count}).fetchall()]
    texts = dict(store.conn.execute(
        "SELECT trace_id, trace_json FROM traces WHERE trace_id IN (SELECT unnest($ids))",
        {"ids": [trace_id for ids in drawn.values() for trace_id in ids]}).fetchall())
    return {stratum: [DrawnTrace(trace_id, texts[trace_id]) for trace_id in ids]
            for stratum, ids in drawn.items()}


class JudgedGroup(NamedTuple):
    rubric: str
    rubric_version: int
    judge: str


def rubrics_with_evaluations(store: Store, rubric: str | None,
                             judge: str | None) -> list[JudgedGroup]:
    """The (rubric, rubric_version, judge) groups that have scored production evaluations.
    Without the lake: the groups of the counted latest verdicts (every scored, labelled one;
    the table agreement reads anyway) and of scored evaluations without a label (few, found by
    the label column's validity alone), instead of reading every evaluation's group."""
    scored = f"status = 'scored' AND {PRODUCTION.sql()}"
    if store.reads_lake:
        groups = f"(SELECT rubric, rubric_version, judge FROM evaluations WHERE {scored})"
    else:
        _count_weights(store)
        groups = (f"(SELECT rubric, rubric_version, judge FROM {_WEIGHTS} UNION ALL"
                  " SELECT rubric, rubric_version, judge FROM evaluations"
                  f" WHERE {scored} AND label IS NULL)")
    return [JudgedGroup(*row) for row in store.conn.execute(
        f"SELECT DISTINCT rubric, rubric_version, judge FROM {groups}"
        " WHERE ($rubric IS NULL OR rubric = $rubric) AND ($judge IS NULL OR judge = $judge)"
        " ORDER BY ALL", {"rubric": rubric, "judge": judge}).fetchall()]


class JudgeHumanRow(NamedTuple):
    """One human label beside the judge's verdict on the same trace."""

    trace_id: str
    judge_label: str
    judge_score: float | None
    annotator: str
    human_label: str
    human_score: float | None


def judge_human_rows(store: Store, rubric: str, version: int, judge: str) -> list[JudgeHumanRow]:
    """Every human label that meets the group's latest scored evaluation of its trace, by
    trace then annotator."""
    source, params = judged(store, rubric, version, judge, "labelled")
    sql = f"""
    SELECT e.trace_id, e.label, e.score, h.annotator, h.label, h.score
    FROM {source} e JOIN human_labels h
      ON h.trace_id = e.trace_id AND h.rubric = e.rubric
     AND (h.rubric_version IS NULL OR h.rubric_version = e.rubric_version)
    WHERE h.label IS NOT NULL
    ORDER BY e.trace_id, h.annotator
    """
    return [JudgeHumanRow(*row) for row in store.conn.execute(sql, params).fetchall()]


@dataclass(frozen=True)
class ProductionCounts:
    """Scored evaluations of a group and their failures, raw and by sampling weight."""

    n: int
    failed: int
    weight: float
    weight_failed: float


def production_counts(store: Store, rubric: str, version: int, judge: str) -> ProductionCounts:
    source, params = judged_weights(store, rubric, version, judge)
    sql = f"""
    SELECT coalesce(sum(n), 0), coalesce(sum(n) FILTER (WHERE NOT passed), 0),
           coalesce(sum(sample_weight * n), 0.0),
           coalesce(sum(sample_weight * n) FILTER (WHERE NOT passed), 0.0)
    FROM {source}
    """
    return ProductionCounts(*store.conn.execute(sql, params).fetchall()[0])


class HumanLabel(NamedTuple):
    trace_id: str
    annotator: str
    label: str


def human_labels_for(store: Store, rubric: str, version: int | None) -> list[HumanLabel]:
    """The rubric's labels that apply to `version`, by trace then annotator."""
    return [HumanLabel(*row) for row in store.conn.execute(
        "SELECT trace_id, annotator, label FROM human_labels WHERE rubric = $rubric"
        " AND label IS NOT NULL AND (rubric_version IS NULL OR $version IS NULL"
        " OR rubric_version = $version) ORDER BY trace_id, annotator",
        {"rubric": rubric, "version": version}).fetchall()]


def human_label_count(store: Store) -> int:
    return store.conn.execute("SELECT count(*) FROM human_labels").fetchall()[0][0]
