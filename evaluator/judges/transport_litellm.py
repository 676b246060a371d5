"""The litellm transport: every provider litellm reaches (`anthropic/...`, `ollama/...`, ...).

litellm is imported on the first call only (seconds, ~200 MB), with its offline price map and
its own retries off, so the judge counts every attempt once.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from evaluator.judges.config import JudgeConfig
from evaluator.judges.structured import reply_of
from evaluator.judges.transport import Reply


def import_litellm() -> ModuleType:
    """Import litellm with the offline price map and without its stdout help banners."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # lazy: litellm takes ~1 s to import: only when a judge calls it
    import litellm

    litellm.suppress_debug_info = True
    return litellm


class LiteLLMTransport:
    name = "litellm"

    def __init__(self, config: JudgeConfig):
        self.model = config.model or ""
        self._fixed: dict[str, Any] = {"model": self.model, "timeout": config.limits.timeout_s,
                                       "num_retries": 0, "max_retries": 0}
        if config.api_base:
            self._fixed["api_base"] = config.api_base
        self._litellm: ModuleType | None = None
        self._unpriced = False

    def structured_output_mode(self) -> str:
        """json_schema where supported or the model is unknown to litellm (usually an
        OpenAI-compatible server), else a forced tool call where supported, else text."""
        litellm = self._client()
        try:
            if litellm.supports_response_schema(model=self.model):
                return "json_schema"
            litellm.get_model_info(model=self.model)
        except Exception:
            return "json_schema"
        return "tool" if litellm.supports_function_calling(model=self.model) else "text"

    async def complete(self, request: dict[str, Any], api_key: str | None) -> Reply:
        litellm = self._client()
        extra = {"api_key": api_key} if api_key else {}
        response = await litellm.acompletion(**self._fixed, **request, **extra)
        usage = getattr(response, "usage", None)
        input_tokens = getattr(usage, "prompt_tokens", None)
        output_tokens = getattr(usage, "completion_tokens", None)
        text, finish_reason = reply_of(response)
        return Reply(text, finish_reason, input_tokens, output_tokens, self._cost(response))

    def _cost(self, response: Any) -> float | None:
        if self._unpriced:
            return None
        already_priced = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
        if already_priced is not None:  # litellm prices every response it returns (documented)
            return float(already_priced)
        try:
            return float(self._client().completion_cost(completion_response=response))
        except Exception:  # model not in litellm's map: unknown for good, stop asking
            self._unpriced = True
            return None

    def _client(self) -> ModuleType:
        if self._litellm is None:
            self._litellm = import_litellm()
        return self._litellm
