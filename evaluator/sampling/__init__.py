"""Sampling: which traces are judged and with what weight. The policy (base, segment and rubric
rates, always-evaluate rules; `policy`), its YAML configuration (`config`), and the daily judge
budget that paces random sampling to the spend so far (`spend`, `spend_check`), and the span
exporter's sampling under back-pressure (`throttle`).

May import: core, queue.
"""
