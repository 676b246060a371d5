"""Read-side SQL for regression datasets: failing verdicts on stored traces, judge and human.

Only evaluations in the build's scope (production traffic unless told, store.scope) on traces in
the `traces` table count: an item needs its trace, and replayed items (trace ids
`<run_id>/<item_id>`) are never stored there, so a dataset is not rebuilt from its own replays.

A build selects and counts its candidates here, so only the traces it turns into items leave
DuckDB: `select_candidates` keeps, in a temporary table, each qualifying trace with its oldest
failure and its stored input's key, marking the inputs the dataset does not have yet;
`candidate_pages` then reads them oldest failure first (then trace id), a page at a time, and
returns the first trace of each input only (the rows of a page are read in order, so the first
time an input is met is its first trace).

The judge's latest verdict on a (trace, rubric) is the newest of that pair's `latest_verdicts`
rows (one per rubric version and judge; evaluator.store.latest_queries), newest created_at then
largest evaluation id, as that table orders a group. A Store reading the lake, and a build of
one named run (the table keeps a group's newest row of any run, and a run of kind `run` may
judge the same traces as production), rank the evaluations instead: the same verdicts. The
verdicts of the few traces a page turns into items are ranked from their evaluations.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from evaluator.store.latest_queries import NEWEST_FIRST, SCORED_LABELLED
from evaluator.store.scope import Scope

if TYPE_CHECKING:
    from evaluator.store.duckdb_store import Store

_PAIR_NEWEST = "PARTITION BY trace_id, rubric ORDER BY " + NEWEST_FIRST

# The latest verdict of each rubric on some traces, ranked from their evaluations: looking ~1,000
# traces up among 4,000,000 costs half as much in the evaluations (trace ids stored
# uncompressed) as in latest_verdicts.
_LATEST_VERDICTS = f"""
SELECT trace_id, rubric, rubric_version, judge, label, passed, created_at
FROM evaluations
WHERE {SCORED_LABELLED} AND trace_id IN (SELECT unnest($ids)) AND {{scope}}
QUALIFY row_number() OVER ({_PAIR_NEWEST}) = 1
"""

_HUMAN_VERDICTS = "_build_human_verdicts"
_HUMAN_CHOSEN = "_build_human_chosen"
_CANDIDATES = "_build_candidates"
# Per (trace, rubric): the label most annotators gave (the latest import breaks ties), among the
# labels on stored traces judged in the scope.
_CHOOSE_HUMAN_LABELS = f"""
CREATE OR REPLACE TEMP TABLE {_HUMAN_CHOSEN} AS
SELECT trace_id, rubric, rubric_version, label, score, imported_at FROM (
    SELECT *, count(*) OVER (PARTITION BY trace_id, rubric, label) AS votes
    FROM human_labels
    WHERE label IS NOT NULL AND trace_id IN (SELECT trace_id FROM traces)
      AND trace_id IN (SELECT trace_id FROM evaluations WHERE {{scope}})
)
QUALIFY row_number() OVER (PARTITION BY trace_id, rubric
                           ORDER BY votes DESC, imported_at DESC, label_id DESC) = 1
