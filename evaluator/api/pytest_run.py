"""A pytest session's checks stored as a replay run: one item per check (its id is the test's
node id), so `evaluator gate --run RUN --baseline OTHER_RUN` compares two sessions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluator.api.evaluate import API_DECISION, Evaluated
from evaluator.core.records import sha256_hex
from evaluator.core.rows import StoredTrace
from evaluator.core.settings import Settings
from evaluator.pii.masking import storage_masker
from evaluator.regression.datasets import DatasetItem
from evaluator.regression.replay import git_state, replay_trace_id
from evaluator.store import Scope, Store
from evaluator.store import replay_queries as queries
from evaluator.store.scope import REPLAY_KIND

PYTEST_DATASET = "pytest"


def trace_id_for(run_id: str, item_id: str) -> str:
    """Test ids hold characters a trace id may not (`::`, `[...]`): the item's is hashed."""
    return replay_trace_id(run_id, sha256_hex(item_id)[:24])


def _item(item_id: str, payload: dict[str, Any]) -> DatasetItem:
    return DatasetItem(id=item_id[-100:], input=payload.get("input") or f"pytest {item_id}",
                       context=payload.get("context") or [], output=payload.get("output", ""),
                       expected=payload.get("expected"), label_source="judge",
                       metadata={"pytest_node_id": item_id})


def store_run(db: str | Path, run_id: str, checks: Sequence[tuple[str, dict[str, Any], Evaluated]],
              root: str) -> None:
    settings = Settings.from_env()
    mask = storage_masker(settings)
    rubrics = {e.rubric + f"@v{e.rubric_version}": e.rubric_hash for _, _, r in checks for e in r}
    judges = {(e.judge, e.judge_hash) for _, _, r in checks for e in r}
    params = {"dataset": None, "source": PYTEST_DATASET, "rubrics": sorted(rubrics),
              "judge": sorted(name for name, _ in judges), "target": "pytest"}
    manifest = {"git": git_state(Path(root)), "rubrics": rubrics,
                "judge": [{"name": name, "hash": digest} for name, digest in sorted(judges)],
                "target": "pytest", "dataset": {"name": PYTEST_DATASET, "item_count": len(checks)}}
    traces = [StoredTrace(t if t.pii_masked or mask is None else mask(t), API_DECISION.reason,
                          API_DECISION.weight) for _, _, result in checks for t in result.traces]
    with Store(Path(db)) as store:
        store.start_run(run_id, REPLAY_KIND, params)
        queries.set_running(store, run_id, manifest)
        queries.add_items(store, run_id, [(item_id, trace_id_for(run_id, item_id),
                                           _item(item_id, payload).line())
                                          for item_id, payload, _ in checks])
        store.write_batch(evaluations=[e for _, _, r in checks for e in r], traces=traces,
                          judge_calls=[c for _, _, r in checks for c in r.judge_calls])
        queries.mark_done(store, run_id, [queries.ItemDone(item_id, stored.trace.output, None, None)
                                          for (item_id, _, _), stored in zip(checks, traces, strict=True)])
        summary = [s.to_dict() for s in store.rubric_summary(Scope.run(run_id))]
        store.finish_run(run_id, "completed", summary={"run_id": run_id, "rubrics": summary})
