"""Example counts that follow the hypothesis profile (registered in tests/conftest.py).

A property names the count it runs in CI; `examples(n)` gives n under the `ci` profile and the
same share of n as the loaded profile's max_examples is of CI_MAX_EXAMPLES under another (the
faster `dev` default), so one setting scales every property, explicit counts included."""

from __future__ import annotations

from hypothesis import settings

CI_MAX_EXAMPLES = 100
"""max_examples of the `ci` profile: hypothesis' own default."""


def examples(ci_count: int) -> int:
    return max(1, ci_count * settings.default.max_examples // CI_MAX_EXAMPLES)
