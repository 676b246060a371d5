"""OpenTelemetry in: the app's span exporter, span normalizers and OTLP/JSON file reading."""

from evaluator.otel.exporter import EvaluatorSpanExporter

__all__ = ["EvaluatorSpanExporter"]
