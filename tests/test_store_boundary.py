"""The store owns its SQL and its schema: one definition of the columns, no SQL elsewhere."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa

from evaluator.core.usage import Usage
from evaluator.store import Store
from evaluator.store.schema import arrow_schema, arrow_types, table_columns

PACKAGE = Path(__file__).resolve().parent.parent / "evaluator"
STORE = PACKAGE / "store"
STORE_TABLES = sorted(table_columns())
_AGAINST_A_TABLE = re.compile(
    r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE|DESCRIBE)\s+(" + "|".join(STORE_TABLES) + r")\b")
"""SQL keywords as this code base writes them (upper case), before a store table's name."""


def test_every_table_built_by_the_migrations_has_the_derived_columns_and_types(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        built = {table: [(name, sql_type) for name, sql_type, *_ in
                         store.conn.execute(f"DESCRIBE {table}").fetchall()]
                 for (table,) in store.conn.execute(
                     "SELECT table_name FROM duckdb_tables() WHERE table_name <> 'schema_migrations'"
                 ).fetchall()}
    derived = table_columns()
    assert {table: [(n, "TIMESTAMP WITH TIME ZONE" if t == "TIMESTAMPTZ" else t) for n, t in cols]
            for table, cols in derived.items()} == built
    for table, columns in derived.items():
        schema = arrow_schema(table)
        assert schema.names == [name for name, _ in columns]
        assert [field.type for field in schema] == [arrow_types()[t] for _, t in columns]


def test_a_subset_schema_keeps_the_asked_order_and_the_table_types():
    schema = arrow_schema("replay_items", ("status", "run_id", "position"))
    assert schema == pa.schema([("status", pa.string()), ("run_id", pa.string()),
                                ("position", pa.int32())])


def _outside_the_store() -> list[Path]:
    return [path for path in sorted(PACKAGE.rglob("*.py")) if STORE not in path.parents]


def test_no_module_outside_the_store_writes_sql_against_its_tables():
    found = []
    for path in _outside_the_store():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = _AGAINST_A_TABLE.search(node.value)
                if match:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {match.group(0)}")
    assert found == [], "SQL against store tables belongs in a store query module"


def test_no_module_outside_the_store_reaches_into_its_connection():
    found = []
    for path in _outside_the_store():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "conn":
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: .conn")
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [alias.name for alias in node.names]
                if "duckdb" in names:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: import duckdb")
    assert found == [], "outside evaluator/store, call a named store query instead"


def test_the_checks_above_would_see_a_violation():
    assert _AGAINST_A_TABLE.search("SELECT count(*) FROM evaluations e")
    assert _AGAINST_A_TABLE.search("UPDATE alerts SET state = 'x'")
    assert not _AGAINST_A_TABLE.search("stream the results into traces and evaluations")
    assert not _AGAINST_A_TABLE.search("SELECT value FROM judge_cache WHERE key = ?")


def test_a_resumed_replay_reads_its_pending_items_in_order_and_what_it_has_spent(tmp_path):
    from evaluator.core.records import Evaluation
    from evaluator.store import replay_queries as queries

    def judged(n: int, run_id: str, cost: float | None) -> Evaluation:
        return Evaluation(evaluation_id=f"e{n}", trace_id=f"{run_id}/i{n}", rubric="r",
                          rubric_version=1, rubric_hash="h", judge="j", judge_hash="h",
                          status="scored", run_id=run_id, usage=Usage(cost_usd=cost))

    with Store(tmp_path / "s.duckdb") as store:
        store.start_run("r1", "replay", {})
        queries.add_items(store, "r1", [(f"i{n}", f"r1/i{n}", f'{{"id": "i{n}"}}') for n in (2, 0, 1)])
        queries.mark_done(store, "r1", [queries.ItemDone("i0", None, None, None)])
        store.write_batch([judged(0, "r1", 0.25), judged(1, "r1", None), judged(2, "other", 5.0)])
        assert queries.pending_items(store, "r1") == [
            queries.PendingItem("r1/i2", '{"id": "i2"}'), queries.PendingItem("r1/i1", '{"id": "i1"}')]
        assert queries.run_cost(store, "r1") == 0.25
        assert queries.run_cost(store, "nothing yet") == 0


def loaded_by(imports: str, watched: set[str]) -> set[str]:
    """Which of the `watched` modules importing `imports` loads, in a fresh interpreter."""
    code = f"import sys, {imports}; print(sorted(set({sorted(watched)!r}) & set(sys.modules)))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(ast.literal_eval(found.stdout.strip()))


def test_read_commands_import_no_arrow():
    """Only writes build Arrow tables: the store, the dataset build and the label export (its
    batch is recorded from a list parameter) import no pyarrow (nor the numpy it loads), ~0.15 s
    and ~45 MB of every read command's start."""
    assert loaded_by("evaluator.store, evaluator.regression.dataset_build, evaluator.humans.labels,"
                     " evaluator.commands.labels", {"pyarrow", "numpy"}) == set()


def test_the_html_report_and_agreement_import_no_arrow():
    """They read labels, verdicts and annotation batches (numpy for the bootstraps), never build
    Arrow tables: no pyarrow, ~0.1 s and ~40 MB of `report --html` and `agreement`."""
    assert loaded_by("evaluator.monitoring.html, evaluator.humans.agreement.from_store,"
                     " evaluator.humans.agreement.store_correction", {"pyarrow"}) == set()


def test_cli_start_imports_no_event_loop_or_entry_points():
    """Every command's start imports every command module: the annotation page's asyncio and
    the plugin listing's entry points (importlib.metadata) are imported when those run."""
    assert loaded_by("evaluator.cli", {"asyncio", "importlib.metadata"}) == set()
