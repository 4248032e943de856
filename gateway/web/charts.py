"""Server-side SVG charts (no JavaScript library, nothing from a CDN): a metric's mean line, its min-max band,
the valid range shaded, and incidents and service steps marked on the time axis. Pure functions."""

from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 640.0, 170.0
LEFT, RIGHT, TOP, BOTTOM = 52.0, 8.0, 8.0, 22.0


@dataclass(frozen=True)
class Marker:
    ts: float
    kind: str  # incident | step
    label: str


def chart_svg(metric: str, unit: str, series: dict[str, list[Any]], start: float, end: float,
              valid: tuple[float, float] | None, markers: list[Marker]) -> str:
    means = [(t, v) for t, v in zip(series["ts"], series["mean"], strict=True) if v is not None]
    lows = [v for v in series["min"] if v is not None]
    highs = [v for v in series["max"] if v is not None]
    label = html.escape(f"{metric} ({unit})" if unit else metric)
    head = (f'<svg class="chart" role="img" aria-label="{label}" data-metric="{html.escape(metric)}" '
            f'data-points="{len(means)}" viewBox="0 0 {WIDTH:g} {HEIGHT:g}" preserveAspectRatio="none">')
    if not means:
        return (head + f'<text x="{LEFT}" y="{HEIGHT / 2}" class="empty">no data in this range</text>'
                + _markers(markers, start, end) + "</svg>")
    low, high = float(min(lows or [v for _, v in means])), float(max(highs or [v for _, v in means]))
    if high - low < 1e-9:
        low, high = low - 1.0, high + 1.0
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad

    def x(ts: float) -> float:
        return LEFT + (ts - start) / max(end - start, 1e-9) * (WIDTH - LEFT - RIGHT)

    def y(value: float) -> float:
        return TOP + (high - value) / (high - low) * (HEIGHT - TOP - BOTTOM)

    parts = [head]
    if valid is not None and valid[1] > low and valid[0] < high:  # the physically valid range, clipped
        top, bottom = y(min(valid[1], high)), y(max(valid[0], low))
        parts.append(f'<rect class="valid" x="{LEFT}" y="{top:.1f}" width="{WIDTH - LEFT - RIGHT}" '
                     f'height="{bottom - top:.1f}"><title>valid {valid[0]:g} to {valid[1]:g} {html.escape(unit)}'
                     '</title></rect>')
    band = [(t, lo, hi) for t, lo, hi in zip(series["ts"], series["min"], series["max"], strict=True)
            if lo is not None and hi is not None]
    if any(hi > lo for _, lo, hi in band):
        outline = [f"{x(t):.1f},{y(hi):.1f}" for t, _, hi in band] + \
                  [f"{x(t):.1f},{y(lo):.1f}" for t, lo, _ in reversed(band)]
        parts.append(f'<polygon class="band" points="{" ".join(outline)}"/>')
    parts.append(f'<polyline class="line" points="{" ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in means)}"/>')
    for value in (high - pad, (high + low) / 2, low + pad):
        parts.append(f'<text class="axis" x="{LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end">'
                     f'{_number(value)}</text>')
    parts.append(f'<text class="axis" x="{LEFT}" y="{HEIGHT - 6}">{_clock(start, end - start)}</text>')
    parts.append(f'<text class="axis" x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end">'
                 f'{_clock(end, end - start)}</text>')
    parts.append(f'<text class="unit" x="{LEFT + 4}" y="{TOP + 12}">{label}</text>')
    parts.append(_markers(markers, start, end))
    parts.append("</svg>")
    return "".join(parts)


def _markers(markers: list[Marker], start: float, end: float) -> str:
    out = []
    for marker in markers:
        if not start <= marker.ts <= end:
            continue
        px = LEFT + (marker.ts - start) / max(end - start, 1e-9) * (WIDTH - LEFT - RIGHT)
        out.append(f'<line class="{marker.kind}" x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}">'
                   f'<title>{html.escape(marker.label)} at {_clock(marker.ts, 0)}</title></line>')
    return "".join(out)


def _number(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 100000:
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return f"{value:.2e}" if math.isfinite(value) else "?"


def _clock(ts: float, span: float) -> str:
    return time.strftime("%m-%d %H:%M" if span > 86400 else "%H:%M:%S" if span < 3600 else "%H:%M",
                         time.localtime(ts))


CHART_CSS = """
.chart{width:100%;height:auto;max-height:12rem;background:#fff;border:1px solid #ddd;margin-bottom:.6rem}
.chart .line{fill:none;stroke:#1565c0;stroke-width:1.5;vector-effect:non-scaling-stroke}
.chart .band{fill:#90caf9;opacity:.45}.chart .valid{fill:#e8f5e9}
.chart .incident{stroke:#c62828;stroke-width:2}.chart .step{stroke:#6a1b9a;stroke-dasharray:4 3}
.chart text{font:11px system-ui,sans-serif;fill:#555}.chart .unit{fill:#222;font-weight:600}
"""
