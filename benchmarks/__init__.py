"""`make bench`: each benchmarks/bench_*.py exposes run(quick) -> rows; this package runs them."""
