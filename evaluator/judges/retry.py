"""When a failed judge call is worth another try, and how long the server asked us to wait.

Rate limits (429), server errors (5xx), timeouts and dropped connections are transient; any
other 4xx (bad request, unknown model, bad key) will fail the same way again, so it is final.
The waiting itself is evaluator.core.retry's `Backoff`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
"""4xx statuses that mean "try again later"; every 5xx is retryable too."""

RETRYABLE_NAMES = frozenset(
    {"RateLimitError", "InternalServerError", "ServiceUnavailableError", "BadGatewayError",
     "Timeout", "APITimeoutError", "APIConnectionError", "TimeoutError", "ConnectionError"}
)
"""litellm / openai exception class names (or any base class name) that are transient."""

FINAL_NAMES = frozenset(
    {"BadRequestError", "AuthenticationError", "PermissionDeniedError", "NotFoundError",
     "UnprocessableEntityError", "ContextWindowExceededError", "ContentPolicyViolationError",
     "UnsupportedParamsError"}
)


def is_retryable(exc: BaseException) -> bool:
    """True for transient failures. Decided by the exception's class hierarchy, then its status.

    Class names keep litellm out of this module's imports (it is imported lazily elsewhere).
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & FINAL_NAMES:
        return False
    if names & RETRYABLE_NAMES:
        return True
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status >= 500 or status in RETRYABLE_STATUS
    return False


JUDGE_WIDE_STATUS = frozenset({401, 403, 404})
"""Final failures that will hit every call of the judge (bad key, no access, unknown model)."""

TIMEOUT_NAMES = frozenset({"Timeout", "APITimeoutError", "TimeoutError"})


def counts_against_judge(exc: BaseException) -> bool:
    """Whether a failure says the judge itself is in trouble (for the circuit breaker), not
    just this one request (a prompt too long, a refused content policy)."""
    return is_retryable(exc) or getattr(exc, "status_code", None) in JUDGE_WIDE_STATUS


def is_timeout(exc: BaseException) -> bool:
    """A timed-out call may still have been billed: its cost is unknown, not zero."""
    return bool({cls.__name__ for cls in type(exc).__mro__} & TIMEOUT_NAMES)


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, or Retry-After seconds or date)."""
    headers = _headers_of(exc)
    if headers is None:
        return None
    millis = _number(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    seconds = _number(value)
    if seconds is not None or not value:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _headers_of(exc: BaseException) -> dict[str, str] | None:
    """Response headers with lower-cased names, from the HTTP response or litellm's copy."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        headers = getattr(exc, "litellm_response_headers", None)
    if not headers:
        return None
    return {str(name).lower(): value for name, value in headers.items()}


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None
