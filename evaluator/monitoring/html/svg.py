"""Inline SVG charts, drawn in Python: no JavaScript, no fonts or libraries from a CDN.

Every chart is a string holding one <svg> sized by its viewBox (it scales to its container
and prints sharply). Every piece of text goes through `esc`: labels come from trace data.
Hover titles (<title>) carry the exact numbers.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8C6D1F", "#555555")
"""Okabe-Ito colours: distinguishable with the common colour-vision deficiencies."""

GOOD_TO_BAD = ("#1a9850", "#91cf60", "#fee08b", "#fc8d59", "#d73027")
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'


def nice_ceiling(value: float) -> float:
    """The next 1, 2, 2.5 or 5 x 10^k at or above value (1 for nothing at all)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def score_text(value: float) -> str:
    return f"{value:.2f}"


def label_color(position: float) -> str:
    """0 = best label, 1 = worst, on a green-to-red scale."""
    return GOOD_TO_BAD[min(len(GOOD_TO_BAD) - 1, max(0, round(position * (len(GOOD_TO_BAD) - 1))))]


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{esc(label)}"'
            f' xmlns="http://www.w3.org/2000/svg" {FONT} font-size="12">' + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, anchor: str = "start", css: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"'
            + (f' class="{css}"' if css else "") + f">{esc(text)}</text>")


def empty_chart(message: str, width: int = 560, height: int = 80) -> str:
    return _svg(width, height, [_text(width / 2, height / 2, message, "middle", "muted")], message)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    """One value per x position; None leaves a gap."""
    counts: Sequence[int]
    color: str


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    parts = []
    for s in series:
        parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="12" height="12" rx="2" fill="{s.color}"/>')
        parts.append(_text(x + 16, y + 1, s.name))
        x += 28 + 7 * len(s.name)
    return parts


def _y_axis(left: float, top: float, plot_w: float, plot_h: float, y_max: float,
            fmt: Callable[[float], str]) -> list[str]:
    parts = []
    for k in range(5):
        value = y_max * k / 4
        y = top + plot_h - plot_h * k / 4
        parts.append(f'<line class="gridline" x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(_text(left - 6, y + 4, fmt(value), "end", "axis"))
    return parts


def line_chart(series: Sequence[Series], x_labels: Sequence[str], *, title: str,
               fmt: Callable[[float], str] = pct, y_max: float = 1.0,
               width: int = 560, height: int = 260) -> str:
    """Lines over evenly spaced x positions (time buckets), a dot on every value."""
    if not x_labels or not any(v is not None for s in series for v in s.values):
        return empty_chart("no scored evaluations in this period")
    left, top, right, bottom = 44, 30, 12, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(1, len(x_labels) - 1)

    def xy(i: int, value: float) -> tuple[float, float]:
        x = left + (i * step if len(x_labels) > 1 else plot_w / 2)
        return x, top + plot_h - plot_h * min(value, y_max) / y_max

    body = _legend(series, left, 14) + _y_axis(left, top, plot_w, plot_h, y_max, fmt)
    tick_every = max(1, round(len(x_labels) / 6))
    for i in range(0, len(x_labels), tick_every):
        x, _ = xy(i, 0)
        body.append(_text(x, height - 12, x_labels[i], "middle", "axis"))
    for s in series:
        path, pen_down = [], False
        for i, value in enumerate(s.values):
            if value is None:
                pen_down = False
                continue
            x, y = xy(i, value)
            path.append(f"{'L' if pen_down else 'M'}{x:.1f},{y:.1f}")
            pen_down = True
        if path:
            body.append(f'<path class="series" d="{" ".join(path)}" fill="none" stroke="{s.color}"'
                        ' stroke-width="2" stroke-linejoin="round"/>')
        for i, value in enumerate(s.values):
            if value is not None:
                x, y = xy(i, value)
                body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{s.color}"><title>'
                            f"{esc(s.name)} {esc(x_labels[i])}: {esc(fmt(value))} (n={s.counts[i]})"
                            "</title></circle>")
    return _svg(width, height, body, title)


@dataclass(frozen=True)
class Segment:
    label: str
    share: float
    count: int
    color: str


def _caption_lines(segments: Sequence[Segment], width: float) -> list[list[tuple[float, Segment, str]]]:
    """Legend entries (x offset, segment, text) wrapped to the bar's width."""
    lines: list[list[tuple[float, Segment, str]]] = [[]]
    x = 0.0
    for seg in segments:
        caption = f"{seg.label} {seg.share:.0%}"
        needed = 12 + 6.2 * len(caption)
        if lines[-1] and x + needed > width:
            lines.append([])
            x = 0.0
        lines[-1].append((x, seg, caption))
        x += needed + 10
    return lines


def stacked_bars(rows: Sequence[tuple[str, Sequence[Segment]]], *, title: str,
                 width: int = 560) -> str:
    """One horizontal 100% bar per row, a segment per label, every share spelled out below."""
    if not rows:
        return empty_chart("no scored evaluations in this period")
    left, bar_h, line_h = 100, 22, 15
    plot_w = width - left - 12
    body = []
    y = 8.0
    for name, segments in rows:
        body.append(_text(left - 8, y + bar_h / 2 + 4, name, "end"))
        x = float(left)
        for seg in segments:
            w = plot_w * seg.share
            if w > 0:
                body.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bar_h}"'
                            f' fill="{seg.color}"><title>{esc(name)} {esc(seg.label)}: {seg.share:.1%}'
                            f" (n={seg.count})</title></rect>")
                x += w
        y += bar_h + 4
        for line in _caption_lines(segments, plot_w):
            for offset, seg, caption in line:
                body.append(f'<rect x="{left + offset:.1f}" y="{y + 3:.1f}" width="9" height="9"'
                            f' fill="{seg.color}"/>')
                body.append(_text(left + offset + 12, y + 11, caption, css="axis"))
            y += line_h
        y += 10
    return _svg(width, round(y), body, title)


