"""Prices and capabilities of OpenAI models from litellm's offline price map, without importing
litellm (seconds and ~200 MB): the openai-client path reads the JSON file litellm ships.

The litellm path asks litellm itself; both read the same map, so both price a call alike.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAP_FILE = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True)
class ModelInfo:
    input_cost_per_token: float | None
    output_cost_per_token: float | None
    cache_read_cost_per_token: float | None
    supports_response_schema: bool
    supports_function_calling: bool

    def cost_usd(self, input_tokens: int | None, output_tokens: int | None,
                 cached_tokens: int = 0) -> float | None:
        """List price of one reply; None when a price or a token count is missing."""
        if (input_tokens is None or output_tokens is None or self.input_cost_per_token is None
                or self.output_cost_per_token is None):
            return None
        cached_rate = self.cache_read_cost_per_token
        if cached_rate is None:
            cached_rate, cached_tokens = 0.0, 0
        return ((input_tokens - cached_tokens) * self.input_cost_per_token
                + cached_tokens * cached_rate + output_tokens * self.output_cost_per_token)

    def structured_output_mode(self) -> str:
        if self.supports_response_schema:
            return "json_schema"
        return "tool" if self.supports_function_calling else "text"


@functools.cache
def _price_map() -> dict[str, Any]:
    litellm = sys.modules.get("litellm")
    if litellm is not None and getattr(litellm, "model_cost", None):
        return litellm.model_cost
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / MAP_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@functools.cache
def openai_model_info(model: str) -> ModelInfo | None:
    """The map's entry for an OpenAI model (`openai/gpt-4o-mini` or `gpt-4o-mini`), or None."""
    prices = _price_map()
    bare = model.removeprefix("openai/")
    entry = prices.get(model) or prices.get(bare)
    if not isinstance(entry, dict) or entry.get("litellm_provider", "openai") != "openai":
        return None
    return ModelInfo(
        input_cost_per_token=entry.get("input_cost_per_token"),
        output_cost_per_token=entry.get("output_cost_per_token"),
        cache_read_cost_per_token=entry.get("cache_read_input_token_cost"),
        supports_response_schema=bool(entry.get("supports_response_schema")),
        supports_function_calling=bool(entry.get("supports_function_calling")),
    )