"""

# People's verdicts: the chosen label's score (its own, else its rubric's for the label) against
# the rubric's pass threshold; a label without a score gives no verdict. $scales: a list of
# RubricScale structs (a parameter, not a registered Arrow table: a build imports no pyarrow).
_HUMAN_VERDICTS_FROM_CHOSEN = f"""
CREATE OR REPLACE TEMP TABLE {_HUMAN_VERDICTS} AS
WITH scales AS (
    SELECT s.rubric, s.rubric_version, s.label, s.score, s.pass_threshold FROM (
        SELECT unnest($scales::STRUCT(rubric VARCHAR, rubric_version INTEGER, label VARCHAR,
                                      score DOUBLE, pass_threshold DOUBLE)[]) AS s)
)
SELECT trace_id, rubric, rubric_version, label, passed, judged_at FROM (
    SELECT c.trace_id, c.rubric, c.rubric_version, c.label,
           coalesce(c.score, s.score) >= t.pass_threshold AS passed, c.imported_at AS judged_at
    FROM {_HUMAN_CHOSEN} c
    JOIN (SELECT DISTINCT rubric, rubric_version, pass_threshold FROM scales) t
      ON t.rubric = c.rubric AND t.rubric_version IS NOT DISTINCT FROM c.rubric_version
    LEFT JOIN scales s ON s.rubric = c.rubric AND s.rubric_version IS NOT DISTINCT FROM
                             c.rubric_version AND s.label = c.label
) WHERE passed IS NOT NULL
"""

# The judge's failing latest verdicts (trace_id, rubric, rubric_version, created_at), from
# latest_verdicts: a pair's failing row counts unless a newer row of the pair (another rubric
# version or judge) hides it. The rows that may hide one (few) come from one equi-join of the
# failing rows to the table, which reads no evaluation id: at the same moment the larger id is
# the newer, looked up for those tied rows alone (no row, no lookup). Ranking every failing pair
# sorted ~560,000 rows at 4,000,000 evaluations.
_JUDGE_FAILING_LATEST = """
failing AS (
    SELECT trace_id, rubric, rubric_version, judge, created_at FROM latest_verdicts
    WHERE $judge AND NOT passed AND {scope} AND ($rubric IS NULL OR rubric = $rubric)
),
rivals AS (
    SELECT f.trace_id, f.rubric, f.rubric_version, f.judge, n.rubric_version AS rival_version,
           n.judge AS rival_judge, n.created_at > f.created_at AS newer
    FROM failing f
    JOIN latest_verdicts n ON n.trace_id = f.trace_id AND n.rubric = f.rubric
    WHERE {n_scope} AND n.created_at >= f.created_at
      AND (n.rubric_version <> f.rubric_version OR n.judge <> f.judge)
),
hidden AS (
    SELECT trace_id, rubric, rubric_version, judge FROM rivals WHERE newer
    UNION ALL
    SELECT t.trace_id, t.rubric, t.rubric_version, t.judge
    FROM (SELECT * FROM rivals WHERE NOT newer) t
    JOIN latest_verdicts mine ON mine.trace_id = t.trace_id AND mine.rubric = t.rubric
                              AND mine.rubric_version = t.rubric_version AND mine.judge = t.judge
    JOIN latest_verdicts rival ON rival.trace_id = t.trace_id AND rival.rubric = t.rubric
                               AND rival.rubric_version = t.rival_version
                               AND rival.judge = t.rival_judge
    WHERE rival.evaluation_id > mine.evaluation_id
),
judge AS (
    SELECT trace_id, rubric, rubric_version, created_at FROM failing f
    WHERE NOT EXISTS (SELECT 1 FROM hidden h WHERE h.trace_id = f.trace_id AND h.rubric = f.rubric
                      AND h.rubric_version = f.rubric_version AND h.judge = f.judge)
),"""

# The same verdicts ranked from the evaluations: the latest verdict is looked for only among
# (trace, rubric) pairs that have a failing one.
_JUDGE_FAILING_RANKED = f"""
failing_pairs AS (
    SELECT DISTINCT trace_id, rubric FROM evaluations
    WHERE $judge AND {SCORED_LABELLED} AND NOT passed AND {{scope}}
      AND ($rubric IS NULL OR rubric = $rubric)
),
judge AS (
    SELECT trace_id, rubric, rubric_version, created_at FROM (
        SELECT e.trace_id, e.rubric, e.rubric_version, e.passed, e.created_at, e.evaluation_id
        FROM evaluations e
        WHERE e.status = 'scored' AND e.label IS NOT NULL AND {{e_scope}}
          AND EXISTS (SELECT 1 FROM failing_pairs f WHERE f.trace_id = e.trace_id AND f.rubric = e.rubric)
        QUALIFY row_number() OVER ({_PAIR_NEWEST}) = 1
    ) WHERE NOT passed
),"""

# A human verdict replaces the judge's on its rubric. The dedup key is the stored input's hash
# (set by masking; the key a dataset item has), else the sha256 of its JSON (a trace stored
# unmasked).
_SELECT_CANDIDATES = f"""
CREATE OR REPLACE TEMP TABLE {_CANDIDATES} AS
WITH {{judge}}
verdicts AS (
    SELECT trace_id, rubric, rubric_version AS version, FALSE AS passed, created_at AS judged_at
    FROM judge j
    WHERE NOT EXISTS (SELECT 1 FROM {_HUMAN_VERDICTS} h
                      WHERE h.trace_id = j.trace_id AND h.rubric = j.rubric)
    UNION ALL
    SELECT trace_id, rubric, rubric_version, passed, judged_at FROM {_HUMAN_VERDICTS}
),
qualifying AS (
    SELECT trace_id, min(judged_at) AS failed_at
    FROM verdicts
    WHERE NOT passed
      AND ($rubric IS NULL OR rubric = $rubric)
      AND ($version IS NULL OR version = $version)
      AND ($since IS NULL OR judged_at >= $since)
    GROUP BY trace_id
),
keyed AS (
    SELECT q.trace_id, q.failed_at, t.input_hash AS input_key
    FROM qualifying q JOIN traces t USING (trace_id) WHERE t.input_hash IS NOT NULL
    UNION ALL
    SELECT q.trace_id, q.failed_at, sha256(t.trace_json -> '$.input')
    FROM qualifying q JOIN traces t USING (trace_id) WHERE t.input_hash IS NULL
)
SELECT failed_at, trace_id, input_key, input_key NOT IN (SELECT unnest($known::VARCHAR[])) AS new
FROM keyed
"""


@dataclass(frozen=True)
class JudgeVerdictRow:
    """The latest scored verdict of one rubric on a trace."""

    trace_id: str
    rubric: str
    rubric_version: int
    judge: str
    label: str
    passed: bool
    created_at: datetime


@dataclass(frozen=True)
class HumanVerdictRow:
    """People's verdict on one rubric of a trace (it replaces the judge's)."""

    trace_id: str
    rubric: str
    rubric_version: int | None
    label: str
    passed: bool
    judged_at: datetime
    """When the label was imported."""


@dataclass(frozen=True)
class RubricScale:
    """A rubric version's score for one label, and its pass threshold (`version` None: the
    labels that name no version, scored by the rubric's latest)."""

    rubric: str
    rubric_version: int | None
    label: str
    score: float
    pass_threshold: float


