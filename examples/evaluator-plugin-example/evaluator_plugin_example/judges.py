"""A judge kind: `keyword` picks the rubric's lowest-scored label when the output holds any
of `params.fail_words`, else its highest. Free and instant, for smoke tests of a pipeline."""

from __future__ import annotations

from evaluator.core.records import Trace
from evaluator.core.usage import Usage
from evaluator.judges.base import JudgeVerdict
from evaluator.judges.config import JudgeConfig
from evaluator.judges.kinds import JudgeContext
from evaluator.rubrics import RenderedPrompt, Rubric


class KeywordJudge:
    def __init__(self, config: JudgeConfig):
        self.name = config.name
        self.config_hash = config.config_hash
        self.fail_words = [str(word).lower() for word in config.params.get("fail_words", [])]

    async def judge(self, rubric: Rubric, trace: Trace, prompt: RenderedPrompt) -> JudgeVerdict:
        found = [word for word in self.fail_words if word in trace.output.lower()]
        labels = sorted(rubric.labels, key=rubric.labels.__getitem__)
        label = labels[0] if found else labels[-1]
        reasoning = f"found {found[0]!r}" if found else "none of the fail words found"
        return JudgeVerdict(status="scored", label=label, score=rubric.labels[label],
                            reasoning=reasoning, usage=Usage(cost_usd=0.0))


def build_keyword_judge(config: JudgeConfig, context: JudgeContext) -> KeywordJudge:
    return KeywordJudge(config)
