"""Inline SVG charts written as strings: grouped bars with error bars, scatter plots, line charts.

No plotting library and nothing external: the report must open offline from one file. Every mark
carries an SVG ``<title>`` (the browser shows it as a tooltip); bars are ``<rect class="bar">`` so
tests can count them. Colours are the Okabe-Ito palette (distinguishable with the common forms of
colour blindness); fills are attributes, not CSS, so a chart keeps its colours when copied out.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

# Okabe & Ito (2008), without yellow (too light on white) until the other seven are used.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
BASELINE_COLOR = "#8C8C8C"  # the baseline curation is the grey reference every other bar is read against
CHAR_W = 6.6  # approximate width of one 12px character, for laying out labels


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def colors_for(labels: list[str], baseline: str | None = None) -> dict[str, str]:
    out, i = {}, 0
    for label in labels:
        if label == baseline:
            out[label] = BASELINE_COLOR
        else:
            out[label] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5, 5 x 10^k steps)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    ticks, t = [], start
    while t < hi + step * 0.999:
        ticks.append(round(t, 10))
        t += step
    return ticks


def fmt_tick(value: float, ticks: list[float]) -> str:
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    digits = max(0, min(4, -math.floor(math.log10(step) + 1e-9) + (1 if round(step / 10 ** math.floor(
        math.log10(step)), 6) == 2.5 else 0)))
    return f"{value:.{digits}f}"


@dataclass(frozen=True)
class Mark:
    """One value with an optional error half-width and a tooltip."""

    mean: float
    err: float | None
    tooltip: str


@dataclass
class _Frame:
    """Pixel mapping of a plot area."""

    left: float
    top: float
    width: float
    height: float
    y_lo: float
    y_hi: float

    def y(self, v: float) -> float:
        return self.top + self.height * (1 - (v - self.y_lo) / (self.y_hi - self.y_lo))


def _legend(items: list[tuple[str, str, str]], width: float, x0: float = 8, y0: float = 8) -> tuple[str, float]:
    """Legend rows (label, colour, shape "square"|"circle"|"ring"); returns (svg, height used)."""
    parts, x, y = [], x0, y0
    for label, color, shape in items:
        w = 18 + CHAR_W * len(label) + 16
        if x + w > width and x > x0:
            x, y = x0, y + 18
        if shape == "square":
            parts.append(f'<rect x="{x:.1f}" y="{y + 1:.1f}" width="11" height="11" rx="2" fill="{color}"/>')
        elif shape == "ring":
            parts.append(f'<circle cx="{x + 5.5:.1f}" cy="{y + 6.5:.1f}" r="4.5" fill="#ffffff" stroke="#111111" '
                         f'stroke-width="1.6"/>')
        else:
            parts.append(f'<circle cx="{x + 5.5:.1f}" cy="{y + 6.5:.1f}" r="4" fill="{color}"/>')
        parts.append(f'<text x="{x + 16:.1f}" y="{y + 11:.1f}" class="legend">{esc(label)}</text>')
        x += w
    return "".join(parts), (y - y0) + 22 if items else 0


def _y_axis(frame: _Frame, ticks: list[float], label: str, ref: float | None) -> str:
    parts = []
    for t in ticks:
        if frame.y_lo - 1e-9 <= t <= frame.y_hi + 1e-9:
            y = frame.y(t)
            parts.append(f'<line x1="{frame.left:.1f}" x2="{frame.left + frame.width:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                         f'stroke="#e6e6e6"/>')
            parts.append(f'<text x="{frame.left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
                         f'{fmt_tick(t, ticks)}</text>')
    if ref is not None and frame.y_lo <= ref <= frame.y_hi:
        y = frame.y(ref)
        parts.append(f'<line x1="{frame.left:.1f}" x2="{frame.left + frame.width:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#444444" stroke-dasharray="4 3"><title>{esc(f"reference {ref:g}")}</title></line>')
    cy = frame.top + frame.height / 2
    parts.append(f'<text x="14" y="{cy:.1f}" transform="rotate(-90 14 {cy:.1f})" text-anchor="middle" '
                 f'class="axis-label">{esc(label)}</text>')
    parts.append(f'<line x1="{frame.left:.1f}" x2="{frame.left:.1f}" y1="{frame.top:.1f}" '
                 f'y2="{frame.top + frame.height:.1f}" stroke="#999999"/>')
    return "".join(parts)


def _svg(width: float, height: float, label: str, body: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}" '
            f'role="img" aria-label="{esc(label)}">{body}</svg>')


def _range(values: list[float], ref: float | None, floor_zero: bool) -> tuple[float, float, list[float]]:
    lo, hi = min(values), max(values)
    if ref is not None:
        lo, hi = min(lo, ref), max(hi, ref)
    pad = 0.08 * (hi - lo or abs(hi) or 1.0)
    lo, hi = lo - pad, hi + pad
    if floor_zero and lo < 0 <= min(values):
        lo = 0.0
    ticks = nice_ticks(lo, hi)
    return ticks[0], ticks[-1], ticks


def _error_bar(x: float, frame: _Frame, mean: float, err: float | None, half: float = 4) -> str:
    if not err:
        return ""
    y1, y2 = frame.y(max(frame.y_lo, mean - err)), frame.y(min(frame.y_hi, mean + err))
    return (f'<g class="err" stroke="#222222" stroke-width="1.2"><line x1="{x:.1f}" x2="{x:.1f}" y1="{y1:.1f}" '
            f'y2="{y2:.1f}"/><line x1="{x - half:.1f}" x2="{x + half:.1f}" y1="{y1:.1f}" y2="{y1:.1f}"/>'
            f'<line x1="{x - half:.1f}" x2="{x + half:.1f}" y1="{y2:.1f}" y2="{y2:.1f}"/></g>')


def bar_chart(title: str, groups: list[str], series: list[str], colors: dict[str, str],
              values: dict[tuple[str, str], Mark], y_label: str = "retention", ref: float | None = 1.0,
              group_labels: dict[str, str] | None = None) -> str:
    """Grouped bars: one group per ``groups`` entry, one bar per series present in ``values``.

    The y axis starts just below the lowest error bar, not at 0: retentions differ by a few
    percent, which bars from 0 would hide; the dashed line is ``ref`` (1.0 = nothing lost).
    """
    group_labels = group_labels or {}
    present = [s for s in series if any((g, s) in values for g in groups)]
    width = max(640.0, 70 + len(groups) * max(len(present) * 22 + 26, 118))
    legend, legend_h = _legend([(s, colors[s], "square") for s in present], width)
    lows = [m.mean - (m.err or 0) for m in values.values()] or [0.0]
    highs = [m.mean + (m.err or 0) for m in values.values()] or [1.0]
    y_lo, y_hi, ticks = _range(lows + highs, ref, floor_zero=True)
    frame = _Frame(56, legend_h + 18, width - 66, 220, y_lo, y_hi)
    height = frame.top + frame.height + 52
    parts = [f"<title>{esc(title)}</title>", legend, _y_axis(frame, ticks, y_label, None)]
    gw = frame.width / max(len(groups), 1)
    bw = min(26.0, 0.78 * gw / max(len(present), 1))
    for gi, group in enumerate(groups):
        in_group = [s for s in present if (group, s) in values]
        x0 = frame.left + gi * gw + (gw - bw * len(in_group)) / 2
        if gi:
            parts.append(f'<line x1="{frame.left + gi * gw:.1f}" x2="{frame.left + gi * gw:.1f}" '
                         f'y1="{frame.top:.1f}" y2="{frame.top + frame.height:.1f}" stroke="#f0f0f0"/>')
        for si, s in enumerate(in_group):
            m = values[(group, s)]
            x = x0 + si * bw
            top = frame.y(min(max(m.mean, y_lo), y_hi))
            parts.append(f'<rect class="bar" x="{x + 1:.1f}" y="{top:.1f}" width="{bw - 2:.1f}" '
                         f'height="{frame.top + frame.height - top:.1f}" fill="{colors[s]}">'
                         f'<title>{esc(m.tooltip)}</title></rect>')
            parts.append(_error_bar(x + bw / 2, frame, m.mean, m.err))
        # A label's second line (after "\n") is a muted subtitle, e.g. the metric kind.
        cx = frame.left + (gi + 0.5) * gw
        first, _, second = group_labels.get(group, group).partition("\n")
        sub = f'<tspan x="{cx:.1f}" dy="15" class="sub">{esc(second)}</tspan>' if second else ""
        parts.append(f'<text x="{cx:.1f}" y="{frame.top + frame.height + 18:.1f}" text-anchor="middle" '
                     f'class="group">{esc(first)}{sub}</text>')
    parts.append(_y_axis(frame, [], y_label, ref))  # reference line drawn over the bars
    parts.append(f'<line x1="{frame.left:.1f}" x2="{frame.left + frame.width:.1f}" y1="{frame.top + frame.height:.1f}" '
                 f'y2="{frame.top + frame.height:.1f}" stroke="#999999"/>')
    return _svg(width, height, title, "".join(parts))


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    color: str
    tooltip: str
    selected: bool = False


def scatter(title: str, points: list[Point], x_label: str, y_label: str, legend: list[tuple[str, str, str]],
            width: float = 360, height: float = 300, radius: float = 4.0, ref: float | None = None,
            caption: str = "") -> str:
    """Points (selected ones drawn last, larger, ringed in black so they stand out from the pool)."""
    legend_svg, legend_h = _legend(legend, width)
    xs, ys = [p.x for p in points], [p.y for p in points]
    x_lo, x_hi, x_ticks = _range(xs, None, floor_zero=False)
    y_lo, y_hi, y_ticks = _range(ys, ref, floor_zero=False)
    frame = _Frame(58, legend_h + 14 + (16 if caption else 0), width - 70, height - legend_h - 64 -
                   (16 if caption else 0), y_lo, y_hi)

    def px(v: float) -> float:
        return frame.left + frame.width * (v - x_lo) / (x_hi - x_lo)

    parts = [f"<title>{esc(title)}</title>", legend_svg]
    if caption:
        parts.append(f'<text x="{frame.left:.1f}" y="{frame.top - 6:.1f}" class="caption">{esc(caption)}</text>')
    parts.append(_y_axis(frame, y_ticks, y_label, ref))
    bottom = frame.top + frame.height
    parts.append(f'<line x1="{frame.left:.1f}" x2="{frame.left + frame.width:.1f}" y1="{bottom:.1f}" '
                 f'y2="{bottom:.1f}" stroke="#999999"/>')
    for t in x_ticks:
        parts.append(f'<text x="{px(t):.1f}" y="{bottom + 16:.1f}" text-anchor="middle" class="tick">'
                     f'{fmt_tick(t, x_ticks)}</text>')
    parts.append(f'<text x="{frame.left + frame.width / 2:.1f}" y="{bottom + 36:.1f}" text-anchor="middle" '
                 f'class="axis-label">{esc(x_label)}</text>')
    for p in sorted(points, key=lambda p: p.selected):
        if p.selected:
            parts.append(f'<circle class="point selected" cx="{px(p.x):.1f}" cy="{frame.y(p.y):.1f}" '
                         f'r="{radius * 1.6:.1f}" fill="{p.color}" stroke="#111111" stroke-width="1.6">'
                         f'<title>{esc(p.tooltip)}</title></circle>')
        else:
            parts.append(f'<circle class="point" cx="{px(p.x):.1f}" cy="{frame.y(p.y):.1f}" r="{radius:.1f}" '
                         f'fill="{p.color}" fill-opacity="0.55"><title>{esc(p.tooltip)}</title></circle>')
    return _svg(width, height, title, "".join(parts))


def line_chart(title: str, x_values: list[str], series: list[str], colors: dict[str, str],
               values: dict[str, dict[str, Mark]], x_label: str, y_label: str = "mean retention",
               ref: float | None = 1.0) -> str:
    """One line per series over categorical x positions (evenly spaced: 128, 256, 512 read as doublings)."""
    present = [s for s in series if values.get(s)]
    width = max(420.0, 120 + 90 * len(x_values))
    legend, legend_h = _legend([(s, colors[s], "circle") for s in present], width)
    all_marks = [m for s in present for m in values[s].values()]
    y_lo, y_hi, ticks = _range([m.mean - (m.err or 0) for m in all_marks] + [m.mean + (m.err or 0)
                                                                             for m in all_marks], ref, False)
    frame = _Frame(58, legend_h + 14, width - 76, 200, y_lo, y_hi)
    height = frame.top + frame.height + 50

    def px(i: int) -> float:
        return frame.left + frame.width * (i + 0.5) / len(x_values)

    parts = [f"<title>{esc(title)}</title>", legend, _y_axis(frame, ticks, y_label, ref)]
    bottom = frame.top + frame.height
    parts.append(f'<line x1="{frame.left:.1f}" x2="{frame.left + frame.width:.1f}" y1="{bottom:.1f}" '
                 f'y2="{bottom:.1f}" stroke="#999999"/>')
    for i, v in enumerate(x_values):
        parts.append(f'<text x="{px(i):.1f}" y="{bottom + 16:.1f}" text-anchor="middle" class="tick">{esc(v)}</text>')
    parts.append(f'<text x="{frame.left + frame.width / 2:.1f}" y="{bottom + 38:.1f}" text-anchor="middle" '
                 f'class="axis-label">{esc(x_label)}</text>')
    n = max(len(present), 1)
    for si, s in enumerate(present):
        # A small horizontal dodge keeps overlapping error bars of different series apart.
        dodge = (si - (n - 1) / 2) * 4
        pts = [(px(i) + dodge, values[s][v]) for i, v in enumerate(x_values) if v in values[s]]
        path = " ".join(f"{x:.1f},{frame.y(m.mean):.1f}" for x, m in pts)
        parts.append(f'<polyline class="line" points="{path}" fill="none" stroke="{colors[s]}" stroke-width="2.2"/>')
        for x, m in pts:
            parts.append(_error_bar(x, frame, m.mean, m.err, half=3))
            parts.append(f'<circle class="point" cx="{x:.1f}" cy="{frame.y(m.mean):.1f}" r="4" fill="{colors[s]}">'
                         f'<title>{esc(m.tooltip)}</title></circle>')
    return _svg(width, height, title, "".join(parts))
