"""The conformance suite's driver side: real instrumentation packages around a real openai client.

`driver` runs in one package set's virtualenv (scripts/conformance_envs.py builds them) and
writes what the package emitted and what the live exporters built; tests/test_conformance.py
runs the drivers and checks both paths. `scenarios` holds what both sides must agree on.
"""
