"""PII masking throughput on one core: realistic ~2 KB traces with a few PII items, and the same
traces without PII (the fast path every clean trace takes).

Baselines, measured in the same run over the same traces and fields: a bare `re.sub` e-mail
pass (the least any masker must do) and libphonenumber's PhoneNumberMatcher alone over every
field (what "just use phonenumbers" would cost without the digit-run prefilter).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from functools import partial

import phonenumbers

from evaluator.core.records import Message, Trace
from evaluator.pii import PiiMasker

GOAL_PII_HEAVY = 1_000
"""1 ms a trace at worst: a quarter of the ~4 ms CPU of one judge call (DESIGN.md), and a trace
gets one call per rubric."""
GOAL_PII_FREE = 5_000
"""0.2 ms: most traces hold no PII and should barely notice the masker."""

_SIMPLE_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")

SYSTEM = (
    "You are the support assistant for Northwind Outfitters. Answer from the retrieved documents "
    "only; if they do not contain the answer, say so and offer to open a ticket. Keep answers under "
    "150 words, quote order numbers exactly, and never promise refunds above the policy limit."
)
DOCS = [
    ("Returns policy (rev. {year}-03-01): items can be returned within 30 days of delivery if unused. "
    "Refunds are issued to the original payment method within 5-7 business days after inspection. "
    "Orders above $250.00 need a return authorization; shipping labels cost $7.95 unless the item "
    "arrived damaged. Version 2.4.1 of the returns portal supports exchanges for a different size."),
    ("Shipping: standard delivery takes 3-5 business days, express 1-2. Order #{order} shipped on "
    "{year}-05-{day:02d} from the Reno warehouse, tracking 1Z999AA1{order}. Delivery windows are "
    "8:00-20:00 local time; the courier makes 3 attempts before returning the parcel to the depot."),
    ("Product sheet: Ridgeline Shell Jacket, SKU RS-{day:02d}40, 3-layer waterproof membrane rated "
    "20,000 mm, seams taped, weight 412 g (size M). Care: machine wash at 30 C, tumble dry low to "
    "reactivate the DWR finish, do not iron. Warranty: 2 years against manufacturing defects; seam "
    "failures within the warranty period are repaired or replaced free of charge, including the "
    "return shipping. Sizes XS-XXL; see the size chart (chest 86-122 cm)."),
]
QUESTION = "Hi, my order #{order} arrived with a torn seam. {pii_q}Can I return it and get a refund?"
PII_QUESTION = (
    "I'm {name}, account {email}, you can call me on {phone}. I paid with card {card} and my "
    "IBAN for refunds is {iban}. "
)
ANSWER = (
    "I'm sorry the jacket from order #{order} arrived damaged. Because it arrived damaged you will "
    "not pay for the return label. {pii_a}Open the returns portal, choose 'Damaged item', and print "
    "the prepaid label; once the depot inspects it (usually 2 days) the refund of ${price}.00 goes "
    "back to your original payment method within 5-7 business days."
)
PII_ANSWER = "I have noted {email} and {phone} as your contact details for this case. "


def _traces(count: int, with_pii: bool, seed: int = 7) -> list[Trace]:
    rng = random.Random(seed)
    traces = []
    for index in range(count):
        order, year, day = rng.randint(10_000_000, 99_999_999), rng.randint(2022, 2025), rng.randint(1, 28)
        values = {
            "name": rng.choice(["Jane Doe", "Carlos Ruiz", "Priya Shah"]),
            "email": f"customer{index}@example.com",
            "phone": f"(415) 555-{rng.randint(100, 199):04d}",
            "card": "4111 1111 1111 1111",
            "iban": "DE89 3704 0044 0532 0130 00",
        }
        pii_q = PII_QUESTION.format(**values) if with_pii else ""
        pii_a = PII_ANSWER.format(**values) if with_pii else ""
        traces.append(Trace(
            trace_id=f"bench-{index}",
            system=SYSTEM,
            input=[Message(role="user", content=QUESTION.format(order=order, pii_q=pii_q))],
            context=[doc.format(order=order, year=year, day=day) for doc in DOCS],
            output=ANSWER.format(order=order, pii_a=pii_a, price=rng.randint(40, 240)),
            user_id=values["email"] if with_pii else f"u-{index}",
            metadata={"client_ip": "203.0.113.7" if with_pii else "n/a", "channel": "web"},
        ))
    return traces


def _texts(trace: Trace) -> list[str]:
    fields = [trace.system or "", *(m.content for m in trace.input), *trace.context, trace.output]
    return [*fields, trace.user_id or "", *(v for v in trace.metadata.values() if isinstance(v, str))]


def _best_cpu_seconds(workloads: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Best CPU time of each workload over `rounds`, alternating them within each round so
    that load from other processes on this shared machine hits all of them alike."""
    best = dict.fromkeys(workloads, float("inf"))
    for _ in range(rounds):
        for name, work in workloads.items():
            started = time.process_time()
            work()
            best[name] = min(best[name], time.process_time() - started)
    return best


def _mask_all(masker: PiiMasker, traces: list[Trace]) -> None:
    for trace in traces:
        masker.mask_trace(trace)


def _email_regex_only(traces: list[Trace]) -> None:
    for trace in traces:
        for text in _texts(trace):
            _SIMPLE_EMAIL.sub("<EMAIL>", text)


def _phonenumbers_only(traces: list[Trace]) -> None:
    for trace in traces:
        for text in _texts(trace):
            list(phonenumbers.PhoneNumberMatcher(text, "US"))


def _row(metric, value, unit, baseline=None, baseline_value=None, goal=None):
    ratio = value / baseline_value if baseline_value else None
    return {"benchmark": "pii", "metric": metric, "value": value, "unit": unit, "baseline": baseline,
            "baseline_value": baseline_value, "ratio": ratio, "goal": goal}


def run(quick: bool = False) -> list[dict]:
    count, rounds = (100, 3) if quick else (400, 7)
    masker = PiiMasker()
    rows = []
    for label, with_pii in (("PII-heavy", True), ("PII-free", False)):
        traces = _traces(count, with_pii)
        chars = sum(len(text) for trace in traces for text in _texts(trace))
        seconds = _best_cpu_seconds({
            "ours": partial(_mask_all, masker, traces),
            "email": partial(_email_regex_only, traces),
            "phones": partial(_phonenumbers_only, traces),
        }, rounds)
        detail = f"{label}, {chars / count / 1000:.1f} KB/trace"
        goal = GOAL_PII_HEAVY if with_pii else GOAL_PII_FREE
        rows.append(_row(f"mask_trace traces/s ({detail})", count / seconds["ours"], "traces/s",
                         "bare re.sub e-mail pass", count / seconds["email"], f">= {goal:,}"))
        rows.append(_row(f"mask_trace traces/s ({detail})", count / seconds["ours"], "traces/s",
                         "PhoneNumberMatcher alone", count / seconds["phones"]))
        rows.append(_row(f"mask_trace chars/s ({label})", chars / seconds["ours"], "chars/s"))
    return rows


if __name__ == "__main__":
    for row in run():
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] else "-"
        baseline = f"{row['baseline']} {row['baseline_value']:,.0f}" if row["baseline"] else "-"
        print(f"{row['metric']:<55} {row['value']:>14,.0f} {row['unit']:<9} vs {baseline:<40} {ratio}")
