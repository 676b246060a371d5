"""The Settings of one `evaluator` invocation: built once from the environment when the command
starts (the `evaluator` group, evaluator.cli) and kept on click's root context for every command."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from evaluator.core.settings import Settings


def current_settings() -> Settings:
    """This invocation's Settings (ConfigError, naming the variable, when one is invalid)."""
    from evaluator.core.settings import Settings  # lazy: pydantic-settings; `evaluator --help` stays fast

    root = click.get_current_context().find_root()
    if not isinstance(root.obj, Settings):
        root.obj = Settings.from_env()
    return root.obj
