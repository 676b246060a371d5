"""Test helpers shared by tests and benchmarks (a local OpenAI-compatible server)."""
