"""Regression: failures turned into datasets (`datasets`, `dataset_build`), replays of a dataset
with new outputs or a new rubric/judge (`replay`, `targets`), the CI gate that compares a replay
with its baseline (`gate`, `gate_output`), the rubric promotion check (a candidate rubric
version against the current one on a human-labelled golden dataset; `promotion`), and the JSON
Schemas of the files users write (`schemas`).

May import: everything below it (core ... worker, store) and its peer humans; not monitoring,
which imports it, nor cli.
"""