@dataclass(frozen=True)
class CandidateCounts:
    qualifying: int
    """Traces with a matching failing verdict."""
    new: int
    """Of those, the first trace of each stored input the dataset does not have yet."""


@dataclass(frozen=True)
class CandidateRow:
    failed_at: datetime
    trace_id: str
    trace_json: str


def _ranks_evaluations(store: Store, scope: Scope) -> bool:
    """Whether the judge's latest verdicts are ranked from the evaluations (the module's
    docstring says when latest_verdicts does not hold them)."""
    return store.reads_lake or scope.kind == "run"


def choose_human_labels(store: Store, scope: Scope) -> list[tuple[str, int | None]]:
    """Keep, per (trace, rubric), the label most annotators gave (the latest import breaks
    ties) among the labels on stored traces judged in the scope, for `keep_human_verdicts`;
    returns the (rubric, rubric version) they name."""
    store.conn.execute(_CHOOSE_HUMAN_LABELS.format(scope=scope.sql()), scope.params())
    return [(rubric, version) for rubric, version in store.conn.execute(
        f"SELECT DISTINCT rubric, rubric_version FROM {_HUMAN_CHOSEN} ORDER BY ALL").fetchall()]


def keep_human_verdicts(store: Store, scales: Sequence[RubricScale] | None) -> None:
    """People's verdicts from the labels `choose_human_labels` kept, scored by `scales` (every
    label of each rubric version they name); None: no human verdicts."""
    if scales is None:
        store.conn.execute(f"CREATE OR REPLACE TEMP TABLE {_HUMAN_VERDICTS} (trace_id VARCHAR,"
                           " rubric VARCHAR, rubric_version INTEGER, label VARCHAR,"
                           " passed BOOLEAN, judged_at TIMESTAMPTZ)")
        return
    store.conn.execute(_HUMAN_VERDICTS_FROM_CHOSEN, {"scales": [vars(scale) for scale in scales]})