def grouped_bars(groups: Sequence[str], series: Sequence[Series], *, title: str,
                 fmt: Callable[[float], str] = pct, y_max: float = 1.0,
                 width: int = 560, height: int = 250) -> str:
    """Vertical bars: one group per x label, one bar per series inside it."""
    if not groups or not series:
        return empty_chart("no data in this period")
    left, top, right, bottom = 44, 30, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    group_w = plot_w / len(groups)
    bar_w = min(26.0, group_w * 0.8 / len(series))
    body = _legend(series, left, 14) + _y_axis(left, top, plot_w, plot_h, y_max, fmt)
    for g, group in enumerate(groups):
        x0 = left + g * group_w + (group_w - bar_w * len(series)) / 2
        body.append(_text(left + (g + 0.5) * group_w, height - 22, group[:24], "middle", "axis"))
        for s_index, s in enumerate(series):
            value = s.values[g]
            if value is None:
                continue
            h = plot_h * min(value, y_max) / y_max
            x = x0 + s_index * bar_w
            body.append(f'<rect class="bar" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}"'
                        f' height="{max(h, 0.5):.1f}" fill="{s.color}"><title>{esc(group)}, {esc(s.name)}:'
                        f" {esc(fmt(value))} (n={s.counts[g]})</title></rect>")
    return _svg(width, height, body, title)


def cost_bars(days: Sequence[tuple[str, float, int, int]], *, title: str,
              width: int = 560, height: int = 230) -> str:
    """Judge cost per day: (day, known cost, calls, calls of unknown cost). A day with unknown
    cost is hatched and says so: unknown is never drawn as free."""
    if not days:
        return empty_chart("no judge calls in this period")
    left, top, right, bottom = 56, 16, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    y_max = nice_ceiling(max(cost for _, cost, _, _ in days) * 1.1)
    decimals = 0 if y_max >= 40 else 2 if y_max >= 0.04 else 4
    body = [
        '<defs><pattern id="unknown-hatch" width="6" height="6" patternUnits="userSpaceOnUse"'
        ' patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#999" stroke-width="3"/></pattern></defs>',
        *_y_axis(left, top, plot_w, plot_h, y_max, lambda v: f"${v:.{decimals}f}"),
    ]
    slot = plot_w / len(days)
    bar_w = min(48.0, slot * 0.7)
    for i, (day, cost, calls, unknown) in enumerate(days):
        x = left + i * slot + (slot - bar_w) / 2
        h = plot_h * cost / y_max
        body.append(f'<rect class="bar" x="{x:.1f}" y="{top + plot_h - max(h, 1):.1f}" width="{bar_w:.1f}"'
                    f' height="{max(h, 1):.1f}" fill="{PALETTE[0]}"><title>{esc(day)}: {cost:.4f} USD over'
                    f" {calls} calls{f', {unknown} of unknown cost' if unknown else ''}</title></rect>")
        caption = f"${cost:.2f}" + (" + unknown" if unknown else "")
        if unknown:
            body.append(f'<rect class="bar unknown" x="{x:.1f}" y="{top}" width="{bar_w:.1f}"'
                        f' height="{plot_h - max(h, 1):.1f}" fill="url(#unknown-hatch)" stroke="#999">'
                        f"<title>{esc(day)}: {unknown} calls of unknown cost</title></rect>")
        body.append(_text(x + bar_w / 2, top + plot_h - max(h, 1) - 4 if not unknown else top + 12,
                          caption, "middle", "axis"))
        body.append(_text(x + bar_w / 2, height - 22, day, "middle", "axis"))
    return _svg(width, height, body, title)


def confusion_heatmap(labels: Sequence[str], counts: Sequence[Sequence[int]], *, title: str,
                      cell: int = 46) -> str:
    """Rows: human labels, columns: judge labels; shade = share of the human row."""
    k = len(labels)
    left, top = 130, 92
    width, height = left + k * cell + 12, top + k * cell + 12
    body = [_text(left + k * cell / 2, 14, "judge label", "middle", "axis"),
            _text(12, top - 8, "human label", css="axis")]
    for j, label in enumerate(labels):
        x = left + j * cell + cell / 2
        body.append(f'<text x="{x:.1f}" y="{top - 8}" transform="rotate(-35 {x:.1f} {top - 8})"'
                    f' class="axis">{esc(label)}</text>')
    for i, row in enumerate(counts):
        y = top + i * cell
        total = sum(row) or 1
        body.append(_text(left - 8, y + cell / 2 + 4, labels[i], "end"))
        for j, count in enumerate(row):
            share = count / total
            fill = f"rgba(0,114,178,{0.08 + 0.92 * share:.2f})" if count else "#f4f4f4"
            body.append(f'<rect class="cell" x="{left + j * cell}" y="{y}" width="{cell - 2}"'
                        f' height="{cell - 2}" fill="{fill}"><title>human {esc(labels[i])}, judge'
                        f" {esc(labels[j])}: {count}</title></rect>")
            body.append(_text(left + j * cell + cell / 2 - 1, y + cell / 2 + 4, str(count), "middle",
                              "on-dark" if share > 0.55 else ""))
    return _svg(width, height, body, title)
