"""CLI command groups, one module per area. Each imports only click at module level, so
`evaluator --help` stays fast; heavy imports happen inside the commands."""
