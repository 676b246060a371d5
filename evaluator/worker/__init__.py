"""Service side: broker set-up, the evaluate actor, the results channel and the DuckDB sink."""
