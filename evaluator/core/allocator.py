"""glibc malloc's policy for a process that ends with its bulk work (`evaluator run`, the
processes it forks).

Two of glibc's defaults let a long run's memory grow after its warm-up though what it holds
does not. A block of 128 KB or more gets a mapping of its own, but once such a block is freed
glibc raises that threshold to the block's size (up to 32 MB): later big blocks (pickled chunks
and result batches, Arrow buffers) come from the heap, where a freed one in the middle stays
resident. And each thread that allocates may get an arena of its own (up to 8 a core), each
keeping its freed memory apart. `keep_big_blocks_mapped` fixes the threshold at 128 KB and caps
the arenas at 2. A reading process held ~47 MB for 22 MB of id arrays at a million ids before
(~28 MB after; those ids are on disk since, evaluator.ingest.seen_ids); a run of 1,000,000
traces at rate 0.1 peaked at 369 MB without either setting and 332 MB with both (286 and 283 MB
at 100,000: same moment, load ~4).
"""

from __future__ import annotations

import ctypes

_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3
"""glibc's mallopt parameters; setting the threshold also stops glibc from raising it."""
BIG_BLOCK_BYTES = 128 * 1024
ARENAS = 2


def keep_big_blocks_mapped() -> bool:
    """Serve every block of BIG_BLOCK_BYTES or more from a mapping of its own (freed, it goes
    back to the system at once) and allocate from ARENAS arenas at most, for the rest of this
    process (and of the processes it forks); whether this is a glibc system where that was set."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: its allocator keeps its own policy
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, BIG_BLOCK_BYTES)) and bool(mallopt(_M_ARENA_MAX, ARENAS))
