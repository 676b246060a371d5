"""Panels and repeat judging: several judges and/or k samples each, made into one verdict.

Every member judges every trace `samples` times (per rubric: `samples_by_rubric`), all at once.
Only scored samples vote; the others are kept, like every sample, in the verdict's raw_reply.
- `majority`: the label most samples chose; a tie goes to the tied label scoring lowest (the
  strict reading: a panel split on "is this a hallucination" does not pass it).
- `mean`: the mean of the samples' scores is the score, and the label is the rubric's label
  whose score is nearest to it (a tie again goes to the lower score).
Stability is the share of voting samples that chose the final label (1.0 = unanimous; None
when a rubric was judged once), so the report can show how often repeated verdicts disagree.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from statistics import fmean

from evaluator.core.records import Status, Trace, canonical_json, sha256_hex
from evaluator.judges.base import JudgeClient, JudgeVerdict
from evaluator.judges.ledger import totals
from evaluator.rubrics import RenderedPrompt, Rubric

MAX_REASON_CHARS = 1_000


def panel_hash(aggregate: str, samples: object, members: Sequence[JudgeClient]) -> str:
    identity = {"kind": "panel", "aggregate": aggregate, "samples": samples,
                "members": [member.config_hash for member in members]}
    return sha256_hex(canonical_json(identity))[:16]


class PanelJudge:
    """A JudgeClient over member JudgeClients; `samples_for(criterion)` gives k."""

    def __init__(self, name: str, config_hash: str, members: Sequence[JudgeClient],
                 aggregate: str, samples_for: Callable[[str], int]):
        self.name = name
        self.config_hash = config_hash
        self.members = tuple(members)
        self.aggregate = aggregate
        self._samples_for = samples_for

    async def judge(self, rubric: Rubric, trace: Trace, prompt: RenderedPrompt) -> JudgeVerdict:
        k = self._samples_for(rubric.criterion)
        if k == 1 and len(self.members) == 1:  # judged once: the member's verdict as it is
            return await self.members[0].judge(rubric, trace, prompt)
        slots = [(member, sample) for member in self.members for sample in range(k)]
        results = await asyncio.gather(
            *(self._sample(member, sample, k, rubric, trace, prompt) for member, sample in slots),
            return_exceptions=True)
        verdicts = [result if isinstance(result, JudgeVerdict) else
                    JudgeVerdict(status="error", reason=f"judge {member.name} raised {result!r}")
                    for (member, _), result in zip(slots, results, strict=True)]
        return self._combined(rubric, [(m.name, s) for m, s in slots], verdicts)

    @staticmethod
    async def _sample(member: JudgeClient, sample: int, k: int, rubric: Rubric, trace: Trace,
                      prompt: RenderedPrompt) -> JudgeVerdict:
        if k == 1:
            return await member.judge(rubric, trace, prompt)
        return await member.judge(rubric, trace, prompt, sample=sample)  # type: ignore[call-arg]

    def _combined(self, rubric: Rubric, who: list[tuple[str, int]],
                  verdicts: list[JudgeVerdict]) -> JudgeVerdict:
        calls = [call for verdict in verdicts for call in verdict.calls]
        summed = totals(calls)
        common = JudgeVerdict(  # status and verdict fields are set below
            status="error",
            raw_reply=json.dumps([_sample_record(name, sample, verdict)
                                  for (name, sample), verdict in zip(who, verdicts, strict=True)],
                                 ensure_ascii=False),
            usage=replace(summed.usage,  # the samples are judged at once: the longest is the wait
                          latency_ms=max((v.usage.latency_ms or 0.0 for v in verdicts), default=None)),
            attempts=sum(v.attempts for v in verdicts), calls=calls,
            cached=all(v.cached for v in verdicts),
        )
        voting = [(v.label, v) for v in verdicts
                  if v.status == "scored" and v.label is not None and v.label in rubric.labels]
        if not voting:
            failures = "; ".join(f"{name}#{sample}: {v.status}: {v.reason}"
                                 for (name, sample), v in zip(who, verdicts, strict=True))
            status: Status = "error" if all(v.status == "error" for v in verdicts) else "unscored"
            return replace(common, status=status, reason=_short(
                f"no usable verdict from the {len(verdicts)} samples ({failures})"))
        counts = Counter(voted for voted, _ in voting)
        if self.aggregate == "mean":
            score = fmean(rubric.score_for(voted) if v.score is None else v.score for voted, v in voting)
            label = min(rubric.labels, key=lambda name: (abs(rubric.labels[name] - score),
                                                         rubric.labels[name]))
        else:
            top = max(counts.values())
            label = min((name for name, n in counts.items() if n == top),
                        key=lambda name: (rubric.labels[name], name))
            score = rubric.score_for(label)
        agreeing = [v for voted, v in voting if voted == label]
        tally = ", ".join(f"{name} {n}" for name, n in counts.most_common())
        summary = (f"{self.aggregate} of {len(voting)} usable samples out of {len(verdicts)}: "
                   f"{tally}.")
        chosen = agreeing[0] if agreeing else voting[0][1]
        return replace(common, status="scored", label=label, score=score,
                       reasoning=f"{summary}\n{chosen.reasoning or ''}".strip(),
                       claims=chosen.claims,
                       stability=len(agreeing) / len(voting) if len(verdicts) > 1 else None)


def _sample_record(name: str, sample: int, verdict: JudgeVerdict) -> dict[str, object]:
    return {"judge": verdict.judge or name, "sample": sample, "status": verdict.status,
            "label": verdict.label, "reason": verdict.reason, "reasoning": verdict.reasoning,
            "raw_reply": verdict.raw_reply}


def _short(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "..."
