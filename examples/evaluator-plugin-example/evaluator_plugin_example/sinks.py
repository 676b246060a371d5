"""An alert sink: each notification appended to a Markdown file as one bullet.

alerts.yaml: `sinks: [{kind: markdown_file, path: alerts.md}]`
"""

from __future__ import annotations

from pathlib import Path

from evaluator.monitoring.alerts.sinks import Notification


class MarkdownFileSink:
    def __init__(self, path: str):
        self.path = Path(path)

    def send(self, notification: Notification) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            out.write(f"- **{notification.kind}** {notification.text}\n")
