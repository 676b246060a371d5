"""The producer side of the queue: send sampled traces to the workers in batch messages."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dramatiq

from evaluator.core.work import WorkItem
from evaluator.queue.messages import ACTOR_NAME, QUEUE_NAME, encode_items, work_message


def enqueue(broker: dramatiq.Broker, items: Sequence[WorkItem], judge: str,
            rubrics: Sequence[str] = (), run_id: str | None = None, batch_size: int = 20,
            before_each: Callable[[], None] | None = None) -> int:
    """Send sampled traces to the workers in batch messages; returns the number of messages.
    `before_each` runs before every message (back-pressure: it may wait, or raise)."""
    sent = 0
    for start in range(0, len(items), batch_size):
        if before_each is not None:
            before_each()
        payload = work_message(encode_items(items[start:start + batch_size]), judge, rubrics, run_id)
        broker.enqueue(dramatiq.Message(queue_name=QUEUE_NAME, actor_name=ACTOR_NAME,
                                        args=(payload,), kwargs={}, options={}))
        sent += 1
    return sent
