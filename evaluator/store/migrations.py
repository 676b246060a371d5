"""Numbered, append-only schema migrations, applied when a read-write store opens.

Never edit or renumber a published migration: a database in the field has already run it.
A schema change is a new entry at the end of MIGRATIONS. A new file is created from
FRESH_SCHEMA, the tables as migrations 1 to FRESH_SCHEMA_VERSION leave them, and the later
migrations run on it (tests/test_store.py checks FRESH_SCHEMA and prints the text to bring it
up to date with).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import duckdb

from evaluator.core.errors import StoreError


class Migration(NamedTuple):
    number: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "traces, evaluations, dead letters and runs",
        """
        CREATE TABLE traces (
            trace_id VARCHAR PRIMARY KEY,
            trace_json VARCHAR NOT NULL,
            model VARCHAR,
            provider VARCHAR,
            prompt_version VARCHAR,
            status VARCHAR NOT NULL,
            feedback VARCHAR,
            finish_reason VARCHAR,
            sample_reason VARCHAR NOT NULL,
            sample_weight DOUBLE NOT NULL,
            start_time TIMESTAMPTZ,
            received_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE evaluations (
            evaluation_id VARCHAR PRIMARY KEY,
            trace_id VARCHAR NOT NULL,
            rubric VARCHAR NOT NULL,
            rubric_version INTEGER NOT NULL,
            rubric_hash VARCHAR NOT NULL,
            judge VARCHAR NOT NULL,
            judge_hash VARCHAR NOT NULL,
            label VARCHAR,
            score DOUBLE,
            passed BOOLEAN,
            reasoning VARCHAR,
            status VARCHAR NOT NULL,
            reason VARCHAR,
            raw_reply VARCHAR,
            input_tokens BIGINT,
            output_tokens BIGINT,
            cost_usd DOUBLE,
            latency_ms DOUBLE,
            attempts INTEGER NOT NULL,
            cached BOOLEAN NOT NULL,
            prompt_hash VARCHAR,
            sample_reason VARCHAR,
            sample_weight DOUBLE NOT NULL,
            truncated BOOLEAN NOT NULL,
            run_id VARCHAR,
            created_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE dead_letters (
            dead_letter_id VARCHAR PRIMARY KEY,
            source VARCHAR NOT NULL,
            error VARCHAR NOT NULL,
            field VARCHAR,
            payload VARCHAR NOT NULL,
            created_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY,
            kind VARCHAR NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ,
            status VARCHAR NOT NULL,
            params VARCHAR,
            manifest VARCHAR,
            summary VARCHAR
        );
        """,
    ),
    Migration(
        2,
        "human labels",
        """
        -- One label per annotator x item x rubric; label_id hashes those three (re-import is
        -- idempotent). trace_id also holds dataset item ids (replays use the item id as trace id).
        CREATE TABLE human_labels (
            label_id VARCHAR PRIMARY KEY,
            trace_id VARCHAR NOT NULL,
            rubric VARCHAR NOT NULL,
            rubric_version INTEGER,
            label VARCHAR,
            score DOUBLE,
            annotator VARCHAR NOT NULL,
            note VARCHAR,
            source VARCHAR,
            imported_at TIMESTAMPTZ NOT NULL
        );
        """,
    ),
    Migration(
        3,
        "replay items: the dataset item behind each replayed trace, and whether it is done",
        """
        CREATE TABLE replay_items (
            run_id VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            position INTEGER NOT NULL,
            trace_id VARCHAR NOT NULL,
            item_json VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            output VARCHAR,
            target_error VARCHAR,
            target_latency_ms DOUBLE,
            updated_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (run_id, item_id)
        );
        """,
    ),
    Migration(
        4,
        "alerts: quality alerts fired and resolved by the alert rules",
        """
        CREATE TABLE alerts (
            alert_id VARCHAR PRIMARY KEY,
            rule VARCHAR NOT NULL,
            labels VARCHAR NOT NULL,
            dedup_key VARCHAR NOT NULL,
            priority VARCHAR NOT NULL,
            time_window VARCHAR NOT NULL,
            state VARCHAR NOT NULL,
            fired_at TIMESTAMPTZ NOT NULL,
            resolved_at TIMESTAMPTZ,
            last_evaluated_at TIMESTAMPTZ NOT NULL,
            notified_at TIMESTAMPTZ,
            observed DOUBLE,
            interval_low DOUBLE,
            interval_high DOUBLE,
            threshold DOUBLE,
            n BIGINT,
            n_effective DOUBLE,
            example_trace_ids VARCHAR NOT NULL,
            message VARCHAR NOT NULL
        );
        """,
    ),
    Migration(
        5,
        "judge call ledger (every HTTP attempt and cache hit) and the stability of repeated verdicts",
        """
        -- One row per judge HTTP attempt (retries, panel members and samples included) and per
        -- cache hit. call_id is minted when the call is made: re-delivered results are stored
        -- once. cost_usd NULL means unknown, never free.
        CREATE TABLE judge_calls (
            call_id VARCHAR PRIMARY KEY,
            evaluation_id VARCHAR,
            trace_id VARCHAR,
            rubric VARCHAR,
            rubric_version INTEGER,
            run_id VARCHAR,
            judge VARCHAR NOT NULL,
            model VARCHAR,
            transport VARCHAR,
            sample INTEGER NOT NULL,
            attempt INTEGER NOT NULL,
            status VARCHAR NOT NULL,
            http_status INTEGER,
            error_class VARCHAR,
            input_tokens BIGINT,
            output_tokens BIGINT,
            cost_usd DOUBLE,
            latency_ms DOUBLE,
            cached BOOLEAN NOT NULL,
            created_at TIMESTAMPTZ NOT NULL
        );
        -- Share of repeated samples agreeing with the final label (NULL: judged once).
        ALTER TABLE evaluations ADD COLUMN stability DOUBLE;
        """,
    ),
    Migration(
        6,
        "annotation batches: each exported item's stratum and selection probability",
        """
        -- One row per item of a batch written by `evaluator labels export`. The batch is drawn
        -- per stratum (judge failures, judge disagreements, passes per label): stratum_taken of
        -- stratum_size eligible traces, so each item's selection probability is their ratio.
        -- The corrected failure rate weights human labels by 1 / selection_probability.
        CREATE TABLE label_batch_items (
            batch_id VARCHAR NOT NULL,
            trace_id VARCHAR NOT NULL,
            rubric VARCHAR NOT NULL,
            rubric_version INTEGER,
            judge VARCHAR,
            stratum VARCHAR NOT NULL,
            stratum_size BIGINT NOT NULL,
            stratum_taken BIGINT NOT NULL,
            selection_probability DOUBLE NOT NULL,
            exported_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (batch_id, trace_id)
        );
        """,
    ),
    Migration(
        7,
        "claim-level verdicts: the claims a judge checked one by one",
        """
        -- JSON list of {claim, verdict: supported|unsupported|contradicted, evidence} when the
        -- rubric asks for claims (NULL otherwise); the evaluation's score is the supported share.
        ALTER TABLE evaluations ADD COLUMN claims VARCHAR;
        """,
    ),
    Migration(
        8,
        "traces: the input's hash, the key datasets build deduplicates on, as a column",
        """
        -- sha256 of the canonical JSON of the stored (masked) input, as PII masking sets it in
        -- the trace JSON; NULL for a trace stored unmasked. A column, so a build finds repeated
        -- inputs without reading the trace text.
        ALTER TABLE traces ADD COLUMN input_hash VARCHAR;
        UPDATE traces SET input_hash = trace_json ->> '$.input_hash';
        """,
    ),
    Migration(
        9,
        "the keys of traces, evaluations and judge calls stored uncompressed (moving days to the lake)",
        """
        -- Deleting a row makes DuckDB fetch its primary key to remove it from the index; from a
        -- compressed (DICT_FSST) string segment that costs about as much as decompressing the
        -- vector, ~20x the whole delete (benchmarks/bench_lake.py). Uncompressed keys take ~35
        -- bytes a row more on disk. DuckDB cannot change a column's compression in place, so
        -- the three tables are rebuilt once.
        ALTER TABLE traces RENAME TO traces_before_9;
        CREATE TABLE traces (
            trace_id VARCHAR USING COMPRESSION uncompressed PRIMARY KEY,
            trace_json VARCHAR NOT NULL,
            model VARCHAR,
            provider VARCHAR,
            prompt_version VARCHAR,
            status VARCHAR NOT NULL,
            feedback VARCHAR,
            finish_reason VARCHAR,
            sample_reason VARCHAR NOT NULL,
            sample_weight DOUBLE NOT NULL,
            start_time TIMESTAMPTZ,
            received_at TIMESTAMPTZ NOT NULL,
            input_hash VARCHAR
        );
        INSERT INTO traces SELECT * FROM traces_before_9;
        DROP TABLE traces_before_9;
        ALTER TABLE evaluations RENAME TO evaluations_before_9;
        CREATE TABLE evaluations (
            evaluation_id VARCHAR USING COMPRESSION uncompressed PRIMARY KEY,
            trace_id VARCHAR NOT NULL,
            rubric VARCHAR NOT NULL,
            rubric_version INTEGER NOT NULL,
            rubric_hash VARCHAR NOT NULL,
            judge VARCHAR NOT NULL,
            judge_hash VARCHAR NOT NULL,
            label VARCHAR,
            score DOUBLE,
            passed BOOLEAN,
            reasoning VARCHAR,
            status VARCHAR NOT NULL,
            reason VARCHAR,
            raw_reply VARCHAR,
            input_tokens BIGINT,
            output_tokens BIGINT,
            cost_usd DOUBLE,
            latency_ms DOUBLE,
            attempts INTEGER NOT NULL,
            cached BOOLEAN NOT NULL,
            prompt_hash VARCHAR,
            sample_reason VARCHAR,
            sample_weight DOUBLE NOT NULL,
            truncated BOOLEAN NOT NULL,
            run_id VARCHAR,
            created_at TIMESTAMPTZ NOT NULL,
            stability DOUBLE,
            claims VARCHAR
        );
        INSERT INTO evaluations SELECT * FROM evaluations_before_9;
        DROP TABLE evaluations_before_9;
        ALTER TABLE judge_calls RENAME TO judge_calls_before_9;
        CREATE TABLE judge_calls (
            call_id VARCHAR USING COMPRESSION uncompressed PRIMARY KEY,
            evaluation_id VARCHAR,
            trace_id VARCHAR,
            rubric VARCHAR,
            rubric_version INTEGER,
            run_id VARCHAR,
            judge VARCHAR NOT NULL,
            model VARCHAR,
            transport VARCHAR,
            sample INTEGER NOT NULL,
            attempt INTEGER NOT NULL,
            status VARCHAR NOT NULL,
            http_status INTEGER,
            error_class VARCHAR,
            input_tokens BIGINT,
            output_tokens BIGINT,
            cost_usd DOUBLE,
            latency_ms DOUBLE,
            cached BOOLEAN NOT NULL,
            created_at TIMESTAMPTZ NOT NULL
        );
        INSERT INTO judge_calls SELECT * FROM judge_calls_before_9;
        DROP TABLE judge_calls_before_9;
        """,
    ),
    Migration(
        10,
        "latest verdicts: each (trace, rubric version, judge)'s latest scored evaluation, kept as it is written",
        """
        -- The latest scored, labelled evaluation (newest created_at, then largest evaluation_id)
        -- of each trace, rubric version and judge among the evaluations in DuckDB, whatever
        -- their run (readers apply their scope to run_id). Writes keep it (Store.write_batch),
        -- and so does moving days to the lake, so agreement, labels export and datasets build
        -- read one row per trace instead of ranking every evaluation
        -- (evaluator.store.latest_queries).
        CREATE TABLE latest_verdicts (
            trace_id VARCHAR NOT NULL,
            rubric VARCHAR NOT NULL,
            rubric_version INTEGER NOT NULL,
            judge VARCHAR NOT NULL,
            evaluation_id VARCHAR NOT NULL,
            run_id VARCHAR,
            label VARCHAR NOT NULL,
            score DOUBLE,
            passed BOOLEAN,
            sample_weight DOUBLE NOT NULL,
            stability DOUBLE,
            created_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (trace_id, rubric, rubric_version, judge)
        );
        INSERT INTO latest_verdicts
        SELECT trace_id, rubric, rubric_version, judge, evaluation_id, run_id, label, score, passed,
               sample_weight, stability, created_at
        FROM evaluations WHERE status = 'scored' AND label IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY trace_id, rubric, rubric_version, judge
                                   ORDER BY created_at DESC, evaluation_id DESC) = 1;
        """,
    ),
    Migration(
        11,
        "latest verdicts without a primary key (the sink's writes load every key index they insert into)",
        """
        -- DuckDB loads a table's key index into memory to insert into it: with migration 10's
        -- key the sink's writes held a second index as large as the evaluations' (and did not
        -- fit its memory limit at 400,000 evaluations). The writes keep one row per trace,
        -- rubric version and judge themselves (evaluator.store.latest_queries).
        ALTER TABLE latest_verdicts RENAME TO latest_verdicts_before_11;
        CREATE TABLE latest_verdicts (
            trace_id VARCHAR NOT NULL,
            rubric VARCHAR NOT NULL,
            rubric_version INTEGER NOT NULL,
            judge VARCHAR NOT NULL,
            evaluation_id VARCHAR NOT NULL,
            run_id VARCHAR,
            label VARCHAR NOT NULL,
            score DOUBLE,
            passed BOOLEAN,
            sample_weight DOUBLE NOT NULL,
            stability DOUBLE,
            created_at TIMESTAMPTZ NOT NULL
        );
        INSERT INTO latest_verdicts SELECT * FROM latest_verdicts_before_11;
        DROP TABLE latest_verdicts_before_11;
        """,
    ),
    Migration(
        12,
        "traces, evaluations and judge calls without primary keys (a writer held every key index in memory)",
        """
        -- DuckDB holds a table's whole key index (ART) in memory to insert into it, and a key
        -- of random ids spreads each batch over all of it: the writer's memory grew ~55 bytes
        -- a stored row (60 MB at a million evaluations, past the sink's 64 MB limit). Without
        -- keys, a write skips the rows whose id is stored already by reading the id column
        -- (Store.write_batch), and its memory stays under the writer's limit. The ids stay
        -- uncompressed: that scan reads them as they are.
        ALTER TABLE traces RENAME TO traces_before_12;
        CREATE TABLE traces (
            trace_id VARCHAR USING COMPRESSION uncompressed,
            trace_json VARCHAR NOT NULL,
            model VARCHAR,
            provider VARCHAR,
            prompt_version VARCHAR,
            status VARCHAR NOT NULL,
            feedback VARCHAR,
            finish_reason VARCHAR,
            sample_reason VARCHAR NOT NULL,
            sample_weight DOUBLE NOT NULL,
            start_time TIMESTAMPTZ,
            received_at TIMESTAMPTZ NOT NULL,
            input_hash VARCHAR
        );
        INSERT INTO traces SELECT * FROM traces_before_12;
        DROP TABLE traces_before_12;
        ALTER TABLE evaluations RENAME TO evaluations_before_12;
        CREATE TABLE evaluations (
            evaluation_id VARCHAR USING COMPRESSION uncompressed,
            trace_id VARCHAR NOT NULL,
            rubric VARCHAR NOT NULL,
            rubric_version INTEGER NOT NULL,
            rubric_hash VARCHAR NOT NULL,
            judge VARCHAR NOT NULL,
            judge_hash VARCHAR NOT NULL,
            label VARCHAR,
            score DOUBLE,
            passed BOOLEAN,
            reasoning VARCHAR,
            status VARCHAR NOT NULL,
            reason VARCHAR,
            raw_reply VARCHAR,
            input_tokens BIGINT,
            output_tokens BIGINT,
            cost_usd DOUBLE,
            latency_ms DOUBLE,
            attempts INTEGER NOT NULL,
            cached BOOLEAN NOT NULL,
            prompt_hash VARCHAR,
            sample_reason VARCHAR,
            sample_weight DOUBLE NOT NULL,
            truncated BOOLEAN NOT NULL,
            run_id VARCHAR,
            created_at TIMESTAMPTZ NOT NULL,
            stability DOUBLE,
            claims VARCHAR
        );
        INSERT INTO evaluations SELECT * FROM evaluations_before_12;
        DROP TABLE evaluations_before_12;
        ALTER TABLE judge_calls RENAME TO judge_calls_before_12;
        CREATE TABLE judge_calls (
            call_id VARCHAR USING COMPRESSION uncompressed,
            evaluation_id VARCHAR,
            trace_id VARCHAR,
            rubric VARCHAR,
            rubric_version INTEGER,
            run_id VARCHAR,
            judge VARCHAR NOT NULL,
            model VARCHAR,
            transport VARCHAR,
            sample INTEGER NOT NULL,
            attempt INTEGER NOT NULL,
            status VARCHAR NOT NULL,
            http_status INTEGER,
            error_class VARCHAR,
            input_tokens BIGINT,
            output_tokens BIGINT,
            cost_usd DOUBLE,
            latency_ms DOUBLE,
            cached BOOLEAN NOT NULL,
            created_at TIMESTAMPTZ NOT NULL
        );
        INSERT INTO judge_calls SELECT * FROM judge_calls_before_12;
        DROP TABLE judge_calls_before_12;
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].number

FRESH_SCHEMA = """
CREATE TABLE alerts(
    alert_id VARCHAR PRIMARY KEY,
    "rule" VARCHAR NOT NULL,
    labels VARCHAR NOT NULL,
    dedup_key VARCHAR NOT NULL,
    priority VARCHAR NOT NULL,
    time_window VARCHAR NOT NULL,
    state VARCHAR NOT NULL,
    fired_at TIMESTAMP WITH TIME ZONE NOT NULL,
    resolved_at TIMESTAMP WITH TIME ZONE,
    last_evaluated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    notified_at TIMESTAMP WITH TIME ZONE,
    observed DOUBLE,
    interval_low DOUBLE,
    interval_high DOUBLE,
    threshold DOUBLE,
    n BIGINT,
    n_effective DOUBLE,
    example_trace_ids VARCHAR NOT NULL,
    message VARCHAR NOT NULL
);
CREATE TABLE dead_letters(
    dead_letter_id VARCHAR PRIMARY KEY,
    "source" VARCHAR NOT NULL,
    "error" VARCHAR NOT NULL,
    field VARCHAR,
    payload VARCHAR NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL
);
CREATE TABLE evaluations(
    evaluation_id VARCHAR USING COMPRESSION Uncompressed,
    trace_id VARCHAR NOT NULL,
    rubric VARCHAR NOT NULL,
    rubric_version INTEGER NOT NULL,
    rubric_hash VARCHAR NOT NULL,
    judge VARCHAR NOT NULL,
    judge_hash VARCHAR NOT NULL,
    "label" VARCHAR,
    score DOUBLE,
    passed BOOLEAN,
    reasoning VARCHAR,
    status VARCHAR NOT NULL,
    reason VARCHAR,
    raw_reply VARCHAR,
    input_tokens BIGINT,
    output_tokens BIGINT,
    cost_usd DOUBLE,
    latency_ms DOUBLE,
    attempts INTEGER NOT NULL,
    cached BOOLEAN NOT NULL,
    prompt_hash VARCHAR,
    sample_reason VARCHAR,
    sample_weight DOUBLE NOT NULL,
    truncated BOOLEAN NOT NULL,
    run_id VARCHAR,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    stability DOUBLE,
    claims VARCHAR
);
CREATE TABLE human_labels(
    label_id VARCHAR PRIMARY KEY,
    trace_id VARCHAR NOT NULL,
    rubric VARCHAR NOT NULL,
    rubric_version INTEGER,
    "label" VARCHAR,
    score DOUBLE,
    annotator VARCHAR NOT NULL,
    note VARCHAR,
    "source" VARCHAR,
    imported_at TIMESTAMP WITH TIME ZONE NOT NULL
);
CREATE TABLE judge_calls(
    call_id VARCHAR USING COMPRESSION Uncompressed,
    evaluation_id VARCHAR,
    trace_id VARCHAR,
    rubric VARCHAR,
    rubric_version INTEGER,
    run_id VARCHAR,
    judge VARCHAR NOT NULL,
    model VARCHAR,
    transport VARCHAR,
    "sample" INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    status VARCHAR NOT NULL,
    http_status INTEGER,
    error_class VARCHAR,
    input_tokens BIGINT,
    output_tokens BIGINT,
    cost_usd DOUBLE,
    latency_ms DOUBLE,
    cached BOOLEAN NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL
);
CREATE TABLE label_batch_items(
    batch_id VARCHAR,
    trace_id VARCHAR,
    rubric VARCHAR NOT NULL,
    rubric_version INTEGER,
    judge VARCHAR,
    stratum VARCHAR NOT NULL,
    stratum_size BIGINT NOT NULL,
    stratum_taken BIGINT NOT NULL,
    selection_probability DOUBLE NOT NULL,
    exported_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY(batch_id, trace_id)
);
CREATE TABLE latest_verdicts(
    trace_id VARCHAR NOT NULL,
    rubric VARCHAR NOT NULL,
    rubric_version INTEGER NOT NULL,
    judge VARCHAR NOT NULL,
    evaluation_id VARCHAR NOT NULL,
    run_id VARCHAR,
    "label" VARCHAR NOT NULL,
    score DOUBLE,
    passed BOOLEAN,
    sample_weight DOUBLE NOT NULL,
    stability DOUBLE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL
);
CREATE TABLE replay_items(
    run_id VARCHAR,
    item_id VARCHAR,
    "position" INTEGER NOT NULL,
    trace_id VARCHAR NOT NULL,
    item_json VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    output VARCHAR,
    target_error VARCHAR,
    target_latency_ms DOUBLE,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY(run_id, item_id)
);
CREATE TABLE runs(
    run_id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    finished_at TIMESTAMP WITH TIME ZONE,
    status VARCHAR NOT NULL,
    params VARCHAR,
    manifest VARCHAR,
    summary VARCHAR
);
CREATE TABLE traces(
    trace_id VARCHAR USING COMPRESSION Uncompressed,
    trace_json VARCHAR NOT NULL,
    model VARCHAR,
    provider VARCHAR,
    prompt_version VARCHAR,
    status VARCHAR NOT NULL,
    feedback VARCHAR,
    finish_reason VARCHAR,
    sample_reason VARCHAR NOT NULL,
    sample_weight DOUBLE NOT NULL,
    start_time TIMESTAMP WITH TIME ZONE,
    received_at TIMESTAMP WITH TIME ZONE NOT NULL,
    input_hash VARCHAR
);
"""
"""Every table as migrations 1 to FRESH_SCHEMA_VERSION leave it (DuckDB's own CREATE
statements): a new file is created from it in one transaction, ~10 ms instead of ~100 ms for
replaying those migrations one by one (the rebuilds of migration 9 most of it), on every first
run."""
FRESH_SCHEMA_VERSION = 12

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    number INTEGER PRIMARY KEY,
    description VARCHAR NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
)
"""


def applied_numbers(conn: duckdb.DuckDBPyConnection) -> list[int]:
    """Migration numbers recorded in this database ([] for a fresh file). The ledger's presence
    is looked up first: DuckDB's error for a missing table lists similar names (~5 ms)."""
    exists = conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_migrations'"
                          " AND database_name = current_database() AND schema_name = current_schema()"
                          ).fetchone()
    if not exists or not exists[0]:
        return []
    rows = conn.execute("SELECT number FROM schema_migrations ORDER BY number").fetchall()
    return [row[0] for row in rows]


