"""OpenTelemetry in: the app's span exporter, span normalizers and OTLP/JSON file reading."""

from evaluator.otel.exporter import EvaluatorSpanExporter
from evaluator.otel.log_exporter import EvaluatorLogExporter
from evaluator.otel.processor import evaluator_span_processor

__all__ = ["EvaluatorLogExporter", "EvaluatorSpanExporter", "evaluator_span_processor"]
