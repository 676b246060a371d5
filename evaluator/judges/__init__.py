"""Judges: the JudgeClient interface and its implementations (offline heuristics, the LLM judge
over the openai client or litellm, panels), with what they share (cache, limits, breakers)."""
