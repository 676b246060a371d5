"""`semantic_similarity`: the cosine similarity of the output's and the expected answer's
embeddings, at least `threshold` to pass. No embedding model ships with Evaluator (none is
downloaded at run time): the rubric names an embedder a plugin registers under the entry-point
group `evaluator.embedders`, a factory returning `embed(texts: list[str]) -> list[list[float]]`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from evaluator.core.plugins import Registry, needs_callable
from evaluator.core.records import Trace
from evaluator.judges.scorers.base import SCORERS, Score

Embed = Callable[[list[str]], Sequence[Sequence[float]]]

EMBEDDERS: Registry[Callable[[], Embed]] = Registry("evaluator.embedders", "embedder", needs_callable)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0


class SemanticSimilarity:
    version = "1"

    def __init__(self, embedder: str, threshold: float = 0.8):
        if not isinstance(threshold, (int, float)) or not -1.0 <= threshold <= 1.0:
            raise ValueError("threshold must be a cosine similarity, from -1 to 1")
        self.embedder = embedder
        self.embed = EMBEDDERS.get(embedder)()
        self.threshold = float(threshold)
        self.version = f"1/{embedder}"

    def score(self, trace: Trace) -> Score:
        if trace.expected is None:
            return Score(None, "the item has no `expected` reference answer to compare with")
        output, expected = self.embed([trace.output, trace.expected])
        similarity = cosine(output, expected)
        verdict = "at least" if similarity >= self.threshold else "below"
        return Score(float(similarity >= self.threshold),
                     f"cosine similarity {similarity:.3f} to the expected answer ({self.embedder} "
                     f"embeddings), {verdict} the threshold {self.threshold:g}")


SCORERS.register("semantic_similarity", SemanticSimilarity)