def _check_not_newer(applied: Sequence[int], known: Sequence[Migration], where: str) -> None:
    newest_known = known[-1].number if known else 0
    unknown = [n for n in applied if n > newest_known]
    if unknown:
        raise StoreError(
            f"{where} has schema migration {max(unknown)}, newer than this evaluator knows"
            f" ({newest_known}): upgrade evaluator before opening it"
        )


def apply_migrations(
    conn: duckdb.DuckDBPyConnection, where: str, migrations: Sequence[Migration] = MIGRATIONS
) -> list[int]:
    """Apply the pending migrations in order, each in its own transaction; return their numbers.
    A new file gets those FRESH_SCHEMA covers in one (see _create_fresh)."""
    done = set(applied_numbers(conn))
    _check_not_newer(sorted(done), migrations, where)
    if all(m.number in done for m in migrations):
        return []  # the common case: every open of an up-to-date store costs one query
    conn.execute(_CREATE_LEDGER)
    applied: list[int] = []
    if not done and tuple(migrations[:FRESH_SCHEMA_VERSION]) == MIGRATIONS[:FRESH_SCHEMA_VERSION]:
        applied = _create_fresh(conn, where)
        done = set(applied)
    for migration in migrations:
        if migration.number in done:
            continue
        conn.begin()
        try:
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, now())",
                [migration.number, migration.description],
            )
            conn.commit()
        except duckdb.Error as exc:
            conn.rollback()
            raise StoreError(
                f"{where}: migration {migration.number} ({migration.description}) failed: {exc}"
            ) from exc
        applied.append(migration.number)
    return applied


