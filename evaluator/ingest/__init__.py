"""Ingest: traces in. JSONL and OTLP/JSON files (`files`), and OpenTelemetry spans and log records
(`otel`: normalizing GenAI conventions, assembling spans into traces, the in-app span and log
exporters), streamed through validation, sampling and masking into work for the queue.

May import: core, queue, sampling, pii.
"""
