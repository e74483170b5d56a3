"""Line charts as inline SVG, drawn on the server: the admin dashboard needs no JavaScript and no CDN.

``line_chart`` takes one value per time bin for each series (None where there is nothing to
plot, which breaks the line) and returns SVG markup with a ``viewBox``, so the browser scales
it to the page's width. Axis text uses ``currentColor`` and grid lines the admin's CSS
variables, so the charts follow the admin's light and dark themes. Every bin has an invisible
hover target whose ``<title>`` lists the values, which browsers show as a tooltip.

Every piece of text (series names come from deployed code) is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640.0, 240.0
LEFT, RIGHT, TOP, BOTTOM = 50.0, 16.0, 12.0, 32.0
FONT = 13

# Okabe and Ito's palette, which colour-blind readers can tell apart (yellow left out: too pale on white).
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#8c6d31", "#4b0092")
GREY = "#8a8a8a"


@dataclass(frozen=True)
class Series:
    """One line: its name (legend, tooltips), one value per bin (None = no data) and its colour."""

    name: str
    values: Sequence[float | None]
    color: str


@dataclass(frozen=True)
class Scale:
    """Maps data values to y coordinates, with the tick values to label."""

    low: float
    high: float
    log: bool
    ticks: tuple[float, ...]

    def y(self, value: float) -> float:
        if self.log:
            value = max(value, self.low)
            position = (math.log10(value) - math.log10(self.low)) / (math.log10(self.high) - math.log10(self.low))
        else:
            position = (value - self.low) / (self.high - self.low)
        return TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - position)


def linear_scale(highest: float, minimum_top: float = 1.0) -> Scale:
    """0 to a round number at or above ``highest``, with 3 to 6 ticks at steps of 1, 2 or 5 x 10^k."""
    top = max(highest, minimum_top)
    raw_step = top / 4
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw_step)
    high = step * math.ceil(top / step - 1e-9)
    count = round(high / step)
    return Scale(0.0, high, False, tuple(step * i for i in range(count + 1)))


def log_scale(lowest: float, highest: float) -> Scale:
    """Whole decades around the data (latencies span several), ticks at each power of ten."""
    low_exp = math.floor(math.log10(max(lowest, 0.01)))
    high_exp = math.ceil(math.log10(max(highest, lowest * 10, 0.1)))
    if high_exp <= low_exp:
        high_exp = low_exp + 1
    return Scale(10.0 ** low_exp, 10.0 ** high_exp, True, tuple(10.0 ** e for e in range(low_exp, high_exp + 1)))


def compact(value: float) -> str:
    """Tick labels short enough for a phone: 0.01, 2.5, 40, 1k, 12k, 1.5M."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def x_of(index: int, count: int) -> float:
    span = WIDTH - LEFT - RIGHT
    return LEFT + (span * index / (count - 1) if count > 1 else span / 2)


def line_chart(
    *,
    label: str,
    bins: Sequence[str],
    ticks: Sequence[tuple[int, str]],
    series: Sequence[Series],
    scale: Scale,
    format_value: Callable[[float], str],
    unit: str = "",
) -> SafeString:
    """An SVG line chart. ``bins`` names each bin (tooltips); ``ticks`` are (bin index, label) on the x axis.

    ``format_value`` and ``unit`` write the values in tooltips; the y axis uses ``compact``.
    """
    count = len(bins)
    parts = [
        f'<svg class="sb-chart" viewBox="0 0 {WIDTH:g} {HEIGHT:g}" width="100%" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet" font-size="{FONT}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
    ]
    parts.extend(_y_axis(scale))
    parts.extend(_x_axis(bins, ticks))
    for item in series:
        parts.extend(_line(item, scale, count))
    parts.extend(_hover_targets(bins, series, format_value, unit))
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 -- every text above went through escape()


def _y_axis(scale: Scale) -> list[str]:
    """Grid lines with compact labels; the unit is in the chart's heading, so labels fit a phone."""
    parts = []
    for tick in scale.ticks:
        y = scale.y(tick)
        parts.append(f'<line class="sb-grid" x1="{LEFT:g}" x2="{WIDTH - RIGHT:g}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="var(--hairline-color, #ccc)" stroke-width="1"/>')
        text = escape(compact(tick))
        parts.append(f'<text x="{LEFT - 6:g}" y="{y + FONT / 3:.1f}" text-anchor="end" fill="currentColor">'
                     f"{text}</text>")
    return parts


def _x_axis(bins: Sequence[str], ticks: Sequence[tuple[int, str]]) -> list[str]:
    count = len(bins)
    bottom = HEIGHT - BOTTOM
    parts = [f'<line x1="{LEFT:g}" x2="{WIDTH - RIGHT:g}" y1="{bottom:g}" y2="{bottom:g}" '
             'stroke="currentColor" stroke-width="1"/>']
    for index, text in ticks:
        if not 0 <= index < count:
            continue
        x = x_of(index, count)
        anchor = "start" if index == 0 else "end" if index == count - 1 else "middle"
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom:g}" y2="{bottom + 4:g}" stroke="currentColor"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + FONT + 5:g}" text-anchor="{anchor}" fill="currentColor">'
                     f"{escape(text)}</text>")
    return parts


def _line(item: Series, scale: Scale, count: int) -> list[str]:
    """The series as one path; a None value lifts the pen. Points with no neighbours get a dot."""
    commands: list[str] = []
    dots: list[str] = []
    values = list(item.values)
    for index, value in enumerate(values):
        if value is None:
            continue
        x, y = x_of(index, count), scale.y(value)
        joined = index > 0 and values[index - 1] is not None
        commands.append(f"{'L' if joined else 'M'}{x:.1f} {y:.1f}")
        alone = not joined and (index + 1 >= len(values) or values[index + 1] is None)
        if alone:
            dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{item.color}"/>')
    name = escape(item.name)
    parts = []
    if commands:
        parts.append(f'<path class="sb-line" d="{" ".join(commands)}" fill="none" stroke="{item.color}" '
                     f'stroke-width="2" stroke-linejoin="round" stroke-linecap="round"><title>{name}</title></path>')
    parts.extend(dots)
    return parts


def _hover_targets(bins: Sequence[str], series: Sequence[Series], format_value: Callable[[float], str],
                   unit: str) -> list[str]:
    """A transparent column per bin whose tooltip lists every series' value there."""
    count = len(bins)
    if count == 0:
        return []
    width = (WIDTH - LEFT - RIGHT) / max(count - 1, 1)
    parts = []
    for index, name in enumerate(bins):
        lines = [name]
        for item in series:
            value = item.values[index] if index < len(item.values) else None
            lines.append(f"{item.name}: {'-' if value is None else format_value(value) + unit}")
        x = max(LEFT, x_of(index, count) - width / 2)
        parts.append(f'<rect x="{x:.1f}" y="{TOP:g}" width="{width:.2f}" height="{HEIGHT - TOP - BOTTOM:g}" '
                     f'fill="transparent"><title>{escape(chr(10).join(lines))}</title></rect>')
    return parts
