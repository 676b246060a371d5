"""Evaluator: LLM-as-judge quality evaluation for traced LLM applications."""
