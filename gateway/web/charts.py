"""Server-side SVG charts (no JavaScript library, nothing from a CDN), drawn to be read on a phone.

A metric's mean line and min-max band; the rule's limit as a labelled line, with the part of the line that
breaks it in red; values outside the sensor's valid range shaded; incidents and service steps as numbered
markers named in a legend under the chart (a phone has no hover); booleans and modes as state timelines.
The viewBox is close to a phone's width and is never stretched, so 13-unit text stays at least 11 px there.
Each chart carries its points for the few lines of script that read a value where it is tapped. Pure functions.
"""

from __future__ import annotations

import html
import math
import time
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.web.units import STATE_UNITS, unit_text

WIDTH, HEIGHT = 400.0, 210.0
LEFT, RIGHT, TOP, BOTTOM = 54.0, 10.0, 26.0, 24.0
Y_TICKS, X_TICKS = 5, 4
MAX_TAP_POINTS = 400  # the points a chart carries for reading values by tapping


@dataclass(frozen=True)
class Marker:
    ts: float
    kind: str  # incident | step
    label: str


@dataclass(frozen=True)
class Threshold:
    """A rule's limit on the metric: `value` with the comparison that fires (`>`: above it is a fault)."""

    value: float
    op: str
    rule: str = ""


def chart_svg(title: str, unit: str, series: dict[str, list[Any]], start: float, end: float,
              valid: tuple[float, float] | None, markers: list[Marker], thresholds: list[Threshold] | None = None,
              metric: str = "", title_zh: str = "", states: dict[float, str] | None = None) -> str:
    """One chart, its title above it (in HTML, so a long name wraps) and its legend of markers under it.
    `title`: the metric in words (`title_zh` in Chinese); `unit`: the profile's; `states`: an enum's value names."""
    thresholds = thresholds or []
    states = states or {}
    means = [(t, v) for t, v in zip(series["ts"], series["mean"], strict=True) if v is not None]
    written = unit_text(unit)
    label = html.escape(f"{title} ({written})" if written else title)
    state = unit in STATE_UNITS
    points = [[round(t, 1), v] for t, v in means[:: max(1, len(means) // MAX_TAP_POINTS)]]
    names = {f"{k:g}": v for k, v in states.items()}
    heading = f"{title} / {title_zh}" if title_zh else title
    head = (f'<figure class="chart-box"><div class="chart-title">{html.escape(heading)}'
            f'{f" <small>({html.escape(written)})</small>" if written else ""}</div>'
            f'<svg class="chart" role="img" aria-label="{label}" '
            f'data-metric="{html.escape(metric or title)}" data-points="{len(means)}" '
            f'data-unit="{html.escape(written)}" data-kind="{"state" if state else "line"}" '
            f"data-states='{html.escape(orjson.dumps(names).decode(), quote=True)}' "
            f'data-start="{start:.0f}" data-end="{end:.0f}" '
            f"data-series='{html.escape(orjson.dumps(points).decode(), quote=True)}' "
            f'viewBox="0 0 {WIDTH:g} {HEIGHT:g}">')
    numbered = _numbered(markers, start, end)
    if not means:
        return (head + f'<text x="{LEFT}" y="{HEIGHT / 2}" class="empty">no data in this range</text>'
                + _marker_lines(numbered, start, end) + "</svg>" + _legend(numbered) + "</figure>")
    if state:
        body = _state_timeline(means, start, end, unit, states)
    else:
        body = _line(series, means, start, end, valid, thresholds, unit, _key(metric or title))
    return (head + body + _time_axis(start, end) + _marker_lines(numbered, start, end)
            + '<g class="tap" visibility="hidden"><line class="cursor" y1="26" y2="186"/>'
            '<text class="readout" x="60" y="40"></text></g></svg>' + _legend(numbered) + "</figure>")


def _x(ts: float, start: float, end: float) -> float:
    return LEFT + (ts - start) / max(end - start, 1e-9) * (WIDTH - LEFT - RIGHT)


def _key(name: str) -> str:
    """An id-safe key of a metric (clip paths of several charts on one page must not collide)."""
    return f"{zlib.crc32(name.encode()):08x}"


def _line(series: dict[str, list[Any]], means: list[tuple[float, float]], start: float, end: float,
          valid: tuple[float, float] | None, thresholds: list[Threshold], unit: str, key: str) -> str:
    lows = [v for v in series["min"] if v is not None]
    highs = [v for v in series["max"] if v is not None]
    low = float(min(lows or [v for _, v in means]))
    high = float(max(highs or [v for _, v in means]))
    for threshold in thresholds:  # the limit is always in view, so the distance to it shows
        low, high = min(low, threshold.value), max(high, threshold.value)
    if high - low < 1e-9:
        low, high = low - 1.0, high + 1.0
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad
    plot_bottom = HEIGHT - BOTTOM

    def y(value: float) -> float:
        return TOP + (high - value) / (high - low) * (plot_bottom - TOP)

    parts = []
    if valid is not None:  # outside the sensor's valid range: shaded where it is in view
        if valid[1] < high:
            parts.append(f'<rect class="invalid" x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
                         f'height="{max(0.0, y(valid[1]) - TOP):.1f}"/>')
        if valid[0] > low:
            top = y(valid[0])
            parts.append(f'<rect class="invalid" x="{LEFT}" y="{top:.1f}" width="{WIDTH - LEFT - RIGHT}" '
                         f'height="{max(0.0, plot_bottom - top):.1f}"/>')
    for value in _ticks(low + pad, high - pad, Y_TICKS):
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}"/>'
                     f'<text class="axis" x="{LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end">'
                     f'{_number(value)}</text>')
    band = [(t, lo, hi) for t, lo, hi in zip(series["ts"], series["min"], series["max"], strict=True)
            if lo is not None and hi is not None]
    if any(hi > lo for _, lo, hi in band):
        outline = [f"{_x(t, start, end):.1f},{y(hi):.1f}" for t, _, hi in band] + \
                  [f"{_x(t, start, end):.1f},{y(lo):.1f}" for t, lo, _ in reversed(band)]
        parts.append(f'<polygon class="band" points="{" ".join(outline)}"/>')
    line = " ".join(f"{_x(t, start, end):.1f},{y(v):.1f}" for t, v in means)
    parts.append(f'<polyline class="line" points="{line}"/>')
    for i, threshold in enumerate(thresholds):
        level = y(threshold.value)
        above = threshold.op in (">", ">=")
        clip = f"beyond-{key}-{i}"
        region = (f'x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{max(0.0, level - TOP):.1f}"' if above
                  else f'x="{LEFT}" y="{level:.1f}" width="{WIDTH - LEFT - RIGHT}" '
                       f'height="{max(0.0, plot_bottom - level):.1f}"')
        parts.append(f'<clipPath id="{clip}"><rect {region}/></clipPath>'
                     f'<polyline class="line breaking" clip-path="url(#{clip})" points="{line}"/>'
                     f'<line class="threshold" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{level:.1f}" y2="{level:.1f}"/>'
                     f'<text class="threshold-label" x="{WIDTH - RIGHT - 2}" y="{level + (-4 if above else 14):.1f}" '
                     f'text-anchor="end">limit {html.escape(threshold.op)} {_number(threshold.value)} '
                     f'{html.escape(unit_text(unit))}</text>')
    return "".join(parts)


def _state_timeline(means: list[tuple[float, float]], start: float, end: float, unit: str,
                    states: dict[float, str]) -> str:
    """A boolean or a mode as coloured spans, one per run of the same value, each named where it fits."""
    parts = []
    top, height = TOP + 20, 70.0
    runs: list[tuple[float, float, float]] = []
    for i, (ts, value) in enumerate(means):
        until = means[i + 1][0] if i + 1 < len(means) else min(end, ts + 1.0)
        if runs and runs[-1][2] == value:
            runs[-1] = (runs[-1][0], until, value)
        else:
            runs.append((ts, until, value))
    for begin, until, value in runs:
        x0, x1 = _x(begin, start, end), _x(until, start, end)
        name = ("on" if value else "off") if unit == "bool" else states.get(value, f"{value:g}")
        parts.append(f'<rect class="state s{int(value) % 6}" x="{x0:.1f}" y="{top}" width="{max(0.5, x1 - x0):.1f}" '
                     f'height="{height}"><title>{name}</title></rect>')
        if x1 - x0 > 24:
            parts.append(f'<text class="state-label" x="{x0 + 3:.1f}" y="{top + height / 2 + 5:.1f}">{name}</text>')
    return "".join(parts)


def _time_axis(start: float, end: float) -> str:
    parts = []
    ticks = X_TICKS if end - start >= 900 else X_TICKS // 2  # "18:20:10" is longer than "18:20"
    for i in range(ticks + 1):
        ts = start + (end - start) * i / ticks
        anchor = "start" if i == 0 else "end" if i == ticks else "middle"
        parts.append(f'<text class="axis" x="{_x(ts, start, end):.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
                     f'{_clock(ts, end - start)}</text>')
    return "".join(parts)


def _numbered(markers: list[Marker], start: float, end: float) -> list[tuple[int, Marker]]:
    inside = sorted((m for m in markers if start <= m.ts <= end), key=lambda m: m.ts)
    return list(enumerate(inside, 1))


def _marker_lines(numbered: list[tuple[int, Marker]], start: float, end: float) -> str:
    """A line per marker with its number on top; numbers too close to the previous one go a row lower."""
    parts, last_x, row = [], -math.inf, 0
    for number, marker in numbered:
        px = _x(marker.ts, start, end)
        row = row + 1 if px - last_x < 16 else 0
        last_x = px
        parts.append(f'<line class="{marker.kind}" x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}">'
                     f'<title>{html.escape(marker.label)} at {_clock(marker.ts, 0)}</title></line>'
                     f'<text class="marker-number {marker.kind}-number" x="{px:.1f}" y="{TOP + 12 + 13 * (row % 3)}" '
                     f'text-anchor="middle">{number}</text>')
    return "".join(parts)


def _legend(numbered: list[tuple[int, Marker]]) -> str:
    if not numbered:
        return ""
    items = "".join(f"<li class='{marker.kind}'><b>{number}</b> {html.escape(marker.label)} "
                    f"<small>{_clock(marker.ts, 0)}</small></li>" for number, marker in numbered)
    return f"<figcaption><ul class='markers'>{items}</ul></figcaption>"


def _ticks(low: float, high: float, count: int) -> list[float]:
    """Round values from low to high, about `count` of them."""
    span = high - low
    if span <= 0:
        return [low]
    raw = span / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _number(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 100000:
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:.2e}" if math.isfinite(value) else "?"


def _clock(ts: float, span: float) -> str:
    return time.strftime("%m-%d %H:%M" if span > 86400 else "%H:%M:%S" if span < 900 else "%H:%M",
                         time.localtime(ts))


# Tap or hover a chart: a cursor and the value nearest in time, read from the chart's own points.
TAP_SCRIPT = ("""<script>
(function(){
  function fmt(v,unit,kind,names){if(kind==='state'){return names[String(v)]||String(v);}
    return (Math.abs(v)>=1000?Math.round(v).toLocaleString():(+v.toPrecision(3)))+(unit?' '+unit:'');}
  function read(svg,evt){
    var pts=JSON.parse(svg.getAttribute('data-series')||'[]'); if(!pts.length){return;}
    var box=svg.getBoundingClientRect(); var vb=svg.viewBox.baseVal;
    var x=(evt.clientX-box.left)/box.width*vb.width;
    var s=+svg.getAttribute('data-start'),e=+svg.getAttribute('data-end');
    var ts=s+(x-54)/(vb.width-64)*(e-s); var best=pts[0];
    pts.forEach(function(p){if(Math.abs(p[0]-ts)<Math.abs(best[0]-ts)){best=p;}});
    var px=54+(best[0]-s)/(e-s)*(vb.width-64); var g=svg.querySelector('.tap');
    g.setAttribute('visibility','visible'); var c=g.querySelector('.cursor');
    c.setAttribute('x1',px);c.setAttribute('x2',px);
    var t=g.querySelector('.readout'); t.setAttribute('x',Math.min(px+4,vb.width-150));
    t.textContent=new Date(best[0]*1000).toLocaleTimeString()+'  '+fmt(best[1],svg.getAttribute('data-unit'),
      svg.getAttribute('data-kind'),JSON.parse(svg.getAttribute('data-states')||'{}'));
  }
  document.addEventListener('pointerdown',function(e){var svg=e.target.closest&&e.target.closest('svg.chart');
    if(svg){read(svg,e);}});
  document.addEventListener('pointermove',function(e){var svg=e.target.closest&&e.target.closest('svg.chart');
    if(svg&&e.pointerType==='mouse'){read(svg,e);}});
})();
</script>""".replace("54", f"{LEFT:g}").replace("64", f"{LEFT + RIGHT:g}"))

CHART_CSS = """
.chart-box{margin:0 0 1rem 0;max-width:34rem}.chart{width:100%;height:auto;background:#fff;border:1px solid #ddd}
.chart .line{fill:none;stroke:#1565c0;stroke-width:2}.chart .breaking{stroke:#c62828;stroke-width:2.5}
.chart .band{fill:#90caf9;opacity:.45}.chart .invalid{fill:#eceff1}.chart .grid{stroke:#eee}
.chart .threshold{stroke:#c62828;stroke-dasharray:6 4;stroke-width:1.5}
.chart .threshold-label{fill:#c62828;font-weight:600}
.chart .incident{stroke:#c62828;stroke-width:2}.chart .step{stroke:#6a1b9a;stroke-dasharray:4 3}
.chart text{font:13px system-ui,sans-serif;fill:#444}
.chart-title{font-weight:600;margin:.2rem 0}
.chart .marker-number{font-weight:700}.chart .incident-number{fill:#c62828}.chart .step-number{fill:#6a1b9a}
.chart .state{stroke:#fff;stroke-width:.5}.chart .s0{fill:#cfd8dc}.chart .s1{fill:#81c784}.chart .s2{fill:#64b5f6}
.chart .s3{fill:#ffb74d}.chart .s4{fill:#ba68c8}.chart .s5{fill:#4db6ac}.chart .state-label{fill:#222}
.chart .cursor{stroke:#222;stroke-width:1}.chart .readout{fill:#222;font-weight:600}
figcaption ul.markers{margin:.2rem 0 0 0;padding:0;list-style:none;font-size:.9rem;display:flex;flex-wrap:wrap;
column-gap:1rem}figcaption ul.markers li{margin:.1rem 0}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,24rem),1fr));column-gap:1.5rem}
.charts .chart-box{max-width:none}
figcaption li.incident b{color:#c62828}figcaption li.step b{color:#6a1b9a}
"""
