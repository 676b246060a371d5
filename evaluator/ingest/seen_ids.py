"""The trace ids a source has had, with a digest of each one's first content, in ~24 bytes an id.

A reader checks every trace for a reused id (evaluator.ingest.files), so this is the one thing
that grows with a trace file. A dict of str -> bytes took ~150-230 bytes an id (230 MB at a
million traces); here an id is a 16-byte hash of it (blake2b: a false match between two ids
is a 2^-128 event) and its content an 8-byte one, kept in two sorted numpy arrays. The latest
ids wait in a small dict and are merged into the arrays MERGE_AT at a time.
"""

from __future__ import annotations

import hashlib

import numpy as np

MERGE_AT = 65_536
"""Ids held in the dict before they are merged into the sorted arrays."""


def _key(trace_id: str) -> bytes:
    return hashlib.blake2b(trace_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def content_digest(content: str) -> int:
    """The 8-byte digest of a trace's canonical text that `SeenIds` keeps."""
    digest = hashlib.blake2b(content.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class SeenIds:
    """Trace id -> the content digest of the first trace that had it."""

    def __init__(self, merge_at: int = MERGE_AT) -> None:
        self._merge_at = merge_at
        self._keys = np.empty(0, dtype="S16")
        """Sorted. numpy strips trailing NUL bytes from an S16 value it returns, so a stored key
        is compared with `_key(...).rstrip(b"\\0")`: equal keys strip alike (same length)."""
        self._contents = np.empty(0, dtype=np.uint64)
        self._recent: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._keys) + len(self._recent)

    @property
    def nbytes(self) -> int:
        """The arrays' size (the dict of recent ids adds at most MERGE_AT entries)."""
        return self._keys.nbytes + self._contents.nbytes

    def first(self, trace_id: str, content: int) -> int:
        """The content digest kept for `trace_id`: that of its first trace, which is `content`
        (now kept) when no trace had the id before."""
        key = _key(trace_id)
        found = self._recent.get(key)
        if found is not None:
            return found
        if len(self._keys):
            at = int(np.searchsorted(self._keys, key))
            if at < len(self._keys) and self._keys[at] == key.rstrip(b"\0"):
                return int(self._contents[at])
        self._recent[key] = content
        if len(self._recent) >= self._merge_at:
            self._merge()
        return content

    def _merge(self) -> None:
        keys = np.array(list(self._recent), dtype="S16")
        contents = np.fromiter(self._recent.values(), dtype=np.uint64, count=len(self._recent))
        order = np.argsort(keys, kind="stable")
        keys, contents = keys[order], contents[order]
        at = np.searchsorted(self._keys, keys)
        self._keys = np.insert(self._keys, at, keys)
        self._contents = np.insert(self._contents, at, contents)
        self._recent = {}
