"""Usage charts as inline SVG, rendered on the server: no chart library, nothing to download,
readable without JavaScript, and each bar has a <title> tooltip. No I/O."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 64, 8, 12, 28


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    css: str  # a class of console.css that colours the bars
    values: Sequence[int]


def _nice_max(value: int) -> int:
    if value <= 0:
        return 1
    step = 1
    while step * 10 <= value:
        step *= 10
    for m in (1, 2, 5, 10):
        if m * step >= value:
            return m * step
    return 10 * step


def stacked_bars(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: Callable[[int], str] = str,
) -> Markup:
    """One bar per label, the series stacked; `fmt` formats axis and tooltip values."""
    format_value = fmt
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    top = _nice_max(max(totals, default=0))
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    n = max(len(labels), 1)
    slot = plot_w / n
    bar_w = max(slot * 0.7, 1.0)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">']
    # Whole-number axes with a maximum of 1 get no half-way label (it would read "0").
    for frac in (0, 0.5, 1) if top >= 2 else (0, 1):
        y = PAD_TOP + plot_h * (1 - frac)
        parts.append(
            f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        value = escape(format_value(int(top * frac)))
        parts.append(
            f'<text class="axis" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>'
        )
    every = max(1, n // 8)
    for i, label in enumerate(labels):
        x = PAD_LEFT + i * slot + (slot - bar_w) / 2
        y_base = float(PAD_TOP + plot_h)
        tip = [f"{label}"] + [f"{s.label}: {format_value(s.values[i])}" for s in series]
        parts.append(f"<g><title>{escape(chr(10).join(tip))}</title>")
        for s in series:
            h = plot_h * s.values[i] / top
            if h <= 0:
                continue
            y_base -= h
            parts.append(
                f'<rect class="{escape(s.css)}" x="{x:.1f}" y="{y_base:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}"/>'
            )
        # An invisible full-height target so the tooltip works on empty days too.
        parts.append(
            f'<rect class="hit" x="{PAD_LEFT + i * slot:.1f}" y="{PAD_TOP}" '
            f'width="{slot:.1f}" height="{plot_h}"/>'
        )
        parts.append("</g>")
        if i % every == 0:
            cx = PAD_LEFT + i * slot + slot / 2
            parts.append(
                f'<text class="axis" x="{cx:.1f}" y="{HEIGHT - 8}" '
                f'text-anchor="middle">{escape(label[5:])}</text>'
            )
    parts.append("</svg>")
    # Every piece of text above went through escape(); the rest is numbers we formatted.
    return Markup("".join(parts))  # noqa: S704
