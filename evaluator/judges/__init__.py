"""Judges: the JudgeClient interface and its implementations (offline heuristics, litellm)."""
