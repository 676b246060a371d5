"""The corrected failure rate of one (rubric version, judge) group, from the store.

Each labelled item is weighted by its production sampling weight over its selection probability:
the probability recorded when `evaluator labels export` drew it (taken / eligible in its stratum),
times the share of its stratum's exported items that came back labelled (annotators skip rows:
the labelled ones then stand for the skipped ones of their stratum). Labels with no recorded
batch (a label file from elsewhere, an export older than migration 6) are treated as drawn at
random within the judge's verdict: m labelled of the N judged traces with that verdict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from evaluator.humans.agreement.design_correction import design_corrected_rate
from evaluator.humans.agreement.results import CorrectedRate, StratumWeight
from evaluator.store import Store
from evaluator.store import label_batch_queries as queries

UNRECORDED = "no recorded batch"


def _stratum(row: queries.DesignRow) -> str:
    if row.batch_id is None:
        return f"{UNRECORDED}, judge {'fail' if row.judge_failed else 'pass'}"
    return f"{row.batch_id}/{row.stratum}"


def corrected_failure_rate(store: Store, rubric: str, version: int,
                           judge: str, trace_ids: Sequence[str], human_fails: Sequence[bool],
                           n_boot: int, seed: int) -> CorrectedRate:
    """`design_corrected_rate` for the group, the labelled items being `trace_ids` (with the
    humans' consensus verdict), plus how each stratum was weighted."""
    design = {row.trace_id: row for row in queries.design_rows(store, rubric, version, judge)}
    verdicts = queries.production_verdicts(store, rubric, version, judge)
    production_by_verdict = {verdict: sum(row.traces for row in verdicts
                                          if row.judge_failed == verdict)
                             for verdict in (False, True)}
    items = [design[trace_id] for trace_id in trace_ids]
    strata = [_stratum(row) for row in items]
    selected = Counter(_stratum(row) for row in design.values() if row.batch_id is not None)
    labelled = Counter(strata)
    probability: dict[str, float] = {}
    for row, stratum in zip(items, strata, strict=True):
        if stratum in probability:
            continue
        if row.selection_probability is None:  # labelled outside a recorded batch
            probability[stratum] = labelled[stratum] / production_by_verdict[row.judge_failed]
        else:
            probability[stratum] = (row.selection_probability * labelled[stratum]
                                    / selected[stratum])
    result = design_corrected_rate(
        [row.sample_weight for row in verdicts], [row.judge_failed for row in verdicts],
        [row.judge_failed for row in items], list(human_fails),
        [row.sample_weight / probability[stratum] for row, stratum in zip(items, strata, strict=True)],
        strata, n_boot=n_boot, seed=seed,
        production_counts=np.array([row.traces for row in verdicts], dtype=np.int64))
    return replace(result, strata=[
        StratumWeight(stratum=stratum, labelled=labelled[stratum],
                      exported=selected.get(stratum), selection_probability=probability[stratum])
        for stratum in sorted(labelled)])
