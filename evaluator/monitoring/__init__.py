"""Monitoring: what the stored evaluations say. Text/JSON reports (`report`), the HTML report
(`html`), alert rules, windows, state and sinks (`alerts`), one trace as `evaluator show` gives
it (`trace_view`), dead letters and run errors.

May import: everything below it (core, ingest, sampling, pii, rubrics, judges, worker, store) and
its peers humans and regression; never cli.
"""
