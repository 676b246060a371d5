"""Judges: the JudgeClient interface (base.py) and its implementations (offline heuristics,
the LLM judge over the openai client or litellm, panels), built by factory.py as a chain of
small wrappers, one concern each, the way dramatiq chains middleware. Outermost first:

    BudgetedJudge (budget.py) > PanelJudge (panel.py) > FallbackJudge (fallback.py)
      > RequireKey (preflight.py) > CachedJudge (cache.py) > LLMJudge (llm.py)
    and for each HTTP request of an LLMJudge call, Senders (attempt.py):
      Retrying (retrying.py) > InFlightLimit (inflight.py) > BreakerGate (breaker.py)
      > RateLimitedSender (ratelimit.py) > LedgerSender (ledger_rows.py) > TransportSender

What the judges of a process share (cache, rate limiters, breakers) lives in runtime.py; which
failures are worth another try in retry.py. May import core/, rubrics/ and pii/ (secrets in
error messages); never worker/, store/ or anything above them.
"""
