"""The Python API and the pytest plugin: score outputs from your own code and test suites,
without the queue, Redis or DuckDB unless asked (`evaluate`, `evaluate_async`; `pytest_plugin`).

May import: every package below it (an entry point like the CLI, layer 6).
"""

from evaluator.api.evaluate import Evaluated, evaluate, evaluate_async

__all__ = ["Evaluated", "evaluate", "evaluate_async"]
