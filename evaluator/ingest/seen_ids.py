"""The trace ids a source has had, with a digest of each one's first content, in ~16 bytes an id.

A reader checks every trace for a reused id (evaluator.ingest.files), so this is the one thing
that grows with a trace file. A dict of str -> bytes took ~150-230 bytes an id (230 MB at a
million traces); here an id is an 8-byte hash of it (blake2b: a false match between two ids is
a 2^-64 event, ~3e-8 in a file of a million ids, and would dead-letter the later trace as a
reused id; a 16-byte hash took 8 MB more at a million ids) and its content an 8-byte one, kept
in two sorted numpy arrays. The latest ids wait in a small dict and are merged into the arrays
MERGE_AT at a time.

Each merge allocates the arrays anew and frees the old ones; the reading process serves such
big blocks from mappings of their own (evaluator.core.allocator), so a freed array goes back to
the system.
"""

from __future__ import annotations

import numpy as np

from evaluator.core.records import hash64

MERGE_AT = 16_384
"""Ids held in the dict before they are merged into the sorted arrays (~140 bytes an id in the
dict; each merge copies the arrays: ~60 merges at a million ids, ~0.5 s in all)."""
def content_digest(content: str) -> int:
    """The 8-byte digest of a trace's canonical text that `SeenIds` keeps."""
    return hash64(content)


class SeenIds:
    """Trace id -> the content digest of the first trace that had it."""

    def __init__(self, merge_at: int = MERGE_AT) -> None:
        self._merge_at = merge_at
        self._keys = np.empty(0, dtype=np.uint64)
        """Sorted."""
        self._contents = np.empty(0, dtype=np.uint64)
        self._recent: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._keys) + len(self._recent)

    @property
    def nbytes(self) -> int:
        """The arrays' size (the dict of recent ids adds at most MERGE_AT entries)."""
        return self._keys.nbytes + self._contents.nbytes

    def first(self, trace_id: str, content: int) -> int:
        """The content digest kept for `trace_id`: that of its first trace, which is `content`
        (now kept) when no trace had the id before."""
        key = hash64(trace_id)
        found = self._recent.get(key)
        if found is not None:
            return found
        if len(self._keys):
            at = int(np.searchsorted(self._keys, np.uint64(key)))
            if at < len(self._keys) and int(self._keys[at]) == key:
                return int(self._contents[at])
        self._recent[key] = content
        if len(self._recent) >= self._merge_at:
            self._merge()
        return content

    def _merge(self) -> None:
        keys = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
        contents = np.fromiter(self._recent.values(), dtype=np.uint64, count=len(self._recent))
        order = np.argsort(keys, kind="stable")
        keys, contents = keys[order], contents[order]
        at = np.searchsorted(self._keys, keys)
        self._keys = np.insert(self._keys, at, keys)
        self._contents = np.insert(self._contents, at, contents)
        self._recent = {}
