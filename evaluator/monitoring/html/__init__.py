"""`evaluator report --html FILE`: one self-contained HTML file with charts.

Modules: `data` (queries), `svg` (charts drawn in Python), `page` (the document). The file
needs no network to open (no CDN, no script), and prints on A4.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from evaluator.core.errors import EvaluatorError
from evaluator.core.records import utcnow
from evaluator.core.settings import DEFAULTS
from evaluator.core.since import parse_since
from evaluator.humans.agreement.from_store import NoLabelsError, store_judge_agreement
from evaluator.monitoring.html.data import collect
from evaluator.monitoring.html.page import render_page
from evaluator.rubrics import RubricRegistry
from evaluator.store import Store
from evaluator.store.alert_queries import latest_alerts
from evaluator.store.scope import PRODUCTION, Scope

if TYPE_CHECKING:
    from evaluator.humans.agreement.results import JudgeAgreement

LATEST_ALERTS = 10
AGREEMENT_BOOTSTRAP = 500


def agreement_groups(store: Store, rubrics_dir: Path) -> tuple[list[JudgeAgreement], str | None]:
    """Judge-vs-human agreement per rubric version and judge, or why there is none (the
    card shows no failure rates: they are not computed)."""
    try:
        # the card reads the rubrics' labels and scores, never renders a template: not compiled
        groups = store_judge_agreement(store, RubricRegistry.load(rubrics_dir, compile_all=False),
                                       n_boot=AGREEMENT_BOOTSTRAP)
    except NoLabelsError:
        return [], ("No human labels yet: export a batch with `evaluator labels export`, label it,"
                    " then `evaluator labels import FILE`.")
    except EvaluatorError as exc:
        return [], f"Agreement could not be computed: {exc}"
    unlabelled = [f"{g.ref} ({g.judge})" for g in groups if not g.agreement]
    note = f"No human labels match: {', '.join(unlabelled)}." if unlabelled else None
    return [g for g in groups if g.agreement], note


def write_html_report(db_path: str | Path, out_path: str | Path, since: str | None = None,
                      scope: Scope = PRODUCTION, now: datetime | None = None,
                      rubrics_dir: Path | None = None, lake: Path | None = None) -> Path:
    """Read the store (also while a sink writes) and write the report of one scope (production
    traffic unless told; agreement and alerts are always production's); returns its path."""
    now = now or utcnow()
    rubrics_dir = rubrics_dir or DEFAULTS.rubrics_dir
    with Store(db_path, read_only=True, lake=lake) as store:
        start = None if since is None else parse_since(since, now)
        data = collect(store, str(db_path), start, store.check_scope(scope), now)
        alerts = latest_alerts(store, LATEST_ALERTS)
        groups, note = agreement_groups(store, rubrics_dir)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_page(data, alerts, groups, note), encoding="utf-8")
    return out
