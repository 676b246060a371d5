"""Code scorers: rubric kinds scored by code, not by a judge (free, deterministic, no prompt).

A code-scorer rubric is `rubrics/<criterion>/v<N>.yaml`: its `kind` names a scorer in the
`SCORERS` registry (base.py) and its `params` are the scorer's settings. Built-ins (builtin.py):
exact and normalized match against `expected`, contains, regex (under a timeout), JSON validity,
JSON Schema conformance, length and estimated-token limits, numeric tolerance; and
`semantic_similarity`, whose embedding model is a plugin (similarity.py). Third parties register
more through the entry-point group `evaluator.scorers`.
"""

from evaluator.judges.scorers import builtin, similarity  # noqa: F401  (they register the built-ins)
from evaluator.judges.scorers.base import (
    SCORERS,
    CodeScorer,
    CodeScorerJudge,
    Score,
    check_scorers,
    code_scorer,
)

__all__ = ["SCORERS", "CodeScorer", "CodeScorerJudge", "Score", "check_scorers", "code_scorer"]