def human_verdicts(store: Store, trace_ids: list[str]) -> list[HumanVerdictRow]:
    """The verdicts `keep_human_verdicts` kept on these traces."""
    return [HumanVerdictRow(*row) for row in store.conn.execute(
        "SELECT trace_id, rubric, rubric_version, label, passed, judged_at"
        f" FROM {_HUMAN_VERDICTS} WHERE trace_id IN (SELECT unnest($ids))",
        {"ids": trace_ids}).fetchall()]


def select_candidates(store: Store, scope: Scope, judge: bool, rubric: str | None,
                      version: int | None, since: datetime | None,
                      known_inputs: Collection[str]) -> CandidateCounts:
    """Find the traces whose merged verdict (people's, as `keep_human_verdicts` kept them, where
    they gave one, else the judge's latest, when `judge`) on `rubric` (any when None), given at
    or after `since`, failed, for `candidate_pages`. `known_inputs`: input hashes the dataset
    already holds."""
    ranked = _ranks_evaluations(store, scope)
    judge_sql = (_JUDGE_FAILING_RANKED if ranked else _JUDGE_FAILING_LATEST).format(
        scope=scope.sql(), e_scope=scope.sql("e.run_id"), n_scope=scope.sql("n.run_id"))
    store.conn.execute(_SELECT_CANDIDATES.format(judge=judge_sql),
                       {**scope.params(), "judge": judge, "rubric": rubric,
                        "version": version, "since": since, "known": sorted(known_inputs)})
    [(qualifying, new)] = store.conn.execute(
        f"SELECT count(*), count(DISTINCT input_key) FILTER (WHERE new) FROM {_CANDIDATES}").fetchall()
    return CandidateCounts(qualifying, new)


def candidate_pages(store: Store, size: int) -> Iterator[list[CandidateRow]]:
    """The first trace of each new input, oldest failure first (then trace id), with its stored
    text: `size` candidates are read at a time, each page after the last one read, and only the
    first of an input's traces is kept (its texts are looked up by key: a join would read every
    trace's text). A page may keep none."""
    met: set[str] = set()  # inputs whose first trace was read
    after: tuple[datetime, str] | None = None
    while rows := store.conn.execute(
            f"SELECT failed_at, trace_id, input_key FROM {_CANDIDATES}"
            " WHERE new AND ($first OR failed_at > $at OR (failed_at = $at AND trace_id > $trace_id))"
            " ORDER BY failed_at, trace_id LIMIT $size",
            {"first": after is None, "at": after and after[0], "trace_id": after and after[1],
             "size": size}).fetchall():
        after = rows[-1][:2]
        firsts = []
        for failed_at, trace_id, key in rows:
            if key not in met:
                met.add(key)
                firsts.append((failed_at, trace_id))
        texts = dict(store.conn.execute(
            "SELECT trace_id, trace_json FROM traces WHERE trace_id IN (SELECT unnest($ids))",
            {"ids": [trace_id for _, trace_id in firsts]}).fetchall())
        yield [CandidateRow(failed_at, trace_id, texts[trace_id]) for failed_at, trace_id in firsts]


def latest_judge_verdicts(store: Store, scope: Scope,
                          trace_ids: list[str]) -> list[JudgeVerdictRow]:
    """The latest verdict of each rubric on these traces."""
    sql = _LATEST_VERDICTS.format(scope=scope.sql())
    return [JudgeVerdictRow(*row)
            for row in store.conn.execute(sql, {**scope.params(), "ids": trace_ids}).fetchall()]