def _create_fresh(conn: duckdb.DuckDBPyConnection, where: str) -> list[int]:
    """A file without migrations gets FRESH_SCHEMA and migrations 1 to FRESH_SCHEMA_VERSION
    recorded, in one transaction."""
    covered = MIGRATIONS[:FRESH_SCHEMA_VERSION]
    conn.begin()
    try:
        conn.execute(FRESH_SCHEMA)
        conn.execute("INSERT INTO schema_migrations SELECT unnest($numbers), unnest($descriptions), now()",
                     {"numbers": [m.number for m in covered],
                      "descriptions": [m.description for m in covered]})
        conn.commit()
    except duckdb.Error as exc:
        conn.rollback()
        raise StoreError(f"{where}: creating the schema failed: {exc}") from exc
    return [m.number for m in covered]


def require_current(conn: duckdb.DuckDBPyConnection, where: str) -> None:
    """For read-only opens, which cannot migrate: the schema must already be up to date."""
    applied = applied_numbers(conn)
    _check_not_newer(applied, MIGRATIONS, where)
    missing = [m.number for m in MIGRATIONS if m.number not in applied]
    if missing:
        raise StoreError(
            f"{where} is at schema migration {max(applied, default=0)}, this evaluator needs"
            f" {LATEST_VERSION}: open it once read-write to upgrade it (`evaluator sink` does when it"
            " starts; not `evaluator run`, which would add its traces to the store)"
        )
