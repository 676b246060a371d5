"""An example Evaluator plugin: one of each extension point, registered in pyproject.toml."""
