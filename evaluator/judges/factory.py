"""Build the JudgeClient a judge config describes: offline, one LLM (with its fallbacks),
repeated samples of one LLM, or a panel of several judges, as a chain of small wrappers.

The chain, outermost first (the way dramatiq chains middleware; each wrapper has one job and
works alone around any JudgeClient or Sender):

    BudgetedJudge      budget.py      the run's USD cap (`budget=`; skipped once spent)
    PanelJudge         panel.py       panel members and/or k samples, aggregated
    FallbackJudge      fallback.py    the config's fallbacks, when the judge asked for defers
    -- each LLM judge --
    RequireKey         preflight.py   no API key: an error naming the variable
    CachedJudge        cache.py       deterministic calls: a hit costs nothing
    LLMJudge           llm.py         request, one retry of a truncated reply, verdict parsing
    -- each HTTP attempt (attempt.py) --
    Retrying           retrying.py    retries with backoff (core.retry); waits for the circuit
    InFlightLimit      inflight.py    at most limits.max_in_flight requests per event loop
    BreakerGate        breaker.py     the circuit breaker admits and hears each request
    RateLimitedSender  ratelimit.py   requests/tokens per minute, shared through Redis
    LedgerSender       ledger_rows.py one priced ledger row per request
    TransportSender    attempt.py     the openai client or litellm (transport.py)

Wrappers a config does not need are left out (no fallbacks, no cache, no rate limit, one
sample). The offline judge is its own JudgeClient (only budget and panel wrap it). A config's
`kind` names its builder in the judge-kind registry (kinds.py): `offline`, `litellm` and
`panel` are the builders here, others come from plugins (entry-point group `evaluator.judges`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evaluator.core.errors import ConfigError
from evaluator.core.retry import Backoff
from evaluator.judges.attempt import Sender, TransportSender
from evaluator.judges.base import JudgeClient, JudgeLink
from evaluator.judges.breaker import BreakerGate
from evaluator.judges.budget import RunBudget
from evaluator.judges.cache import CachedJudge, is_deterministic
from evaluator.judges.config import JudgeConfig, load_judge_config
from evaluator.judges.fallback import FallbackJudge
from evaluator.judges.inflight import InFlightLimit
from evaluator.judges.kinds import JudgeContext, judge_kind
from evaluator.judges.ledger_rows import CallRows, LedgerSender
from evaluator.judges.llm import LLMJudge
from evaluator.judges.offline import OfflineJudge
from evaluator.judges.panel import PanelJudge, panel_hash
from evaluator.judges.preflight import RequireKey
from evaluator.judges.ratelimit import RateLimitedSender
from evaluator.judges.retrying import Retrying
from evaluator.judges.runtime import JudgeRuntime
from evaluator.judges.transport import Transport, build_transport

_NEXT = ("inner", "sender", "transport")
"""The attribute a wrapper keeps what it wraps in (LLMJudge: its sender)."""


def build_judge(config: JudgeConfig, judges_dir: Path | None = None,
                runtime: JudgeRuntime | None = None,
                budget: RunBudget | None = None) -> JudgeClient:
    """Fallback and panel member names are loaded from `judges_dir`. Without a runtime the
    judge (all its members) gets one of its own, without a cache: entry points pass theirs."""
    judge = _unbudgeted(config, judges_dir, runtime or JudgeRuntime())
    return judge if budget is None else budget.wrap(judge)


def load_judge(name: str, judges_dir: Path | None = None, runtime: JudgeRuntime | None = None,
               budget: RunBudget | None = None) -> JudgeClient:
    """Load `judges/<name>.yaml` (or a path to a YAML file) and build its judge."""
    config = load_judge_config(name, judges_dir)
    if judges_dir is None and Path(name).suffix in {".yaml", ".yml"}:
        judges_dir = Path(name).parent  # fallbacks and members live next to the file
    return build_judge(config, judges_dir, runtime, budget)


def build_llm_judge(config: JudgeConfig, runtime: JudgeRuntime | None = None, *,
                    fallbacks: Sequence[JudgeConfig] = (), transport: Transport | None = None,
                    backoff: Backoff | None = None) -> JudgeClient:
    """One LLM judge (`transport`: its transport, else the config's) and its fallbacks."""
    runtime = runtime or JudgeRuntime()
    backoff = backoff or Backoff()
    judge = _llm_chain(config, runtime, transport or build_transport(config), backoff)
    if not fallbacks:
        return judge
    return FallbackJudge([judge, *(_llm_chain(fallback, runtime, build_transport(fallback), backoff)
                                   for fallback in fallbacks)])


def layers(judge: object) -> list[object]:
    """The chain as built, outermost first, down to the transport (through the first
    candidate of a fallback chain and the first member of a panel)."""
    chain = [judge]
    while True:
        node = chain[-1]
        found = next((getattr(node, name) for name in _NEXT if hasattr(node, name)), None)
        if found is None:
            found = next(iter(getattr(node, "candidates", getattr(node, "members", ()))), None)
        if found is None:
            return chain
        chain.append(found)


def _llm_chain(config: JudgeConfig, runtime: JudgeRuntime, transport: Transport,
               backoff: Backoff) -> JudgeLink:
    rows = CallRows(config.name, config.model, transport.name)
    sender: Sender = LedgerSender(TransportSender(transport), rows, config.prices)
    limiter = runtime.limiter(config)
    if limiter is not None:
        sender = RateLimitedSender(sender, limiter, runtime.wait_log(config.name),
                                   config.limits.fallback_after_wait_s)
    breaker = runtime.breaker(config)
    sender = InFlightLimit(BreakerGate(sender, breaker), config.limits.max_in_flight)
    sender = Retrying(sender, config, breaker, backoff,
                      waits_for_open_circuit=lambda: runtime.wait_for_open_circuit)
    llm = LLMJudge(config, transport, sender)
    judge: JudgeLink = llm
    if runtime.cache is not None and config.cache.enabled and is_deterministic(llm.params):
        judge = CachedJudge(llm, llm.identity, runtime.cache, rows, config.cache.ttl_s)
    return RequireKey(judge, config)


def _unbudgeted(config: JudgeConfig, judges_dir: Path | None,
                runtime: JudgeRuntime | None) -> JudgeClient:
    kind = judge_kind(config.kind)
    judge = kind.build(config, JudgeContext(judges_dir, runtime))
    if config.samples == 1 and not config.samples_by_rubric or kind.repeats_itself:
        return judge
    if kind.deterministic:
        raise ConfigError(f"judge '{config.name}': a {config.kind} judge is deterministic; "
                          "repeating it (samples) would only repeat the same verdict")
    return PanelJudge(config.name, config.config_hash, [judge], config.aggregate,
                      config.samples_for)


def build_panel(config: JudgeConfig, context: JudgeContext) -> JudgeClient:
    if not config.panel:
        raise ConfigError(f"judge '{config.name}': kind 'panel' needs a 'panel' list of judges")
    repeated = config.samples != 1 or bool(config.samples_by_rubric)
    members = [_member(config.name, name, context, repeated) for name in config.panel]
    samples = [config.samples, config.samples_by_rubric]
    return PanelJudge(config.name, panel_hash(config.aggregate, samples, members), members,
                      config.aggregate, config.samples_for)


def build_litellm(config: JudgeConfig, context: JudgeContext) -> JudgeClient:
    fallbacks = []
    for name in config.fallbacks:
        fallback = load_judge_config(name, context.judges_dir)
        if not judge_kind(fallback.kind).calls_model or fallback.name == config.name:
            raise ConfigError(f"judge '{config.name}': fallback '{name}' must be another "
                              "LLM judge (kind 'litellm')")
        fallbacks.append(fallback)
    return build_llm_judge(config, context.runtime, fallbacks=fallbacks)


def _member(panel: str, name: str, context: JudgeContext, repeated: bool) -> JudgeClient:
    config = load_judge_config(name, context.judges_dir)
    kind = judge_kind(config.kind)
    if kind.repeats_itself or config.samples != 1 or config.samples_by_rubric:
        raise ConfigError(f"judge '{panel}': panel member '{name}' must be a single judge; "
                          "set samples on the panel instead")
    if repeated and kind.deterministic:
        raise ConfigError(f"judge '{panel}': the {config.kind} member '{name}' is deterministic; "
                          "a panel that samples more than once needs LLM members")
    return kind.build(config, context)


def build_offline(config: JudgeConfig, _: JudgeContext) -> JudgeClient:
    return OfflineJudge(config)
