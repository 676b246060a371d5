"""CLI command groups, one module per area. Each imports only click at module level, so
`evaluator --help` stays fast; heavy imports happen inside the commands.

May import: every package (with cli.py they are the top layer, and nothing imports them)."""
