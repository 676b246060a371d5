"""An embedder for the `semantic_similarity` scorer: hashed character trigrams. Lexical, not
semantic: it shows the plugin point; a real plugin wraps a sentence-embedding model."""

from __future__ import annotations

import zlib
from collections.abc import Callable

DIMENSIONS = 512


def _vector(text: str) -> list[float]:
    vector = [0.0] * DIMENSIONS
    padded = f"  {text.lower()} "
    for start in range(len(padded) - 2):
        vector[zlib.crc32(padded[start:start + 3].encode()) % DIMENSIONS] += 1.0
    return vector


def char_trigrams() -> Callable[[list[str]], list[list[float]]]:
    return lambda texts: [_vector(text) for text in texts]
