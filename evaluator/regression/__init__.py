"""Regression: failures turned into datasets (`datasets`, `dataset_build`), replays of a dataset
with new outputs or a new rubric/judge (`replay`, `targets`), the CI gate that compares a replay
with its baseline (`gate`, `gate_output`), and the JSON Schemas of the files users write
(`schemas`).

May import: everything below it (core ... worker, store) and its peers monitoring and humans;
never cli.
"""
