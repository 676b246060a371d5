"""Core: the records every stage passes around (Trace, Evaluation, DeadLetter), the error tree,
the settings, trace limits, logging set-up, stage timing and shared presentation helpers.

May import: nothing of ours outside `core` (every other package may import it).
"""
