"""The garbage collector's pace for a process that ends with its bulk work (`evaluator run`).

A run allocates millions of short-lived records (traces, prompts, evaluations, pickled batches).
CPython collects its youngest generation every 700 net allocations of container objects, and
each collection traverses every young object still alive: ~7 % of the CPU of the run's main
and judging processes (measured with gc.callbacks, 5,000 traces). Here the youngest generation
is collected every BULK_GEN0 allocations instead, and what exists before the work (modules,
rubrics, settings) is frozen: never traversed again, and, in the processes a run forks, its
pages are not written by collections (copy-on-write keeps them shared). Only cyclic garbage
waits longer: at most BULK_GEN0 container objects.
"""

from __future__ import annotations

import gc

BULK_GEN0 = 20_000
"""Net allocations of container objects between collections of the youngest generation."""


def for_bulk_work() -> None:
    """Freeze what exists and collect the youngest generation less often, for the rest of this
    process's life (and of the processes it forks)."""
    gc.freeze()
    gc.set_threshold(BULK_GEN0, *gc.get_threshold()[1:])
